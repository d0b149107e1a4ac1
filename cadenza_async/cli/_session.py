"""One command's run: its arguments, its output, and the client its flags and environment describe."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ..client import CadenzaClient
from ..config import ClientConfig
from ..errors import ConfigurationError
from ._errors import flag_words
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

        Nothing is connected yet: ``async with`` starts the order stream;
        calls that need only REST work without it.
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
                allow_insecure=True if args.allow_insecure else None,
            )
        except ConfigurationError as exc:
            raise ConfigurationError(flag_words(str(exc))) from None
        self.config = config
        return CadenzaClient(config=config)

    @contextlib.asynccontextmanager
    async def rest_client(self) -> AsyncIterator[CadenzaClient]:
        """A client for REST calls alone: no WebSocket is opened; closed on the way out."""
        client = self.client()
        try:
            yield client
        finally:
            await client.aclose()

    def account(self, client: CadenzaClient, verb: str) -> str:
        """The account a command acts on; raises ConfigurationError when none is given."""
        account = self.args.account or client.config.trading_account_id
        if account is None:
            raise ConfigurationError(f"{verb} needs --account or CADENZA_TRADING_ACCOUNT_ID")
        return str(account)
