"""OrderStream: the account stream over one WebSocket at a time (the channels, the reconnects).

One socket at a time. A single owned task (the reader) opens it
(:class:`~cadenza_async._wsio.CentrifugoSocket`: exactly ``ws_url``, no
redirect followed, the websockets log scrubbed of the tokens), runs one
:class:`~cadenza_async._stream_session.Session` on it (the connect, frames
pumped into :class:`~cadenza_async.protocol.centrifugo.CentrifugoProtocol`,
its events applied, its deadlines on one loop timer), and tears it down. On a
transport loss or a reconnect close code the reader reconnects with
full-jitter backoff and resubscribes every wanted channel, each with
``recover`` from its own last applied position. On a terminal close code, a
refused token or a failing token provider it stops and reports one
:class:`~cadenza_async.errors.StreamError`.

This module keeps what outlives a connection and decides nothing it can
leave to a part of its own: the wanted channels, the resubscribe window and
what a refusal means are the sans-I/O
:class:`~cadenza_async.protocol.subscriptions.Subscriptions` (with the
poisoned positions of :mod:`cadenza_async.protocol.poison`); which token
each connect and refresh carries is
:class:`~cadenza_async._stream_tokens.StreamTokens` (over
:mod:`cadenza_async.protocol.tokens`); who hears the publications is
:class:`~cadenza_async._fanout.Fanout`; the RPCs waiting for their reply are
:class:`~cadenza_async._stream_rpc.RpcCalls`.

Bad input never loops. A publication whose ``data`` is nested too deep is
passed on by the core as undecodable (the application rejects it; no
reconnect). A connection that dies on anything else the client refuses
(a protocol violation, a binary frame, a message over ``max_size``, close
1009) does not reset the backoff, and a channel that fails twice in a row
at the same position is resubscribed without recovery, past the bad
message, with ``on_gap(channel)`` so the application reconciles by REST.

websockets exceptions never leave the stream's modules: they become
:class:`~cadenza_async.errors.TransportError` or ``StreamError``.
Compression is off: order updates are small, the payloads are already
compact JSON, and inflating costs CPU on the hot path while opening the door
to compression bombs under ``max_size``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any

import msgspec

from ._alarm import Cutoffs
from ._auth import TokenSource
from ._fanout import (
    CHANNEL_PREFIX,
    AccountEventCallback,
    ChannelObserver,
    Fanout,
    OrderCallback,
    PublicationCallback,
    account_of,
    channel_for,
)
from ._redact import redact as redact  # the old import path of the one implementation
from ._redact import scope_secrets
from ._stream_rpc import RpcCalls
from ._stream_session import Drop, Fatal, Session, SessionEnd, SessionHooks
from ._stream_tokens import StreamTokens
from ._wsio import CentrifugoSocket, OpenFailed
from ._wsio import NoRedirectConnect as _NoRedirectConnect  # noqa: F401  (its old name here)
from .config import ClientConfig
from .errors import (
    CadenzaError,
    ClientClosedError,
    StreamAuthenticationError,
    StreamError,
    StreamRpcError,
    TransportError,
)
from .protocol.centrifugo import (
    CentrifugoProtocol,
    Disconnected,
    reconnect_delays,
)
from .protocol.subscriptions import RESUBSCRIBE_WINDOW, Subscriptions
from .protocol.tokens import MAX_TOKEN_REFUSALS

__all__ = [
    "CHANNEL_PREFIX",
    "MAX_TOKEN_REFUSALS",
    "RESUBSCRIBE_WINDOW",
    "ChannelObserver",
    "OrderStream",
    "StreamRpcError",
    "account_of",
    "channel_for",
]

_log = logging.getLogger("cadenza_async.stream")

_CLOSE_EXPIRED = 3005
_CLOSE_INVALID_TOKEN = 3500

_STOP_ATTEMPTS = 20
_STOP_WAIT = 0.5  # seconds per attempt at stopping the reader


class OrderStream:
    """The account stream over one WebSocket at a time; see the module docstring.

    The stream is the one owner of channels: it knows which are wanted
    (:meth:`want`, :meth:`subscribe`; given up with :meth:`release`,
    :meth:`unsubscribe`), subscribes them (again after each reconnect, in
    batched frames, each with recovery) and decodes their publications. Callbacks run synchronously in the reader and must
    not block: each ``on_order`` listener ``(order, account)`` for every
    decoded order event (``account`` from the channel; events naming another
    account are dropped and counted), each ``on_account_event`` listener
    ``(event, account)`` for every other publication on an account's channel
    (a portfolio, a trading account: :class:`~cadenza_async.models.AccountEvent`),
    ``on_bad_event(account)`` for an order event that did not decode (the
    account's pending work is looked up at once), ``on_publication(channel, data,
    offset)`` with the raw data of each publication, ``on_gap(channel)``
    when continuity on a channel was lost (reconcile by REST),
    ``on_refused(channel, error)`` when the server refused a channel for good
    (112 is not: the channel is resubscribed from now, with ``on_gap``),
    ``on_state(state)`` with ``"connecting"``, ``"connected"``,
    ``"disconnected"``, ``"closed"``, and ``on_failure(error)`` once when the
    stream stops for good. :meth:`changed` gives a future for the next change.
    Per channel (or for all), :meth:`observe` registers a
    :class:`ChannelObserver`: its publications with their offsets, gaps with
    their reason, and live/not-live changes with the stream position; the
    live views of market data are built on it.

    Tuning comes from ``config`` (``ping_grace``, ``reconnect_min_delay``,
    ``reconnect_max_delay``, ``max_message_size``); the keyword arguments of
    the same meaning (``ping_grace``, ``min_reconnect_delay``,
    ``max_reconnect_delay``, ``max_size``) win when given. ``ping_grace`` is
    added to the server's ping interval to detect a silent link: any bytes
    read from the socket count as a sign of life, not only whole frames.
    """

    def __init__(
        self,
        config: ClientConfig,
        tokens: TokenSource,
        *,
        on_publication: PublicationCallback | None = None,
        on_gap: Callable[[str], None],
        on_failure: Callable[[CadenzaError], None],
        on_state: Callable[[str], None] | None = None,
        on_order: Sequence[OrderCallback] = (),
        on_refused: Callable[[str, StreamRpcError], None] | None = None,
        on_bad_event: Callable[[str], None] | None = None,
        on_account_event: Sequence[AccountEventCallback] = (),
        ping_grace: float | None = None,
        rng: random.Random | None = None,
        max_size: int | None = None,
        min_reconnect_delay: float | None = None,
        max_reconnect_delay: float | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self._config = config
        self._tokens = tokens
        self._on_failure = on_failure
        self._on_state = on_state
        self._rng = rng
        self._max_size = config.max_message_size if max_size is None else max_size
        self._min_delay = (
            config.reconnect_min_delay if min_reconnect_delay is None else min_reconnect_delay
        )
        self._max_delay = (
            config.reconnect_max_delay if max_reconnect_delay is None else max_reconnect_delay
        )
        self._log = logger or _log
        # Who hears what the channels carry (listeners, observers) and the bad-event counts.
        self._fanout = Fanout(
            on_gap=on_gap,
            on_publication=on_publication,
            on_order=on_order,
            on_account_event=on_account_event,
            on_bad_event=on_bad_event,
            on_refused=on_refused,
            log=self._log,
        )
        self._proto = CentrifugoProtocol(
            max_ping_delay=config.ping_grace if ping_grace is None else ping_grace,
            command_timeout=config.timeouts.connect,
        )
        # The wanted channels, their subscribes and the callers waiting for them (the policy).
        self._subs: Subscriptions[asyncio.Future[None]] = Subscriptions(self._proto)
        self._rpcs = RpcCalls()  # the RPCs waiting for their reply
        # A caller's write of its commands ends at its deadline (the socket may not drain).
        self._write_cuts = Cutoffs()
        self._current: Session | None = None  # the connection open now
        self._hooks = SessionHooks(
            closing=self._stopping,
            connected=self._connected,
            changed=self._notify,
            spawn=self._spawn_aux,
        )
        self._task: asyncio.Task[None] | None = None
        self._aux: set[asyncio.Task[None]] = set()
        self._ready: asyncio.Future[None] | None = None
        self._connected_event: asyncio.Event | None = None
        self._failure: CadenzaError | None = None
        self._keep_trying = False
        self._change: asyncio.Future[None] | None = None
        self._first_failure: asyncio.Future[None] | None = None
        self._started = False
        self._closing = False
        self._ever_connected = False
        self._drop_reason: str | None = None
        # Which token each connect and refresh carries, and what a refusal means.
        self._credentials = StreamTokens(tokens, timeout=config.timeouts.connect, log=self._log)
        self.reconnects = 0

    def __repr__(self) -> str:
        state = "connected" if self.connected else ("failed" if self._failure else "idle")
        return f"<OrderStream {state} channels={len(self._subs)} reconnects={self.reconnects}>"

    # ------------------------------------------------------------------ public API

    @property
    def connected(self) -> bool:
        """True while a connection is open and its connect command succeeded."""
        return self._current is not None and self._proto.connected

    @property
    def positions(self) -> dict[str, tuple[str, int]]:
        """Channel -> (epoch, offset) of the last applied publication."""
        return {name: (pos.epoch, pos.offset) for name, pos in self._proto.positions.items()}

    @property
    def _rpc_waiters(self) -> dict[int, asyncio.Future[msgspec.Raw | None]]:
        """The RPCs waiting for their reply, by command id."""
        return self._rpcs.waiting

    @property
    def bad_events(self) -> int:
        """Order events dropped because they did not decode or named another account."""
        return self._fanout.bad_events

    @property
    def bad_event_shapes(self) -> dict[str, int]:
        """How many bad order events of each shape (the field and the type seen, never a value)."""
        return self._fanout.bad_event_shapes

    @property
    def account_events(self) -> dict[str, int]:
        """Publications on account channels that are no order update, by kind."""
        return self._fanout.account_events

    @property
    def account_mismatches(self) -> int:
        """Order events dropped because they named another account than their channel's."""
        return self._fanout.account_mismatches

    @property
    def channels(self) -> frozenset[str]:
        """The channels this stream keeps subscribed."""
        return self._subs.wanted

    async def start(self, *, keep_trying: bool = False) -> None:
        """Connect and return once the connect command succeeded.

        Retries with backoff for up to ``timeouts.connect`` seconds. Raises
        :class:`StreamAuthenticationError` on a refused token,
        :class:`StreamError` on a terminal close code and
        :class:`TransportError` when no connection succeeded in time.

        ``keep_trying``: the :class:`TransportError` comes as soon as the first
        attempt failed (refused, an HTTP error, a timeout), and the stream goes
        on reconnecting in the background (with backoff, for as long as it is
        open) instead of stopping; :meth:`changed` tells when it connects.
        """
        if self._closing:
            raise ClientClosedError("the stream was closed")
        if self._started:
            raise RuntimeError("OrderStream.start() may be called once")
        self._started = True
        self._keep_trying = keep_trying
        loop = asyncio.get_running_loop()
        ready = self._ready = loop.create_future()
        self._connected_event = asyncio.Event()
        self._task = loop.create_task(self._run(), name="cadenza-async-stream")
        if not keep_trying:
            try:
                await ready
            except BaseException:
                await self._stop_task()
                raise
            return
        first = self._first_failure = loop.create_future()
        try:
            await asyncio.wait(
                (ready, first),
                timeout=self._config.timeouts.connect,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            first.cancel()
        if ready.done():
            ready.result()  # the refusal that stopped the stream, if any
            return
        raise TransportError(
            f"no WebSocket connection to {self._config.ws_url} "
            f"({self._drop_reason or 'no answer'}); reconnecting in the background",
            maybe_sent=False,
        )

    @property
    def failure(self) -> CadenzaError | None:
        """Why the stream stopped for good, or ``None`` while it runs (or tries to)."""
        return self._failure

    def want(self, channel: str) -> None:
        """Keep ``channel`` subscribed from now on, without waiting for anything.

        Subscribed at once when connected (nobody waits for the reply; a
        refusal is reported like any other, see ``on_refused``), else on the
        next connect. Raises what :meth:`subscribe` raises for a failed or
        closed stream.
        """
        self._check_usable()
        if self._subs.want(channel, asyncio.get_running_loop().time()):
            self._write_soon()

    def listen(self, listener: OrderCallback) -> None:
        """Add an ``on_order`` listener (once): it is called for each decoded order event from now on."""
        self._fanout.listen(listener)

    def unlisten(self, listener: OrderCallback) -> None:
        """Remove an ``on_order`` listener; no-op if it is not one.

        A listener that needs events only at times (a submit waiting for proof,
        a reader of updates) listens only then: each event calls every listener.
        """
        self._fanout.unlisten(listener)

    @property
    def _on_order(self) -> tuple[OrderCallback, ...]:
        """The ``on_order`` listeners now."""
        return self._fanout.on_order

    def observe(self, channel: str | None, observer: ChannelObserver) -> None:
        """Call ``observer`` (a :class:`ChannelObserver`) for ``channel`` from now on (once).

        ``channel`` None observes every channel. Observing does not subscribe:
        pair it with :meth:`want`/:meth:`subscribe`, and :meth:`unobserve`
        before :meth:`release`. The observer hears of a channel that is live
        already at its next change; :meth:`is_live` and :attr:`positions`
        tell the state now.
        """
        self._fanout.observe(channel, observer)

    def unobserve(self, channel: str | None, observer: ChannelObserver) -> None:
        """Stop calling ``observer`` for ``channel``; no-op if it does not observe it."""
        self._fanout.unobserve(channel, observer)

    def release(self, channel: str) -> bool:
        """Stop wanting ``channel``, the counterpart of :meth:`want`; True once it is not wanted.

        Unsubscribed at once when connected (nobody waits for the reply),
        else simply not resubscribed; its position is forgotten, so a later
        :meth:`want` starts from the channel's live position (no recovery,
        no ``on_gap``: whoever wants it again reconciles what it needs).
        Fails nobody: while a :meth:`subscribe` call waits on the channel it
        stays wanted and this returns False. Never raises, not even on a
        closed or failed stream (there is nothing left to release then).
        """
        subs = self._subs
        was_wanted = subs.is_wanted(channel)
        if not subs.release(channel, asyncio.get_running_loop().time()):
            return False
        if was_wanted:
            if not self._closing:
                self._write_soon()
            self._notify()
        return True

    def is_live(self, channel: str) -> bool:
        """True while connected with ``channel`` subscribed: its events arrive as they happen."""
        return self._current is not None and self._proto.is_subscribed(channel)

    def live_since(self, channel: str) -> float | None:
        """Since when (event-loop time) ``channel``'s events have arrived without a gap.

        ``None`` while the channel is not live. A reconnect whose recovery went
        through keeps the time; one that lost continuity reports ``on_gap``.
        """
        if not self.is_live(channel):
            return None
        return self._subs.live_since(channel)

    def changed(self) -> asyncio.Future[None]:
        """A future that completes at the next change of connection or subscription state.

        Shared by every caller; awaiting it (shielded or not) never disturbs the stream.
        """
        change = self._change
        if change is None or change.done():
            change = self._change = asyncio.get_running_loop().create_future()
        return change

    def _notify(self) -> None:
        change, self._change = self._change, None
        if change is not None and not change.done():
            change.set_result(None)

    def _write_soon(self) -> None:
        """Write the commands the core queued, from a task of their own (the caller does not wait)."""
        if self._current is not None and self._proto.has_data_to_send:
            self._spawn_aux(self._after_commands())

    def _spawn_aux(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._aux.add(task)
        task.add_done_callback(self._aux.discard)

    async def subscribe(self, channel: str, *, timeout: float | None = None) -> None:
        """Subscribe ``channel`` and return once the server confirmed it.

        Idempotent. The channel is remembered and resubscribed with recovery
        after each reconnect. Raises :class:`StreamRpcError` when the server
        refuses it, :class:`TransportError` when not confirmed within
        ``timeout`` (default ``timeouts.connect``; the channel stays wanted)
        and :class:`StreamError` when the stream failed.
        """
        self._check_usable()
        if not isinstance(channel, str) or not channel:
            raise ValueError("channel must be a non-empty str")
        subs = self._subs
        if subs.is_wanted(channel) and self._proto.is_subscribed(channel):
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self._config.timeouts.connect if timeout is None else timeout)
        waiter: asyncio.Future[None] = loop.create_future()
        late = f"subscribe to {channel} not confirmed in time"
        try:
            queued = subs.wait(channel, waiter, loop.time()) and self._current is not None
            if queued and not await self._write_by(deadline, loop):
                raise TransportError(late)  # the socket did not drain in time
            try:
                await asyncio.wait_for(asyncio.shield(waiter), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise TransportError(late) from None
        finally:
            subs.stop_waiting(channel, waiter)
            if not waiter.done():
                waiter.cancel()

    async def unsubscribe(self, channel: str, *, timeout: float | None = None) -> None:
        """Stop receiving ``channel`` (and stop resubscribing it). Does not wait for the reply.

        Returns once the command is written, or after ``timeout`` (default
        ``timeouts.connect``) if the socket does not drain: the command then
        goes out in the background, and the channel is no longer wanted either way.
        """
        self._check_usable()
        if not self._subs.is_wanted(channel):
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self._config.timeouts.connect if timeout is None else timeout)
        callers = self._subs.drop(channel, loop.time())
        await self._write_by(deadline, loop)
        for waiter in callers:
            if not waiter.done():
                waiter.set_exception(StreamError(f"unsubscribed from {channel}"))
        self._notify()

    async def rpc(self, method: str, data: bytes, timeout: float) -> msgspec.Raw:
        """Send a Centrifugo RPC and return its reply ``data`` (undecoded JSON).

        Waits for a connection if needed (within ``timeout``). Raises
        :class:`StreamRpcError` on an error reply, :class:`TransportError` when
        the connection is lost before the reply or no reply came in time (the
        command may have been applied), :class:`StreamError` when the stream
        failed, and :class:`ValueError` when ``data`` is not JSON.
        """
        self._check_usable()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if not self._proto.connected:
            assert self._connected_event is not None
            try:
                await asyncio.wait_for(self._connected_event.wait(), timeout)
            except asyncio.TimeoutError:
                raise TransportError("not connected to the stream", maybe_sent=False) from None
            self._check_usable()
        try:
            msgspec.json.decode(data)
        except (msgspec.DecodeError, RecursionError):
            raise ValueError("rpc data must be a JSON document") from None
        now = loop.time()
        remaining = max(0.0, deadline - now)
        cid = self._proto.send_rpc(method, data, now, timeout=remaining)
        # The protocol times the command out at the deadline, but may postpone that
        # while a frame is still arriving: the alarm ends the wait regardless.
        waiter = self._rpcs.expect(cid, now + remaining + 0.05, loop)
        try:
            # (a write that outlasts the deadline is a reply that did not come in time)
            reply = await waiter if await self._write_by(now + remaining, loop) else None
        finally:
            self._rpcs.forget(cid, waiter)
        if reply is None:
            raise TransportError(f"no reply to {method} within {timeout:g}s")
        return reply

    async def aclose(self) -> None:
        """Close the socket and stop every task; pending calls fail with ClientClosedError."""
        if self._closing:
            await self._stop_task()
            return
        self._closing = True
        current = self._current
        if current is not None:
            await current.socket.close(2.0)
        await self._stop_task()
        self._fail_waiters(ClientClosedError("the stream was closed"))
        self._rpcs.close()
        self._write_cuts.close()
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(ClientClosedError("the stream was closed"))
            self._ready.exception()
        self._state("closed")

    # ------------------------------------------------------------------ internals

    def _stopping(self) -> bool:
        return self._closing

    def _check_usable(self) -> None:
        failure = self._failure
        if failure is not None:
            if isinstance(failure, StreamAuthenticationError):
                raise StreamAuthenticationError(failure.message, code=failure.code)
            raise StreamError(str(failure), code=getattr(failure, "code", None))
        if self._closing:
            raise ClientClosedError("the stream was closed")
        if not self._started:
            raise RuntimeError("call OrderStream.start() first")

    async def _stop_task(self) -> None:
        """Cancel the reader and its helpers and wait for them, never forever.

        On Python 3.11 ``asyncio.wait_for`` can swallow a cancellation that
        races its inner future; a task that survives a cancel is cancelled
        again (its socket aborted) until it ends.
        """
        self._cancel_timer()
        tasks = [t for t in (self._task, *self._aux) if t is not None and not t.done()]
        for attempt in range(_STOP_ATTEMPTS):
            alive = [t for t in tasks if not t.done()]
            if not alive:
                break
            for task in alive:
                task.cancel()
            current = self._current
            if attempt and current is not None:
                current.socket.abort()
            await asyncio.wait(alive, timeout=_STOP_WAIT)
        for task in tasks:
            if task.done():
                if not task.cancelled():
                    task.exception()  # retrieved: its failure was reported where it happened
            else:
                self._log.error("stream task %s did not stop", task.get_name())
        self._aux.clear()

    def _state(self, state: str) -> None:
        self._notify()
        if self._on_state is not None:
            try:
                self._on_state(state)
            except Exception:
                self._log.exception("on_state callback failed")

    async def _run(self) -> None:
        """The reader task: connections one after another until closed or failed for good."""
        try:
            await self._reconnect_loop()
        except Fatal as fatal:
            self._fail(fatal.error, transport=fatal.transport)
        except Exception as exc:  # a bug must not kill the reader silently
            self._log.error("stream: reader failed: %s", type(exc).__name__)
            self._fail(StreamError(f"stream reader failed: {type(exc).__name__}"))

    async def _reconnect_loop(self) -> None:
        """Open, pump and tear down connections with backoff; raises ``Fatal`` to stop."""
        start_deadline = asyncio.get_running_loop().time() + self._config.timeouts.connect
        delays = reconnect_delays(self._min_delay, self._max_delay, self._rng)
        while not self._stopping():
            self._state("connecting")
            end = await self._attempt()
            if self._stopping():
                return
            if end.connected and not end.poisoned:  # a poisoned link keeps backing off
                delays = reconnect_delays(self._min_delay, self._max_delay, self._rng)
            if end.immediate:
                continue
            first = self._first_failure
            if not end.connected and first is not None and not first.done():
                first.set_result(None)  # start(keep_trying=True) stops waiting now
            await asyncio.sleep(self._next_delay(delays, start_deadline))

    async def _attempt(self) -> SessionEnd:
        """One connection attempt; a socket that could not be opened ends unconnected."""
        try:
            return await self._session()
        except Drop as drop:
            self._drop_reason = drop.reason
            return SessionEnd()

    def _next_delay(self, delays: Iterator[float], start_deadline: float) -> float:
        """The backoff before the next attempt, within ``start()``'s time until a first connect.

        Raises ``Fatal`` (a transport failure) once that time is up.
        """
        delay = next(delays)
        if self._ever_connected or self._keep_trying:
            return delay
        remaining = start_deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            last_error = self._drop_reason or "connection lost"
            raise Fatal(StreamError(f"could not connect: {last_error}"), transport=True)
        return min(delay, remaining)

    def _fail(self, error: CadenzaError, *, transport: bool = False) -> None:
        if self._failure is not None or self._closing:
            return
        self._failure = error
        self._cancel_timer()
        self._fail_waiters(error)
        ready = self._ready
        starting = ready is not None and not ready.done()
        if ready is not None and starting:
            ready.set_exception(TransportError(str(error)) if transport else error)
            if self._keep_trying:
                ready.exception()  # retrieved: start() may have returned already
        if not starting or self._keep_trying:
            try:
                self._on_failure(error)
            except Exception:
                self._log.exception("on_failure callback failed")
        if self._connected_event is not None:
            self._connected_event.set()  # wake rpc() callers so they see the failure
        self._state("closed")

    def _fail_waiters(self, error: Exception) -> None:
        self._rpcs.fail_all(error)
        for caller in self._subs.fail_all():
            if not caller.done():
                caller.set_exception(error)

    async def _get_token(self) -> str:
        """The token for the next connect; raises ``Fatal`` when there is none the server takes."""
        try:
            return await self._credentials.for_connect()
        except StreamAuthenticationError as exc:
            raise Fatal(exc) from None

    async def _open(self) -> CentrifugoSocket:
        """Open a socket to exactly ``ws_url``: no redirect followed, no proxy unless configured.

        Runs in the reader task, and declares the stream's tokens as that
        task's secrets: every error it builds from server text (refusals,
        close reasons) is scrubbed of them, and so is the websockets log. A
        3xx answer, or a handshake that ended anywhere but ``ws_url``, is a
        failed connect (``Drop``): the token, sent only in the connect frame
        after the handshake, never reaches a redirect target. Raises
        ``Drop`` or ``Fatal``.
        """
        config = self._config
        url = config.ws_url
        scope_secrets(self._credentials.secrets)
        try:
            return await CentrifugoSocket.open(
                url,
                self._proto,
                max_size=self._max_size,
                timeout=config.timeouts.connect,
                proxy=config.proxy_for(url),  # None: no proxy, whatever the environment says
                user_agent="cadenza-async",
                secrets=self._credentials.secrets,
            )
        except OpenFailed as failed:
            raise self._open_failed(failed) from None

    @staticmethod
    def _open_failed(failed: OpenFailed) -> Drop | Fatal:
        """What a failed open means: reconnect later (``Drop``) or stop (``Fatal``: 401, 403)."""
        status = failed.status
        if failed.kind == "redirected":
            return Drop("the WebSocket handshake ended at another URI; redirects are not followed")
        if status is None:
            return Drop(f"cannot connect: {failed.error_type}")
        if 300 <= status < 400:
            return Drop(f"WebSocket handshake answered HTTP {status}; redirects are not followed")
        if status == 401:
            return Fatal(
                StreamAuthenticationError(
                    "the WebSocket refused the token: handshake HTTP 401", code=status
                )
            )
        if status == 403:
            return Fatal(StreamError("WebSocket handshake refused: HTTP 403", code=status))
        return Drop(f"WebSocket handshake failed: HTTP {status}")

    async def _session(self) -> SessionEnd:
        """One connection, from open to loss: open, run a :class:`Session`, tear down; how it ended.

        Raises ``Drop`` when no socket could be opened and ``Fatal`` when
        the stream must stop for good.
        """
        token = await self._get_token()
        socket = await self._open()
        session = self._current = Session(
            socket,
            self._hooks,
            core=self._proto,
            subs=self._subs,
            fanout=self._fanout,
            rpcs=self._rpcs,
            credentials=self._credentials,
            max_size=self._max_size,
            log=self._log,
        )
        self._drop_reason = None
        end = session.end
        cancelled = False
        try:
            await session.run(token)
        except asyncio.CancelledError:
            # The reader itself is cancelled: the stream is being shut down (aclose, or a
            # loop ending with the client still open, as asyncio.run cancels every task
            # before it closes the default client), not disconnected.
            cancelled = True
            raise
        finally:
            lost = await self._teardown(session, end, cancelled=cancelled)
        return self._after_session(end, lost)

    async def _teardown(
        self, session: Session, end: SessionEnd, *, cancelled: bool = False
    ) -> Disconnected:
        """Close the socket, stop the connection's helpers, fail its RPCs; the core's verdict.

        ``cancelled``: the reader task was cancelled (a shutdown): the listeners are not
        told "disconnected", which would start degraded-mode polling and its warning.
        """
        self._current = None
        for task in list(self._aux):
            task.cancel()
        await session.shut()
        lost = self._proto.connection_lost(end.code, end.reason)
        self._rpcs.fail_all(TransportError("the stream connection was lost before the reply"))
        fanout = self._fanout
        for channel in fanout.observed:
            fanout.live(channel, None)
        if self._connected_event is not None and not self._closing:
            self._connected_event.clear()
        if not (self._closing or cancelled):
            self._state("disconnected")
        return lost

    def _after_session(self, end: SessionEnd, lost: Disconnected) -> SessionEnd:
        """Apply the policies to how a connection ended; raises ``Fatal`` to stop for good."""
        if end.fatal is not None:
            raise Fatal(end.fatal)
        if self._closing:
            end.immediate = False
            return end
        self._note_subscriptions(end)
        code, reason = end.code, end.reason
        if not lost.reconnect:
            raise Fatal(self._closed_for_good(code, reason))
        if code == _CLOSE_EXPIRED:
            self._credentials.expired(code)
        if reason and code is None:
            self._log.info("stream: connection dropped (%s); reconnecting", reason)
        elif code is not None:
            self._log.info("stream: closed with %s; reconnecting", code)
        self._drop_reason = reason
        return end

    @staticmethod
    def _closed_for_good(code: int | None, reason: str) -> CadenzaError:
        """The error for a close code that forbids reconnecting (3500: the token)."""
        if code == _CLOSE_INVALID_TOKEN:
            return StreamAuthenticationError(
                f"the WebSocket refused the token: {reason or 'invalid token'} (close {code})",
                code=code,
            )
        return StreamError(f"stream closed by the server: {reason or code}", code=code)

    def _note_subscriptions(self, end: SessionEnd) -> None:
        """Tell the subscription policy how the connection ended, and log what it changed.

        After a 1009 during a resubscription fewer channels resubscribe at a
        time; after a poisoned end, a channel whose position did not move
        since the previous poisoned end resubscribes without recovery, and
        its subscribe reports ``on_gap``; see
        :class:`~cadenza_async.protocol.subscriptions.Subscriptions`.
        """
        ended = self._subs.connection_lost(
            connected=end.connected, poisoned=end.poisoned, too_big=end.too_big
        )
        if ended.window is not None:
            self._log.warning("stream: resubscribing %d channels at a time", ended.window)
        for channel in ended.stuck:
            self._log.warning(
                "stream: %s failed twice at the same position; "
                "resubscribing without recovery and reconciling",
                channel,
            )

    async def _after_commands(self) -> None:
        """Write queued commands from the caller's task and re-arm the deadline timer."""
        current = self._current
        if current is not None:
            await current.write()

    async def _write_by(self, deadline: float, loop: asyncio.AbstractEventLoop) -> bool:
        """:meth:`_after_commands`, waiting for the socket to drain until ``deadline`` at most.

        False when the deadline came first. Nothing is lost then: the frame
        being sent was written to the transport before the wait to drain, and
        the frames after it are sent in the background (:meth:`_send_later`).
        """
        task = asyncio.current_task(loop)  # (given the loop: no look-up, a getpid() on 3.11)
        assert task is not None  # (the caller's)
        cut = self._write_cuts.arm(deadline, task)
        try:
            await self._after_commands()
        except asyncio.CancelledError:
            if not self._write_cuts.let_go(cut):
                raise  # a cancel from elsewhere: it goes on
            return False
        finally:
            self._write_cuts.let_go(cut)
        return True

    def _connected(self) -> None:
        """The connect of the current session went through."""
        if self._ever_connected:
            self.reconnects += 1
        self._ever_connected = True
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(None)
        if self._connected_event is not None:
            self._connected_event.set()
        self._state("connected")

    def _cancel_timer(self) -> None:
        current = self._current
        if current is not None:
            current.cancel_timer()

    def _abort(self, reason: str) -> None:
        """Drop the current socket at once (no close handshake): the reader reconnects."""
        current = self._current
        if current is not None:
            current.abort(reason)
