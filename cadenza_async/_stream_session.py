"""Session: one connection of the order stream, from its connect to its loss, and what its events do.

The stream (:mod:`cadenza_async.stream`) keeps what outlives a connection
(the channels, the listeners, the tokens, the reconnect loop); a session is
one connection's life: it sends the connect with the token, pumps every
frame into the Centrifugo core (publications straight to the fanout, the
hot path), applies every other event to the stream's parts, fires the core's
deadlines (no-ping, command replies, token refresh) on one loop timer, and
notes how the connection ended in a :class:`SessionEnd`:

======================================  ============================================
the core says                           what happens
======================================  ============================================
``Connected``                           the stream is connected; every wanted
                                        channel is resubscribed (the policy's
                                        window), tokens' refusals count anew
``Subscribed``                          what its recovery replayed is delivered,
                                        a lost continuity reported, the channel
                                        live, its callers resolved
``PositionGap``                         a gap on the channel
``Reply`` / ``ReplyError`` to an RPC    the caller gets the data / the error
``ReplyError`` 109 (token expired)      :class:`Drop`: reconnect with a fresh
                                        token (at once the first time in a row)
temporary error, or 105                 :class:`Drop`
a connect refused                       :class:`Fatal` (101: the token)
a subscribe refused                     the policy decides (112: resubscribe,
                                        else the channel is refused)
a refresh refused                       :class:`Drop`, the token counted refused
``CommandTimedOut``                     an RPC fails; any other command: ``Drop``
``Unsubscribed``                        resubscribed, or the channel dropped
``Disconnected``                        ``Drop``, or ``Fatal`` for a terminal code
``PingTimeout``                         ``Drop``
``ProtocolViolation``                   ``Drop``, poisoned (the backoff goes on)
``RefreshNeeded``                       a fresher token is sent in a refresh
======================================  ============================================
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, NamedTuple

from ._fanout import Fanout
from ._stream_rpc import RpcCalls
from ._stream_tokens import StreamTokens
from ._version import __version__
from ._wsio import BinaryFrame, CentrifugoSocket, Closed, FrameHandler
from .errors import (
    CadenzaError,
    StreamAuthenticationError,
    StreamError,
    StreamRpcError,
    TransportError,
)
from .protocol.centrifugo import (
    ERROR_ALREADY_SUBSCRIBED,
    ERROR_UNAUTHORIZED,
    CentrifugoProtocol,
    CommandTimedOut,
    Connected,
    Disconnected,
    Event,
    PingTimeout,
    PositionGap,
    ProtocolViolation,
    Publication,
    RefreshNeeded,
    Reply,
    ReplyError,
    StreamPosition,
    Subscribed,
    Unsubscribed,
)
from .protocol.subscriptions import Subscriptions

__all__ = ["Drop", "Fatal", "Session", "SessionEnd", "SessionHooks"]


class Drop(Exception):
    """Drop this connection and reconnect (with recovery).

    ``immediate``: without backoff; ``poisoned``: the peer sent something
    the client refuses (see :class:`SessionEnd`).
    """

    def __init__(self, reason: str, *, immediate: bool = False, poisoned: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.immediate = immediate
        self.poisoned = poisoned


class Fatal(Exception):
    """Stop for good with ``error`` (``start()`` raises TransportError instead when ``transport``)."""

    def __init__(self, error: CadenzaError, *, transport: bool = False) -> None:
        super().__init__(str(error))
        self.error = error
        self.transport = transport


class SessionEnd:
    """How one connection ended, filled in as the session learns it.

    ``connected``: its connect command succeeded; ``immediate``: reconnect
    without backoff; ``poisoned``: it died on something the peer sent that
    the client refuses (a protocol violation, a binary frame, a message over
    ``max_size``): the backoff is not reset and the poisoned-position rule
    hears of it; ``too_big``: closed by the client with 1009; ``code`` and
    ``reason``: the close frame's, if any; ``fatal``: the error to stop with.
    """

    __slots__ = ("code", "connected", "fatal", "immediate", "poisoned", "reason", "too_big")

    def __init__(self) -> None:
        self.connected = False
        self.immediate = False
        self.poisoned = False
        self.too_big = False
        self.code: int | None = None
        self.reason = ""
        self.fatal: CadenzaError | None = None


class SessionHooks(NamedTuple):
    """What a session asks of its stream.

    ``closing()``: True once the stream is closing (nothing new starts);
    ``connected()``: the connect went through; ``changed()``: the
    subscription state changed; ``spawn(coro)``: run ``coro`` in a task the
    stream owns (cancelled when the connection ends).
    """

    closing: Callable[[], bool]
    connected: Callable[[], None]
    changed: Callable[[], None]
    spawn: Callable[[Coroutine[Any, Any, None]], None]


class Session:
    """One connection: ``socket`` driven through ``core``; see the module docstring."""

    def __init__(
        self,
        socket: CentrifugoSocket,
        hooks: SessionHooks,
        *,
        core: CentrifugoProtocol,
        subs: Subscriptions[asyncio.Future[None]],
        fanout: Fanout,
        rpcs: RpcCalls,
        credentials: StreamTokens,
        max_size: int,
        log: logging.Logger,
    ) -> None:
        self.socket = socket
        self.end = SessionEnd()
        self._hooks = hooks
        self._core = core
        self._subs = subs
        self._fanout = fanout
        self._rpcs = rpcs
        self._credentials = credentials
        self._max_size = max_size
        self._log = log
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0
        self._abort_reason: str | None = None

    # ------------------------------------------------------------------ the connection's life

    async def run(self, token: str) -> SessionEnd:
        """Send the connect with ``token``, then pump frames until the connection ends; how it ended.

        Leaves the socket open: :meth:`shut` it.
        """
        end = self.end
        try:
            self._core.send_connect(token, self._loop.time(), version=__version__)
            await self.socket.flush()
            self.arm_timer()
            await self.socket.pump(self._frame_handler())
        except Drop as drop:
            end.reason = drop.reason
            end.immediate = drop.immediate
            end.poisoned = drop.poisoned
        except Fatal as exc:
            end.fatal = exc.error
        except Closed as closed:
            self._note_close(closed)
        except BinaryFrame:
            self._log.warning("stream: binary frame received; reconnecting")
            end.reason, end.poisoned = "binary frame", True
        return end

    def _frame_handler(self) -> FrameHandler:
        """What the pump calls with each frame's events: publications straight to delivery."""
        deliver = self._fanout.deliver
        apply = self.apply
        subs = self._subs
        arm_timer = self.arm_timer
        end = self.end
        time = self._loop.time

        def on_frame(events: list[Event]) -> None:
            rearm = False
            for event in events:
                if type(event) is Publication:  # the hot path: straight to delivery
                    deliver(event)
                    continue
                if type(event) is Connected:
                    end.connected = True
                rearm = True
                apply(event)
            if subs.busy:
                subs.pump(time())  # places freed by replies no event reported
            if rearm or self._timer is None:
                arm_timer()

        return on_frame

    def _note_close(self, closed: Closed) -> None:
        """Record why the socket closed: 1009 sent by us (poisoned), the peer's code, or a loss."""
        end = self.end
        if closed.too_big:
            end.reason = f"message over max_size ({self._max_size} bytes), closed with 1009"
            end.poisoned = end.too_big = True
            self._log.warning("stream: %s; reconnecting", end.reason)
        elif closed.code is not None:
            end.code, end.reason = closed.code, closed.reason
        else:
            end.reason = self._abort_reason or "connection lost"

    def abort(self, reason: str) -> None:
        """Drop the socket at once (no close handshake): the pump ends, the stream reconnects."""
        self._abort_reason = reason
        self.socket.abort()

    async def shut(self) -> None:
        """Stop the timer and close the socket (aborted unless closed already)."""
        self.cancel_timer()
        await self.socket.shut(1.0)

    # ------------------------------------------------------------------ writing

    async def write(self) -> None:
        """Write the commands the core queued (from the caller's task) and re-arm the timer."""
        self.arm_timer()
        await self.socket.send_frames(self._core.data_to_send(), on_cut=self._send_later)

    def _send_later(self, socket: CentrifugoSocket, frames: Sequence[str]) -> None:
        """Send the frames a caller's write left when its wait was cut short, in the background.

        The protocol handed them over already (they may carry other callers'
        commands): they go out in order from a task of the stream's.
        """
        if not self._hooks.closing():
            self._hooks.spawn(socket.send_frames(frames, on_cut=self._send_later))

    async def _refresh(self) -> None:
        """Send a fresher token before the connection's runs out (on ``RefreshNeeded``)."""
        token = await self._credentials.for_refresh()
        if token is not None and self._core.connected:
            cid = self._core.send_refresh(token, self._loop.time())
            self._credentials.refresh_sent(cid, token)
            await self.write()

    # ------------------------------------------------------------------ the core's events

    def apply(self, event: Event) -> None:
        """Apply one event of the core; raises :class:`Drop` or :class:`Fatal` to end the connection."""
        match event:
            case Publication():
                self._fanout.deliver(event)
            case Connected():
                self._connected()
            case Subscribed():
                self._subscribed(event)
            case PositionGap():
                self._log.warning(
                    "stream: %s skipped from offset %d to %d; reconciling",
                    event.channel,
                    event.expected_offset,
                    event.got_offset,
                )
                self._fanout.gap(event.channel, "gap")
            case Reply():
                self._reply(event)
            case ReplyError():
                self._reply_error(event)
            case CommandTimedOut():
                self._timed_out(event)
            case Unsubscribed():
                self._unsubscribed(event)
            case Disconnected():
                if not event.reconnect:
                    raise Fatal(StreamError(f"disconnected: {event.reason}", code=event.code))
                raise Drop(f"disconnect push {event.code}")
            case PingTimeout():
                self._log.warning("stream: no data for %.1fs; reconnecting", event.silence)
                raise Drop("no ping from the server")
            case ProtocolViolation():
                self._log.warning("stream: bad frame (%s); reconnecting", event.reason)
                raise Drop(f"bad frame: {event.reason}", poisoned=True)
            case RefreshNeeded():
                self._hooks.spawn(self._refresh())

    def _connected(self) -> None:
        """The connect succeeded: every wanted channel is resubscribed, a window at a time.

        Each subscribe asks to recover from the channel's own position
        (unless the poisoned-position rule says otherwise); the core writes
        them in as few frames as its frame size allows.
        """
        self._credentials.connected()
        self._subs.connected(self._loop.time())
        self.arm_timer()
        self._hooks.connected()

    def _reply(self, event: Reply) -> None:
        """A refresh went through (the connection runs on its token now), or an RPC answered."""
        if event.method == "refresh":
            self._credentials.refresh_answered(event.command_id)
        else:
            self._rpcs.answered(event.command_id, event.data)

    def _timed_out(self, event: CommandTimedOut) -> None:
        """An RPC without reply fails its caller; any other command ends the connection."""
        if event.method != "rpc":
            raise Drop(f"no reply to {event.method} in time")
        self._rpcs.failed(event.command_id, TransportError("no reply to the rpc in time"))

    def _subscribed(self, event: Subscribed) -> None:
        """A channel is live: deliver what its recovery replayed, report a lost continuity."""
        answered = self._subs.subscribed(event, self._loop.time())
        fanout = self._fanout
        for pub in event.publications:
            fanout.deliver(pub)
        channel = event.channel
        if answered.gap:
            fanout.gap(channel, "not_recovered")
        fanout.live(channel, StreamPosition(event.epoch, event.offset))
        for waiter in answered.callers:
            if not waiter.done():
                waiter.set_result(None)
        self._hooks.changed()

    def _unsubscribed(self, event: Unsubscribed) -> None:
        """The server unsubscribed a channel: subscribed again if asked to, else let go (a gap)."""
        channel = event.channel
        self._fanout.live(channel, None)
        verdict = self._subs.unsubscribed(event, self._loop.time())
        if verdict.resubscribed:
            return
        self._log.warning("stream: server unsubscribed %s (code %d)", channel, event.code)
        for waiter in verdict.callers:
            if not waiter.done():
                waiter.set_exception(StreamError(f"the server unsubscribed {channel}"))
        self._hooks.changed()
        self._fanout.gap(channel, "unsubscribed")

    def _reply_error(self, event: ReplyError) -> None:
        """An error reply: fail the RPC, or decide what the refused command means for the link."""
        error = StreamRpcError(event.message, errno=event.code, temporary=event.temporary)
        method = event.method
        if method == "rpc":
            self._rpcs.failed(event.command_id, error)
            return
        if event.token_expired:
            first = self._credentials.refused(method, event.command_id, event.code)
            raise Drop(f"{method}: token expired", immediate=first)
        if event.temporary or event.code == ERROR_ALREADY_SUBSCRIBED:
            raise Drop(f"{method}: temporary error {event.code}")
        if method == "connect":
            raise Fatal(_connect_refused(event))
        if method == "subscribe" and event.channel is not None:
            self._subscribe_refused(event.command_id, event.channel, error)
            return
        if method == "refresh":
            self._credentials.refused(method, event.command_id, event.code)
            raise Drop(f"refresh refused ({event.code})")

    def _subscribe_refused(self, command_id: int, channel: str, error: StreamRpcError) -> None:
        """A subscribe was refused: never a silent drop.

        112 (unrecoverable position): subscribed again from the current
        position, without recovery, and a gap so the application reconciles
        by REST. Anything else (103 permission denied, ...): the channel is
        no longer wanted (wanting it later asks again), its subscribe callers
        get the error and the fanout reports the refusal.
        """
        refusal = self._subs.refused(command_id, channel, error.errno or 0, self._loop.time())
        if refusal.resubscribed:
            self._log.warning(
                "stream: %s cannot be recovered (112); resubscribing from now and reconciling",
                channel,
            )
            self._fanout.gap(channel, "unrecoverable")
            return
        for waiter in refusal.callers:
            if not waiter.done():
                waiter.set_exception(error)
        if refusal.was_wanted:
            self._log.warning(
                "stream: subscribe to %s refused (%d %s)", channel, error.errno, error.message
            )
        self._hooks.changed()
        self._fanout.refused(channel, error)

    # ------------------------------------------------------------------ deadlines

    def arm_timer(self) -> None:
        """Arm the loop timer for the core's next deadline (if sooner than the one armed)."""
        deadline = self._core.next_deadline()
        if deadline is None:
            return
        timer = self._timer
        if timer is not None:
            if self._timer_when <= deadline:
                return
            timer.cancel()
        self._timer_when = deadline
        self._timer = self._loop.call_at(deadline, self._on_timer)

    def cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        if self._hooks.closing():
            return  # closing: the close handshake has its own timeout
        core = self._core
        socket = self.socket
        core.note_activity(socket.last_data)  # bytes of a frame still arriving count too
        try:
            for event in core.check_timeouts(self._loop.time(), receiving=socket.receiving):
                self.apply(event)
        except Drop as drop:
            self.abort(drop.reason)
            return
        except Fatal as fatal:  # pragma: no cover - timeouts never produce terminal events
            self.abort(str(fatal))
            return
        self.arm_timer()


def _connect_refused(event: ReplyError) -> CadenzaError:
    if event.code == ERROR_UNAUTHORIZED:
        return StreamAuthenticationError(
            f"the WebSocket refused the token: {event.message}", code=event.code
        )
    return StreamError(f"connect refused: {event.message}", code=event.code)
