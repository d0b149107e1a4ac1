"""CadenzaClient: owns the HTTP layer, the order stream and the confirmation registry."""

from __future__ import annotations

from decimal import Decimal
from types import TracebackType
from typing import Any

from ._auth import TokenSource
from ._ratelimit import RateGate
from ._validate import check_account_id, check_order_id
from .config import ClientConfig, TokenProvider
from .errors import ClientClosedError
from .http import HttpApi, OrderPage
from .models import TradeOrder

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
        self._tokens = TokenSource(config.token)
        self._gate = RateGate(config.max_rate)
        self._http = HttpApi(config, self._tokens, self._gate)

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
        await self._http.aclose()

    # -- REST calls -------------------------------------------------------------------

    async def cancel(self, order_id: str, *, trading_account_id: str | None = None) -> TradeOrder:
        """Send the cancel over HTTP; the order as the server shows it in its reply.

        Returns when the HTTP call returned, not when the exchange confirmed:
        the status may still be non-terminal (e.g. PENDING_CANCEL). Raises
        ``ValueError`` for a malformed id (nothing is sent),
        :class:`~cadenza_async.errors.OrderNotCancellableError`,
        :class:`~cadenza_async.errors.OrderNotFoundError`, the other
        :class:`~cadenza_async.errors.ApiError` subclasses, or
        :class:`~cadenza_async.errors.TransportError` once retries are spent.
        """
        self._check_open()
        check_order_id(order_id)
        if trading_account_id is not None:
            check_account_id(trading_account_id)
        return await self._http.cancel_order(order_id, trading_account_id)

    async def get_order(
        self, order_id: str, *, trading_account_id: str | None = None
    ) -> TradeOrder:
        """The order's current state by REST look-up.

        Raises ``ValueError`` for a malformed id and
        :class:`~cadenza_async.errors.OrderNotFoundError` when there is no such order.
        """
        self._check_open()
        check_order_id(order_id)
        if trading_account_id is not None:
            check_account_id(trading_account_id)
        return await self._http.get_order(order_id, trading_account_id)

    async def list_orders(
        self,
        *,
        trading_account_id: str | None = None,
        order_status: str | None = None,
        instrument_id: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
        cursor: str | None = None,
    ) -> OrderPage:
        """One page of orders matching the filters (``OrderPage.orders``, ``.pagination``)."""
        self._check_open()
        if trading_account_id is not None:
            check_account_id(trading_account_id)
        return await self._http.list_orders(
            trading_account_id=trading_account_id,
            order_status=order_status,
            instrument_id=instrument_id,
            limit=limit,
            offset=offset,
            cursor=cursor,
        )

    async def submit_order(
        self,
        *,
        instrument_id: str,
        order_side: str,
        order_type: str,
        quantity: str | Decimal,
        limit_price: str | Decimal | None = None,
        stop_price: str | Decimal | None = None,
        time_in_force: str | None = None,
        client_order_id: str | None = None,
        trading_account_id: str | None = None,
    ) -> TradeOrder:
        """Place an order on ``trading_account_id`` (default: the configured account).

        Never retried on transport errors or 5xx: a
        :class:`~cadenza_async.errors.TransportError` means the order may or
        may not exist. Raises ``ValueError`` when no account is known.
        """
        self._check_open()
        account = trading_account_id or self.config.trading_account_id
        if account is None:
            raise ValueError("submit_order needs trading_account_id (none configured)")
        check_account_id(account)
        return await self._http.submit_order(
            trading_account_id=account,
            instrument_id=instrument_id,
            order_side=order_side,
            order_type=order_type,
            quantity=quantity,
            limit_price=limit_price,
            stop_price=stop_price,
            time_in_force=time_in_force,
            client_order_id=client_order_id,
        )
