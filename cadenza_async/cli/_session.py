"""One command's run: its arguments, its output, and the client its flags and environment describe."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ..client import CadenzaClient
from ..config import ClientConfig
from ..errors import ConfigurationError, StreamError
from ._doctor_explain import ws_failure
from ._errors import WebSocketUnusable, auth_failure, flag_words
from ._output import Output
from ._wsprobe import CentrifugoProbe, WsProbeError

__all__ = ["Context"]

#: The longest the probe that explains an unusable WebSocket may take (seconds).
PROBE_TIMEOUT = 2.0


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

    @contextlib.asynccontextmanager
    async def streaming(self) -> AsyncIterator[CadenzaClient]:
        """A client whose order stream is connected, for commands that need it (``watch``).

        Raises :class:`WebSocketUnusable` (within the connect timeout and
        the probe's few seconds) when the stream cannot connect, saying why
        as ``doctor`` does and naming the setting to fix.
        """
        async with self.client() as client:
            if not client.stats().stream_connected:
                raise await self._unusable(client.config)
            yield client

    async def _stream_first(self, client: CadenzaClient) -> None:
        """With ``--via ws``, connect the stream before the first cancel so the cancel can use it.

        A WebSocket that cannot connect is a warning naming why and the
        setting (the cancels then go over HTTP, proven by REST); a refused
        token ends the command.
        """
        if getattr(self.args, "via", None) != "ws":
            return
        await client.__aenter__()  # what `async with` does: the stream, the default account
        if not client.stats().stream_connected:
            problem = await self._unusable(client.config)
            self.out.warn(f"{flag_words(str(problem))}: cancels go over HTTP instead")
            return
        account = self.args.account or client.config.trading_account_id
        if account is None:
            return
        try:
            await client.subscribe_account(account)
        except StreamError as exc:
            if auth_failure(exc) is not None:
                raise
            self.out.warn(f"the WebSocket is unavailable ({exc}): cancels go over HTTP")

    async def _unusable(self, config: ClientConfig) -> WebSocketUnusable:
        """Why the stream could not connect: one handshake by hand, explained as ``doctor`` does."""
        token = config.token if isinstance(config.token, str) else ""
        probe = CentrifugoProbe(
            config.ws_url,
            token,
            timeout=min(PROBE_TIMEOUT, config.timeouts.connect),
            max_size=config.max_message_size,
        )
        try:
            async with probe:
                await probe.open()
        except WsProbeError as exc:
            reason, fix = ws_failure(exc, "handshake")
            setting = exc.kind == "handshake" and exc.status is not None and exc.status < 500
            return WebSocketUnusable(config.ws_url, reason, _ws_fix(exc, fix), setting=setting)
        return WebSocketUnusable(
            config.ws_url,
            "the handshake works now, but the order stream did not connect in time",
            "try again, or run with -v to see the stream's log",
            setting=False,
        )

    def account(self, client: CadenzaClient, verb: str) -> str:
        """The account a command acts on; raises ConfigurationError when none is given."""
        account = self.args.account or client.config.trading_account_id
        if account is None:
            raise ConfigurationError(f"{verb} needs --account or CADENZA_TRADING_ACCOUNT_ID")
        return str(account)


def _ws_fix(exc: WsProbeError, fix: str) -> str:
    """The doctor's fix, with the command line's flag beside the variable."""
    if exc.kind in ("transport", "timeout"):
        return (
            "check --ws-url (CADENZA_WS_URL): nothing answers there (it ends in "
            "/connection/websocket), or the WebSocket service is down"
        )
    return fix.replace("check CADENZA_WS_URL", "check --ws-url (CADENZA_WS_URL)")
