"""One command's run: its arguments, its output, and the client its flags and environment describe."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ..client import CadenzaClient
from ..config import ClientConfig
from ..errors import ConfigurationError, StreamError
from ._errors import auth_failure, flag_words
from ._output import Output

__all__ = ["Context"]


@dataclass
class Context:
    """What a command works with; ``config`` is set once the client is built (errors name its URLs)."""

    args: argparse.Namespace
    out: Output
    config: ClientConfig | None = None

    def client(self) -> CadenzaClient:
        """A client from ``CADENZA_*`` variables, flags winning. Raises ConfigurationError.

        Nothing is connected yet: ``async with`` starts the order stream
        (and fails if it cannot); :meth:`session` leaves that to the calls.
        """
        args = self.args
        if args.token:
            self.out.warn(
                "--token is visible to other users in the process list; "
                "prefer the CADENZA_TOKEN environment variable"
            )
        try:
            config = ClientConfig.from_env(
                token=args.token,
                api_url=args.api_url,
                ws_url=args.ws_url,
                trading_account_id=args.account,
                cancel_via=getattr(args, "via", None),
                submit_via=getattr(args, "submit_via", None),
                allow_insecure=True if args.allow_insecure else None,
            )
        except ConfigurationError as exc:
            raise ConfigurationError(flag_words(str(exc))) from None
        self.config = config
        return CadenzaClient(config=config)

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[CadenzaClient]:
        """A client closed on the way out, whose order stream starts only when a call needs it.

        Cancels go out even when the WebSocket cannot connect (REST then
        proves them), and REST-only calls never open it.
        """
        client = self.client()
        try:
            await self._stream_first(client)
            yield client
        finally:
            await client.aclose()

    async def _stream_first(self, client: CadenzaClient) -> None:
        """With ``--via ws``, connect the stream before the first cancel so the cancel can use it.

        A WebSocket that cannot connect is a warning (cancels then go over
        HTTP, proven by REST); a refused token ends the command.
        """
        account = self.args.account or client.config.trading_account_id
        if getattr(self.args, "via", None) != "ws" or account is None:
            return
        try:
            await client.subscribe_account(account)
        except StreamError as exc:
            if auth_failure(exc) is not None:
                raise
            self.out.warn(f"the WebSocket is unavailable ({exc}): cancels go over HTTP")

    def account(self, client: CadenzaClient, verb: str) -> str:
        """The account a command acts on; raises ConfigurationError when none is given."""
        account = self.args.account or client.config.trading_account_id
        if account is None:
            raise ConfigurationError(f"{verb} needs --account or CADENZA_TRADING_ACCOUNT_ID")
        return str(account)
