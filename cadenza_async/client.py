"""CadenzaClient: owns the HTTP layer, the order stream and the confirmation registry."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from .config import ClientConfig, TokenProvider
from .errors import ClientClosedError

__all__ = ["CadenzaClient"]


class CadenzaClient:
    """The Cadenza API client. Use it as ``async with CadenzaClient(...) as client:``.

    A closed client cannot be reopened: every call after :meth:`aclose` raises
    :class:`~cadenza_async.errors.ClientClosedError`.
    """

    def __init__(
        self,
        token: TokenProvider | None = None,
        api_url: str | None = None,
        ws_url: str | None = None,
        trading_account_id: str | None = None,
        *,
        config: ClientConfig | None = None,
        **options: Any,
    ) -> None:
        given = {
            "token": token,
            "api_url": api_url,
            "ws_url": ws_url,
            "trading_account_id": trading_account_id,
            **options,
        }
        given = {k: v for k, v in given.items() if v is not None}
        if config is None:
            config = ClientConfig(**given)
        elif given:
            config = config.with_changes(**given)
        self.config = config
        self._closed = False

    @classmethod
    def from_env(cls, **overrides: Any) -> CadenzaClient:
        """A client configured from ``CADENZA_*`` environment variables; overrides win."""
        return cls(config=ClientConfig.from_env(**overrides))

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<CadenzaClient {self.config.api_url} {state}>"

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("the client is closed")

    async def __aenter__(self) -> CadenzaClient:
        self._check_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop everything the client started. Safe to call twice."""
        self._closed = True
