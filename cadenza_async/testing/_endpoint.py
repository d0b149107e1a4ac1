"""The WebSocket endpoint ``/connection/websocket``: handshakes, the live connections, their faults.

It is the :class:`~cadenza_async.testing._ws.ConnectionHost` of every
connection it accepts: the settings (ping interval, pong timeout, message
size limit), the connection-level faults (no pings, late subscribe replies,
refused subscribes, refused handshakes), and the counters a test reads
(connections, connects, pings, pongs, refused handshakes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from aiohttp import web

from ._cancels import CancelDesk
from ._delays import DelaySwitch
from ._engine import Engine
from ._hub import ChannelHub
from ._submits import SubmitDesk
from ._wire import CLIENT_ERRORS, TEMPORARY_ERRORS
from ._ws import Connection, Refusal

__all__ = ["WebSocketEndpoint"]


class _SubscribeRefusals:
    """Refusals waiting for the subscribe commands of one channel, used up in order."""

    __slots__ = ("recover_only", "refusal", "times")

    def __init__(self, refusal: Refusal, times: int, recover_only: bool) -> None:
        self.refusal = refusal
        self.times = times
        self.recover_only = recover_only


class WebSocketEndpoint:
    """Accepts WebSocket connections and serves as their host (see the module docstring)."""

    def __init__(
        self,
        *,
        engine: Engine,
        hub: ChannelHub,
        cancels: CancelDesk,
        submits: SubmitDesk | None = None,
        ping_interval: float,
        pong_timeout: float,
        max_message_size: int,
    ) -> None:
        self.engine = engine
        self.hub = hub
        self.cancels = cancels
        self.submits = submits if submits is not None else SubmitDesk()
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.max_message_size = max_message_size
        self.connections: set[Connection] = set()
        self.connect_count = 0
        self.pings_sent = 0
        self.pongs_received = 0
        self.handshakes_refused = 0
        self.stopping = False
        # faults
        self.pinging = True
        self.reading_stalled = False
        self.subscribe_reply_delay = DelaySwitch()
        self._refuse_status: int | None = None
        self._refusing = False
        self._subscribe_refusals: dict[str, list[_SubscribeRefusals]] = {}

    # ---- handshake ---------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The route handler: refuse the handshake (a fault), or serve one connection until it ends."""
        if self._refusing:
            self.handshakes_refused += 1
            status = self._refuse_status
            if status is None:
                transport = request.transport
                if transport is not None:
                    transport.close()
                # Nothing is written: the connection is gone before any HTTP answer.
                return web.Response(status=503)
            return web.Response(status=status, text="WebSocket connections refused")
        ws = web.WebSocketResponse(
            max_msg_size=self.max_message_size,
            compress=False,
            autoping=True,
            decode_text=False,
            # Some clients send an empty Sec-WebSocket-Protocol header for JSON:
            # accept it quietly (nothing is echoed for the empty protocol).
            protocols=("",),
        )
        await ws.prepare(request)
        if self.stopping:
            await ws.close(code=3001, message=b"shutdown")
            return ws
        conn = Connection(self, ws, request.transport)
        if self.reading_stalled:
            conn.stall_reading(True)
        self.connections.add(conn)
        self.connect_count += 1
        try:
            await conn.serve()
        finally:
            self.connection_closed(conn)
        return ws

    def stall_reading(self, stalled: bool) -> None:
        """Stop (or resume) reading what clients send, on every connection, new ones too."""
        self.reading_stalled = stalled
        for conn in self.connections:
            conn.stall_reading(stalled)

    def refuse(self, status: int | None) -> None:
        """Answer every handshake from now on with HTTP ``status`` (None: close the TCP connection)."""
        if status is not None and not 100 <= status <= 599:
            raise ValueError(f"not an HTTP status: {status!r}")
        self._refusing = True
        self._refuse_status = status

    def accept(self) -> None:
        """Accept handshakes again."""
        self._refusing = False
        self._refuse_status = None

    # ---- live connections ----------------------------------------------------------

    def close_where(
        self, code: int, reason: str, which: Callable[[Connection], bool] | None = None
    ) -> asyncio.Future[None]:
        """Close the live connections (``which`` picks some) with ``code``.

        Returns a future that is done once all of them have ended; awaiting it
        is optional.
        """
        chosen = [conn for conn in self.connections if which is None or which(conn)]
        for conn in chosen:
            conn.request_close(code, reason)
        return _all_done([conn.closed for conn in chosen])

    def connection_closed(self, conn: Connection) -> None:
        self.connections.discard(conn)
        for channel in conn.subscriptions:
            self.hub.unsubscribe(conn, channel)

    # ---- subscribe faults ------------------------------------------------------------

    def refuse_subscribe(
        self, channel: str, code: int, message: str | None, times: int, recover_only: bool
    ) -> None:
        """Answer the next ``times`` subscribes of ``channel`` with error ``code``.

        Raises ValueError for ``times`` < 1, or for a code without a known
        Centrifugo text when no ``message`` is given.
        """
        if times < 1:
            raise ValueError("times must be at least 1")
        if message is None:
            if code not in CLIENT_ERRORS:
                raise ValueError(f"no Centrifugo error text for code {code}: pass message=")
            message = CLIENT_ERRORS[code]
        refusal = Refusal(code, message, code in TEMPORARY_ERRORS)
        self._subscribe_refusals.setdefault(channel, []).append(
            _SubscribeRefusals(refusal, times, recover_only)
        )

    def take_subscribe_refusal(self, channel: str, recover: bool) -> Refusal | None:
        waiting = self._subscribe_refusals.get(channel)
        if not waiting:
            return None
        for index, entry in enumerate(waiting):
            if entry.recover_only and not recover:
                continue
            entry.times -= 1
            if entry.times == 0:
                del waiting[index]
                if not waiting:
                    del self._subscribe_refusals[channel]
            return entry.refusal
        return None


def _all_done(futures: Iterable[asyncio.Future[None]]) -> asyncio.Future[None]:
    """A future done once every one of ``futures`` is (no task is started for it).

    Callable outside the running loop (a test driving the loop step by step):
    the future then belongs to the loop of the futures it waits for.
    """
    pending = set(futures)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        if not pending:
            raise
        loop = next(iter(pending)).get_loop()
    done: asyncio.Future[None] = loop.create_future()

    def one_done(future: asyncio.Future[None]) -> None:
        pending.discard(future)
        if not pending and not done.done():
            done.set_result(None)

    if not pending:
        done.set_result(None)
    for future in list(pending):
        future.add_done_callback(one_done)
    return done
