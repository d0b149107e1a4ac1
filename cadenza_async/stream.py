"""OrderStream: the WebSocket I/O around the Centrifugo core (connect, read, reconnect, resubscribe).

One socket at a time. A single owned task opens it, pumps frames into
:class:`~cadenza_async.protocol.centrifugo.CentrifugoProtocol` and acts on
its events (a ``match`` over the event types), and tears it down; a loop
timer fires the core's deadlines (no-ping, command replies, token refresh).
On a transport loss or a reconnect close code the task reconnects with
full-jitter backoff and resubscribes every wanted channel in one batch (as
few frames as the server's message size limit allows), each with
``recover`` from its own last applied position. On a terminal close code, a
refused token or a failing token provider it stops and reports one
:class:`~cadenza_async.errors.StreamError`. The policies are sans-I/O code
in ``protocol/``: the wanted channels, the resubscribe window and what a
refusal means in :mod:`cadenza_async.protocol.subscriptions` (with the
poisoned positions of :mod:`cadenza_async.protocol.poison`), token
refusals in :mod:`cadenza_async.protocol.tokens`; this module does the I/O
around them.

Tokens come from the client's shared
:class:`~cadenza_async._auth.TokenSource`, always refreshed keyed on the
token the server refused or the connection uses, so a token the HTTP side
already refreshed is reused without calling the provider again:

* connect result with ``expires``/``ttl``: a ``refresh`` command is sent
  ``min(10 s, ttl / 2)`` before the ttl runs out, and each refresh reply's
  ttl schedules the next one. If the provider fails then, or hands back the
  connection's own token, the connection is kept until the server expires
  it (close 3005), which asks the provider again (below).
* connect answered with error 109, a ``refresh`` answered with an error
  (a temporary one: the token is not refused, the stream just reconnects),
  close 3005: the provider is asked for a fresh token (keyed on the refused
  one) and the stream reconnects, at once the first time, with backoff after.
  After 3005 a provider with no other token gets its token tried once more
  (the connect then answers 109 if it really expired).
* the stream fails for good (``StreamError`` whose ``code`` is the
  refusal's) when the provider hands back the very token the server just
  refused with 109 or a refresh error, when the provider fails, returns no
  token or does not answer within ``timeouts.connect`` (an async provider;
  the refresh before the ttl then keeps the connection as above), when the
  server closes with 3500 (invalid token), and after
  :data:`MAX_TOKEN_REFUSALS` tokens in a row were refused without a connect
  succeeding in between: a provider that keeps returning tokens the server
  refuses ends in an error after a bounded number of connects, never a loop.

Bad input never loops. A publication whose ``data`` is nested too deep is
passed on by the core as undecodable (the application rejects it; no
reconnect). A connection that dies on anything else the client refuses
(a protocol violation, a binary frame, a message over ``max_size``, close
1009) does not reset the backoff, and a channel that fails twice in a row
at the same position is resubscribed without recovery, past the bad
message, with ``on_gap(channel)`` so the application reconciles by REST.

websockets exceptions never leave this module: they become
:class:`~cadenza_async.errors.TransportError` or ``StreamError``. The
websockets logger is wrapped (:class:`~cadenza_async._redact.RedactingLogger`)
so connect tokens and ``Authorization`` headers never reach the logs.

Compression is off (``compression=None``): order updates are small, the
payloads are already compact JSON, and inflating costs CPU on the hot path
while opening the door to compression bombs under ``max_size``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any, Final, Protocol

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.frames import CloseCode
from websockets.protocol import State

from ._alarm import Alarm, Cutoffs
from ._auth import TokenSource
from ._redact import RedactingLogger, scope_secrets
from ._redact import redact as redact  # the old import path of the one implementation
from ._version import __version__
from .config import ClientConfig
from .errors import (
    AuthenticationError,
    CadenzaError,
    ClientClosedError,
    StreamAuthenticationError,
    StreamError,
    StreamRpcError,
    TransportError,
)
from .models import AccountEvent, TradeOrder, decode_channel_event
from .protocol.centrifugo import (
    ERROR_ALREADY_SUBSCRIBED,
    ERROR_UNAUTHORIZED,
    UNDECODABLE_DATA,
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
    reconnect_delays,
)
from .protocol.subscriptions import RESUBSCRIBE_WINDOW, Subscriptions
from .protocol.tokens import MAX_TOKEN_REFUSALS, TokenRefusals

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

PublicationCallback = Callable[[str, msgspec.Raw, "int | None"], None]
OrderCallback = Callable[[TradeOrder, "str | None"], None]
AccountEventCallback = Callable[[AccountEvent, str], None]

#: Distinct shapes of bad order events logged (each once); the rest are only counted.
_MAX_BAD_SHAPES = 64
_UNDECODABLE_SIZE: Final = len(UNDECODABLE_DATA)


class ChannelObserver(Protocol):
    """What :meth:`OrderStream.observe` calls for a channel, synchronously, in stream order.

    ``publication`` for each publication (its raw ``data`` and Centrifugo
    offset; the epoch is the one of the last ``live`` call), ``gap`` when
    continuity on the channel was lost (``reason``: ``"gap"`` for an offset
    skip, ``"not_recovered"`` for a resubscribe that could not recover,
    ``"unsubscribed"`` when the server dropped the channel,
    ``"unrecoverable"`` for a position the server refused with 112),
    ``live`` when the channel becomes live at a stream position (after the
    publications a recovery replayed) and with ``None`` when it stops being
    live (connection lost, server unsubscribe), and ``refused`` when the
    server refused the channel for good. Observers must not block or raise
    (an exception is logged and the stream goes on).
    """

    def publication(self, channel: str, data: msgspec.Raw, offset: int | None) -> None: ...

    def gap(self, channel: str, reason: str) -> None: ...

    def live(self, channel: str, position: StreamPosition | None) -> None: ...

    def refused(self, channel: str, error: StreamRpcError) -> None: ...


_CLOSE_EXPIRED = 3005
_CLOSE_INVALID_TOKEN = 3500

#: The channel that carries an account's order updates is this prefix plus the account id.
CHANNEL_PREFIX = "tradingAccount:"


def channel_for(account_id: str) -> str:
    """The Centrifugo channel that carries an account's order updates."""
    return CHANNEL_PREFIX + account_id


_PREFIX_LEN: Final = len(CHANNEL_PREFIX)
_MARKET_PREFIX: Final = "market:"


def account_of(channel: str) -> str | None:
    """The account whose order updates ``channel`` carries, or ``None`` for another channel."""
    return channel[_PREFIX_LEN:] if channel.startswith(CHANNEL_PREFIX) else None


# --------------------------------------------------------------------------- connecting


class _NoRedirectConnect(connect):
    """websockets' ``connect`` that never follows a redirect.

    websockets follows a 3xx handshake answer to another host (it refuses
    only wss -> ws), and the connect frame that carries the token would go
    there. Here every 3xx surfaces as the ``InvalidStatus`` it is, and
    ``OrderStream._open`` also checks that the URI it ends up with is the
    configured one before anything is sent.
    """

    def process_redirect(self, exc: Exception) -> Exception | str:
        return exc


# --------------------------------------------------------------------------- liveness


class _LiveConnection(ClientConnection):
    """A websockets ClientConnection that notes when the socket last delivered any bytes.

    A big frame arriving slowly (a recovery reply under a bandwidth cap) is
    a busy link, not a silent one: the no-ping check reads ``last_data``
    so partial frames count as liveness too.
    """

    last_data = 0.0

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.last_data = self.loop.time()

    @property
    def receiving(self) -> bool:
        """True while bytes of an unfinished frame are buffered (a frame is arriving)."""
        reader = getattr(self.protocol, "reader", None)
        return bool(getattr(reader, "buffer", None))


# --------------------------------------------------------------------------- control flow


_STOP_ATTEMPTS = 20
_STOP_WAIT = 0.5  # seconds per attempt at stopping the reader


class _Drop(Exception):
    """Drop this connection and reconnect (with recovery).

    ``poisoned``: the peer sent something unacceptable (see ``_session``).
    """

    def __init__(self, reason: str, *, immediate: bool = False, poisoned: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.immediate = immediate
        self.poisoned = poisoned


class _Fatal(Exception):
    """Stop for good with ``error`` (``start()`` raises TransportError instead when ``transport``)."""

    def __init__(self, error: CadenzaError, *, transport: bool = False) -> None:
        super().__init__(str(error))
        self.error = error
        self.transport = transport


class _SessionEnd:
    """How one connection ended, filled in as the reader learns it.

    ``connected``: its connect command succeeded; ``immediate``: reconnect
    without backoff; ``poisoned``: see ``OrderStream._session``; ``too_big``:
    closed by the client with 1009; ``code`` and ``reason``: the close
    frame's, if any; ``fatal``: the error to stop with.
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
        self._on_publication = on_publication
        self._on_gap = on_gap
        self._on_failure = on_failure
        self._on_state = on_state
        self._on_order = tuple(on_order)
        self._on_refused = on_refused
        self._on_bad_event = on_bad_event
        self._on_account_event = tuple(on_account_event)
        self._rng = rng
        self._max_size = config.max_message_size if max_size is None else max_size
        self._min_delay = (
            config.reconnect_min_delay if min_reconnect_delay is None else min_reconnect_delay
        )
        self._max_delay = (
            config.reconnect_max_delay if max_reconnect_delay is None else max_reconnect_delay
        )
        self._log = logger or _log
        self._ws_logger = RedactingLogger(
            logging.getLogger("websockets.client"), lambda: (tokens.current,)
        )
        self._proto = CentrifugoProtocol(
            max_ping_delay=config.ping_grace if ping_grace is None else ping_grace,
            command_timeout=config.timeouts.connect,
        )
        # The wanted channels, their subscribes and the callers waiting for them (the policy).
        self._subs: Subscriptions[asyncio.Future[None]] = Subscriptions(self._proto)
        # An RPC's reply (or error) ends its waiter; so does the alarm, with None, at
        # the call's deadline (one loop timer for every RPC in flight).
        self._rpc_waiters: dict[int, asyncio.Future[msgspec.Raw | None]] = {}
        self._rpc_alarm = Alarm()
        # A caller's write of its commands ends at its deadline (the socket may not drain).
        self._write_cuts = Cutoffs()
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._aux: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0
        self._ready: asyncio.Future[None] | None = None
        self._connected_event: asyncio.Event | None = None
        self._failure: CadenzaError | None = None
        self._keep_trying = False
        self._change: asyncio.Future[None] | None = None
        self._first_failure: asyncio.Future[None] | None = None
        self.bad_events = 0
        # shape (the decoder's words: field and type, never a value) -> how many
        self.bad_event_shapes: dict[str, int] = {}
        # publications on account channels that are no order update, by kind
        self.account_events: dict[str, int] = {}
        self.account_mismatches = 0
        self._started = False
        self._closing = False
        self._ever_connected = False
        self._drop_reason: str | None = None
        # Tokens: the one the connection authenticated with (connect or a
        # successful refresh), the refresh command in flight, and what the
        # server said about the tokens since the last connect (the policy).
        self._conn_token = ""
        self._refresh_cmd: tuple[int, str] | None = None
        self._refusals = TokenRefusals()
        self.reconnects = 0
        # observe(): per channel, and for every channel (key None)
        self._observers: dict[str | None, tuple[ChannelObserver, ...]] = {}
        self._observe_all: tuple[ChannelObserver, ...] = ()

    def __repr__(self) -> str:
        state = "connected" if self.connected else ("failed" if self._failure else "idle")
        return f"<OrderStream {state} channels={len(self._subs)} reconnects={self.reconnects}>"

    # ------------------------------------------------------------------ public API

    @property
    def connected(self) -> bool:
        """True while a connection is open and its connect command succeeded."""
        return self._ws is not None and self._proto.connected

    @property
    def positions(self) -> dict[str, tuple[str, int]]:
        """Channel -> (epoch, offset) of the last applied publication."""
        return {name: (pos.epoch, pos.offset) for name, pos in self._proto.positions.items()}

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
        if listener not in self._on_order:
            self._on_order = (*self._on_order, listener)

    def unlisten(self, listener: OrderCallback) -> None:
        """Remove an ``on_order`` listener; no-op if it is not one.

        A listener that needs events only at times (a submit waiting for proof,
        a reader of updates) listens only then: each event calls every listener.
        """
        self._on_order = tuple(other for other in self._on_order if other != listener)

    def observe(self, channel: str | None, observer: ChannelObserver) -> None:
        """Call ``observer`` (a :class:`ChannelObserver`) for ``channel`` from now on (once).

        ``channel`` None observes every channel. Observing does not subscribe:
        pair it with :meth:`want`/:meth:`subscribe`, and :meth:`unobserve`
        before :meth:`release`. The observer hears of a channel that is live
        already at its next change; :meth:`is_live` and :attr:`positions`
        tell the state now.
        """
        current = self._observers.get(channel, ())
        if observer not in current:
            self._observers[channel] = (*current, observer)
            self._observe_all = self._observers.get(None, ())

    def unobserve(self, channel: str | None, observer: ChannelObserver) -> None:
        """Stop calling ``observer`` for ``channel``; no-op if it does not observe it."""
        rest = tuple(o for o in self._observers.get(channel, ()) if o is not observer)
        if rest:
            self._observers[channel] = rest
        else:
            self._observers.pop(channel, None)
        self._observe_all = self._observers.get(None, ())

    def _observers_of(self, channel: str) -> tuple[ChannelObserver, ...]:
        return self._observers.get(channel, ()) + self._observe_all

    def _tell(self, channel: str, what: str, *args: Any) -> None:
        """Call method ``what`` of every observer of ``channel``, each failure logged."""
        for observer in self._observers_of(channel):
            try:
                getattr(observer, what)(channel, *args)
            except Exception:
                self._log.exception("observer %s failed for %s", what, channel)

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
        return self._ws is not None and self._proto.is_subscribed(channel)

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
        if self._ws is not None and self._proto.has_data_to_send:
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
            queued = subs.wait(channel, waiter, loop.time()) and self._ws is not None
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
        waiter: asyncio.Future[msgspec.Raw | None] = loop.create_future()
        self._rpc_waiters[cid] = waiter
        # The protocol times the command out at the deadline, but may postpone that
        # while a frame is still arriving: the alarm ends the wait regardless.
        self._rpc_alarm.add(now + remaining + 0.05, waiter)
        try:
            # (a write that outlasts the deadline is a reply that did not come in time)
            reply = await waiter if await self._write_by(now + remaining, loop) else None
        finally:
            self._rpc_alarm.done()
            self._rpc_waiters.pop(cid, None)
            if not waiter.done():
                waiter.cancel()
        if reply is None:
            raise TransportError(f"no reply to {method} within {timeout:g}s")
        return reply

    async def aclose(self) -> None:
        """Close the socket and stop every task; pending calls fail with ClientClosedError."""
        if self._closing:
            await self._stop_task()
            return
        self._closing = True
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2.0)
        await self._stop_task()
        self._fail_waiters(ClientClosedError("the stream was closed"))
        self._rpc_alarm.close()
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
            ws = self._ws
            if attempt and ws is not None:
                ws.transport.abort()
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
        except _Fatal as fatal:
            self._fail(fatal.error, transport=fatal.transport)
        except Exception as exc:  # a bug must not kill the reader silently
            self._log.error("stream: reader failed: %s", type(exc).__name__)
            self._fail(StreamError(f"stream reader failed: {type(exc).__name__}"))

    async def _reconnect_loop(self) -> None:
        """Open, pump and tear down connections with backoff; raises ``_Fatal`` to stop."""
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

    async def _attempt(self) -> _SessionEnd:
        """One connection attempt; a socket that could not be opened ends unconnected."""
        try:
            return await self._session()
        except _Drop as drop:
            self._drop_reason = drop.reason
            return _SessionEnd()

    def _next_delay(self, delays: Iterator[float], start_deadline: float) -> float:
        """The backoff before the next attempt, within ``start()``'s time until a first connect.

        Raises ``_Fatal`` (a transport failure) once that time is up.
        """
        delay = next(delays)
        if self._ever_connected or self._keep_trying:
            return delay
        remaining = start_deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            last_error = self._drop_reason or "connection lost"
            raise _Fatal(StreamError(f"could not connect: {last_error}"), transport=True)
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
        for waiter in self._rpc_waiters.values():
            if not waiter.done():
                waiter.set_exception(error)
        self._rpc_waiters.clear()
        for caller in self._subs.fail_all():
            if not caller.done():
                caller.set_exception(error)

    async def _get_token(self) -> str:
        """The token for the next connect: a fresh one if the server refused the last.

        The refusal policy (:class:`~cadenza_async.protocol.tokens.TokenRefusals`)
        decides; this asks the provider. Raises ``_Fatal`` when the provider
        fails or does not answer within ``timeouts.connect``, when it hands
        back the token the server refused, or after
        :data:`MAX_TOKEN_REFUSALS` refusals in a row.
        """
        refusals = self._refusals
        give_up = refusals.before_fetch()
        if give_up is None:
            token = await self._fetch_token(refusals.stale)
            give_up = refusals.after_fetch(token)
            if give_up is None:
                return token
        raise _Fatal(StreamAuthenticationError(give_up.message, code=give_up.code))

    async def _fetch_token(self, stale: str | None) -> str:
        """The provider's token, fresh (keyed on ``stale``) when one was refused."""
        timeout = self._config.timeouts.connect
        try:
            if stale is None:
                return await self._tokens.get(timeout=timeout)
            return await self._tokens.refresh(stale, timeout=timeout)
        except AuthenticationError as exc:
            raise _Fatal(
                StreamAuthenticationError(f"no token for the WebSocket: {exc.message}")
            ) from None

    async def _open(self) -> ClientConnection:
        """Open a socket to exactly ``ws_url``: no redirect followed, no proxy unless configured.

        Runs in the reader task, and declares the stream's tokens as that
        task's secrets: every error it builds from server text (refusals,
        close reasons) is scrubbed of them. A 3xx answer, or a handshake that
        ended anywhere but ``ws_url``, is a failed connect (``_Drop``): the
        token, sent only in the connect frame after the handshake, never
        reaches a redirect target. Raises ``_Drop`` or ``_Fatal``.
        """
        config = self._config
        timeouts = config.timeouts
        url = config.ws_url
        scope_secrets(self._secrets_in_use)
        connector = _NoRedirectConnect(
            url,
            max_size=self._max_size,
            compression=None,
            open_timeout=timeouts.connect,
            ping_interval=None,
            close_timeout=min(2.0, timeouts.connect),
            user_agent_header="cadenza-async",
            logger=self._ws_logger,
            create_connection=_LiveConnection,
            proxy=config.proxy_for(url),  # None: no proxy, whatever the environment says
        )
        try:
            ws = await connector
        except InvalidStatus as exc:
            status = exc.response.status_code
            if 300 <= status < 400:
                raise _Drop(
                    f"WebSocket handshake answered HTTP {status}; redirects are not followed"
                ) from None
            if status == 401:
                raise _Fatal(
                    StreamAuthenticationError(
                        "the WebSocket refused the token: handshake HTTP 401", code=status
                    )
                ) from None
            if status == 403:
                raise _Fatal(
                    StreamError("WebSocket handshake refused: HTTP 403", code=status)
                ) from None
            raise _Drop(f"WebSocket handshake failed: HTTP {status}") from None
        except (OSError, asyncio.TimeoutError, WebSocketException, ValueError) as exc:
            raise _Drop(f"cannot connect: {type(exc).__name__}") from None
        if connector.uri != url:  # belt and braces, should websockets follow one after all
            ws.transport.abort()
            raise _Drop("the WebSocket handshake ended at another URI; redirects are not followed")
        return ws

    def _secrets_in_use(self) -> tuple[str | None, ...]:
        """The tokens this stream holds, sent or was refused: scrubbed from its errors."""
        cmd = self._refresh_cmd
        stale = self._refusals.stale
        return (self._tokens.current, self._conn_token, stale, cmd[1] if cmd else None)

    async def _session(self) -> _SessionEnd:
        """One connection, from open to loss: open, pump, tear down; how it ended.

        Raises ``_Drop`` when no socket could be opened and ``_Fatal`` when
        the stream must stop for good. A poisoned end (the connection died
        on something the peer sent that this client refuses: a protocol
        violation, a binary frame, a message over ``max_size`` closed with
        1009) does not reset the backoff, and the channel positions at that
        moment go to the poisoned-position rule
        (:class:`~cadenza_async.protocol.poison.PoisonedPositions`).
        """
        token = await self._get_token()
        ws = await self._open()
        self._ws = ws
        self._drop_reason = None
        self._conn_token = token
        self._refresh_cmd = None
        end = _SessionEnd()
        try:
            await self._pump(ws, token, end)
        except _Drop as drop:
            end.reason = drop.reason
            end.immediate = drop.immediate
            end.poisoned = drop.poisoned
        except _Fatal as exc:
            end.fatal = exc.error
        except ConnectionClosed as exc:
            self._note_close(exc, end)
        finally:
            lost = await self._teardown(ws, end)
        return self._after_session(end, lost)

    async def _pump(self, ws: ClientConnection, token: str, end: _SessionEnd) -> None:
        """Send the connect, then feed every frame to the core and act on its events.

        Runs until the connection ends: ``ConnectionClosed`` from the socket,
        ``_Drop`` or ``_Fatal`` from an event.
        """
        loop = asyncio.get_running_loop()
        proto = self._proto
        proto.send_connect(token, loop.time(), version=__version__)
        for frame in proto.data_to_send():
            await ws.send(frame)
        self._arm_timer()
        receive_frame = proto.receive_frame
        deliver = self._deliver
        apply_event = self._apply_event
        subs = self._subs
        while True:
            message = await ws.recv()
            if not isinstance(message, str):
                self._log.warning("stream: binary frame received; reconnecting")
                raise _Drop("binary frame", poisoned=True)
            rearm = False
            for event in receive_frame(message, loop.time()):
                if type(event) is Publication:  # the hot path: straight to delivery
                    deliver(event)
                    continue
                if type(event) is Connected:
                    end.connected = True
                rearm = True
                apply_event(event)
            if subs.busy:
                subs.pump(loop.time())  # places freed by replies no event reported
            frames = proto.data_to_send()
            if frames:
                for frame in frames:
                    await ws.send(frame)
            if rearm or self._timer is None:
                self._arm_timer()

    def _note_close(self, exc: ConnectionClosed, end: _SessionEnd) -> None:
        """Record why the socket closed: 1009 sent by us (poisoned), the peer's code, or a loss."""
        if exc.sent is not None and exc.sent.code == CloseCode.MESSAGE_TOO_BIG:
            end.reason = f"message over max_size ({self._max_size} bytes), closed with 1009"
            end.poisoned = end.too_big = True
            self._log.warning("stream: %s; reconnecting", end.reason)
        elif exc.rcvd is not None:
            end.code, end.reason = exc.rcvd.code, exc.rcvd.reason
        else:
            end.reason = self._drop_reason or "connection lost"

    async def _teardown(self, ws: ClientConnection, end: _SessionEnd) -> Disconnected:
        """Close the socket, stop the connection's helpers, fail its RPCs; the core's verdict."""
        self._ws = None
        self._cancel_timer()
        for task in list(self._aux):
            task.cancel()
        if ws.state is not State.CLOSED:
            ws.transport.abort()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.wait_closed(), 1.0)
        lost = self._proto.connection_lost(end.code, end.reason)
        self._fail_rpc(TransportError("the stream connection was lost before the reply"))
        for channel in [c for c in self._observers if c is not None]:
            self._tell(channel, "live", None)
        if self._connected_event is not None and not self._closing:
            self._connected_event.clear()
        if not self._closing:
            self._state("disconnected")
        return lost

    def _after_session(self, end: _SessionEnd, lost: Disconnected) -> _SessionEnd:
        """Apply the policies to how a connection ended; raises ``_Fatal`` to stop for good."""
        if end.fatal is not None:
            raise _Fatal(end.fatal)
        if self._closing:
            end.immediate = False
            return end
        self._note_subscriptions(end)
        code, reason = end.code, end.reason
        if not lost.reconnect:
            raise _Fatal(self._closed_for_good(code, reason))
        if code == _CLOSE_EXPIRED:
            self._refusals.expired(self._conn_token, code)
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

    def _note_subscriptions(self, end: _SessionEnd) -> None:
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
        ws = self._ws
        if ws is None:
            return
        self._arm_timer()
        await self._send_frames(ws, self._proto.data_to_send())

    async def _write_by(self, deadline: float, loop: asyncio.AbstractEventLoop) -> bool:
        """:meth:`_after_commands`, waiting for the socket to drain until ``deadline`` at most.

        False when the deadline came first. Nothing is lost then: the frame
        being sent was written to the transport before the wait to drain, and
        the frames after it are sent in the background (:meth:`_send_frames`).
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

    async def _send_frames(self, ws: ClientConnection, frames: list[str]) -> None:
        """Send ``frames`` in order; if the caller stops waiting, the rest go out in the background.

        The protocol handed them over already (they may carry other callers'
        commands). websockets writes a frame before it waits for the socket
        to drain, so a cancel that lands in that wait loses none of them.
        """
        sent = 0
        try:
            for frame in frames:
                await ws.send(frame)
                sent += 1
        except (ConnectionClosed, OSError):
            pass  # the reader sees the loss and fails what waits on a reply
        except asyncio.CancelledError:
            rest = frames[sent + 1 :]  # (frames[sent] was written; its drain was cut short)
            if rest and not self._closing:
                self._spawn_aux(self._send_frames(ws, rest))
            raise

    def _deliver(self, event: Publication) -> None:
        """Hand a publication on: raw to ``on_publication``, decoded to the listeners.

        On an account's channel every documented form is read
        (:func:`~cadenza_async.models.decode_channel_event`): an order update
        goes to the ``on_order`` listeners, anything else (a portfolio, a
        trading account) to the ``on_account_event`` ones and is counted in
        ``account_events``, never as bad. An order update that does not
        decode, or names another account than its channel's, is dropped,
        counted (``bad_events``), logged once per shape (the field and the
        type it saw; never a value), and reported with ``on_bad_event(account)``
        so what it may have proven is looked up at once.
        """
        channel = event.channel
        if self._on_publication is not None:
            try:
                self._on_publication(channel, event.data, event.offset)
            except Exception:
                self._log.exception("on_publication callback failed for %s", channel)
        if self._observers:
            self._observed(channel, event)
        # (account_of, inlined: once per event)
        if not channel.startswith(CHANNEL_PREFIX):
            return  # not an account's channel (a market one: books, tickers, candles)
        account = channel[_PREFIX_LEN:]
        listeners = self._on_order
        if not listeners and not self._on_account_event:
            return
        data = event.data
        if len(data) == _UNDECODABLE_SIZE and bytes(data) == UNDECODABLE_DATA:
            self._bad_event(channel, account, "undecodable order event (nested too deeply)")
            return
        try:
            decoded = decode_channel_event(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._bad_event(channel, account, f"malformed order event: {exc}")
            return
        if decoded.__class__ is not TradeOrder:
            self._account_event(decoded, account)  # type: ignore[arg-type]
            return
        order = decoded
        if order.trading_account_id != account:
            if order.trading_account_id:
                self.account_mismatches += 1
                self._bad_event(channel, account, "order event for another account")
                return
            order.trading_account_id = account  # (the current models may leave it out)
        for listener in listeners:
            try:
                listener(order, account)
            except Exception:
                self._log.exception("on_order listener failed for %s", channel)

    def _observed(self, channel: str, event: Publication) -> None:
        """Hand a publication to the channel's observers (and to those of every channel)."""
        for observer in self._observers.get(channel, ()) + self._observe_all:
            try:
                observer.publication(channel, event.data, event.offset)
            except Exception:
                self._log.exception("observer failed for %s", channel)

    def _account_event(self, event: AccountEvent, account: str) -> None:
        """A publication on an account's channel that is not an order update."""
        self.account_events[event.kind] = self.account_events.get(event.kind, 0) + 1
        for listener in self._on_account_event:
            try:
                listener(event, account)
            except Exception:
                self._log.exception("on_account_event listener failed for %s", account)

    def _bad_event(self, channel: str, account: str, what: str) -> None:
        """Count a bad order event, log its shape the first time, and report it at once."""
        self.bad_events += 1
        shapes = self.bad_event_shapes
        seen = shapes.get(what)
        if seen is not None:
            shapes[what] = seen + 1
        elif len(shapes) < _MAX_BAD_SHAPES:
            shapes[what] = 1
            self._log.warning(
                "%s on %s dropped (%d bad so far); proving what it may carry by REST",
                what,
                channel,
                self.bad_events,
            )
        if self._on_bad_event is not None:
            try:
                self._on_bad_event(account)
            except Exception:
                self._log.exception("on_bad_event callback failed for %s", channel)

    def _gap(self, channel: str, reason: str = "gap") -> None:
        try:
            self._on_gap(channel)
        except Exception:
            self._log.exception("on_gap callback failed for %s", channel)
        if self._observers:
            self._tell(channel, "gap", reason)

    def _connected(self, event: Connected) -> None:
        """The connect succeeded: resubscribe every wanted channel, in one batch.

        Each subscribe asks to recover from the channel's own position
        (unless the poisoned-position rule says otherwise); the core writes
        them all in as few frames as its frame size allows.
        """
        if self._ever_connected:
            self.reconnects += 1
        self._ever_connected = True
        self._refusals.connected()
        self._subs.connected(asyncio.get_running_loop().time())
        self._arm_timer()
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(None)
        if self._connected_event is not None:
            self._connected_event.set()
        self._state("connected")

    def _apply_event(self, event: Event) -> None:
        """Apply one event of the Centrifugo core to the stream's state.

        Raises ``_Drop`` to end the connection and reconnect, ``_Fatal`` to
        stop for good.
        """
        match event:
            case Publication():
                self._deliver(event)
            case Connected():
                self._connected(event)
            case Subscribed():
                self._on_subscribed(event)
            case PositionGap():
                self._log.warning(
                    "stream: %s skipped from offset %d to %d; reconciling",
                    event.channel,
                    event.expected_offset,
                    event.got_offset,
                )
                self._gap(event.channel, "gap")
            case Reply():
                self._on_reply(event)
            case ReplyError():
                self._on_reply_error(event)
            case CommandTimedOut():
                self._on_timed_out(event)
            case Unsubscribed():
                self._on_unsubscribed(event)
            case Disconnected():
                if not event.reconnect:
                    raise _Fatal(StreamError(f"disconnected: {event.reason}", code=event.code))
                raise _Drop(f"disconnect push {event.code}")
            case PingTimeout():
                self._log.warning("stream: no data for %.1fs; reconnecting", event.silence)
                raise _Drop("no ping from the server")
            case ProtocolViolation():
                self._log.warning("stream: bad frame (%s); reconnecting", event.reason)
                raise _Drop(f"bad frame: {event.reason}", poisoned=True)
            case RefreshNeeded():
                self._spawn_aux(self._refresh())

    def _on_subscribed(self, event: Subscribed) -> None:
        """A channel is live: deliver what its recovery replayed, report a lost continuity."""
        answered = self._subs.subscribed(event, asyncio.get_running_loop().time())
        for pub in event.publications:
            self._deliver(pub)
        channel = event.channel
        if answered.gap:
            self._gap(channel, "not_recovered")
        if self._observers:
            self._tell(channel, "live", StreamPosition(event.epoch, event.offset))
        for waiter in answered.callers:
            if not waiter.done():
                waiter.set_result(None)
        self._notify()

    def _on_reply(self, event: Reply) -> None:
        """A refresh took (the connection now runs on its token), or an RPC answered."""
        if event.method == "refresh":
            cmd = self._refresh_cmd
            if cmd is not None and cmd[0] == event.command_id:
                self._conn_token = cmd[1]
                self._refresh_cmd = None
            return
        waiter = self._rpc_waiters.pop(event.command_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(event.data)

    def _fail_one_rpc(self, command_id: int, error: Exception) -> None:
        waiter = self._rpc_waiters.pop(command_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def _on_timed_out(self, event: CommandTimedOut) -> None:
        """An RPC without reply fails its caller; any other command ends the connection."""
        if event.method != "rpc":
            raise _Drop(f"no reply to {event.method} in time")
        self._fail_one_rpc(event.command_id, TransportError("no reply to the rpc in time"))

    def _on_unsubscribed(self, event: Unsubscribed) -> None:
        """The server unsubscribed a channel: subscribe again if asked to, else let it go."""
        channel = event.channel
        if self._observers:
            self._tell(channel, "live", None)
        verdict = self._subs.unsubscribed(event, asyncio.get_running_loop().time())
        if verdict.resubscribed:
            return
        self._log.warning("stream: server unsubscribed %s (code %d)", channel, event.code)
        for waiter in verdict.callers:
            if not waiter.done():
                waiter.set_exception(StreamError(f"the server unsubscribed {channel}"))
        self._notify()
        self._gap(channel, "unsubscribed")

    def _on_reply_error(self, event: ReplyError) -> None:
        """An error reply: fail the RPC, or decide what the refused command means for the link."""
        error = StreamRpcError(event.message, errno=event.code, temporary=event.temporary)
        if event.method == "rpc":
            self._fail_one_rpc(event.command_id, error)
            return
        if event.token_expired:
            first = self._refusals.refused(self._refused_by(event), event.code)
            raise _Drop(f"{event.method}: token expired", immediate=first)
        if event.temporary or event.code == ERROR_ALREADY_SUBSCRIBED:
            raise _Drop(f"{event.method}: temporary error {event.code}")
        if event.method == "connect":
            raise _Fatal(self._connect_refused(event))
        if event.method == "subscribe" and event.channel is not None:
            self._refuse_subscription(event.command_id, event.channel, error)
            return
        if event.method == "refresh":
            self._refusals.refused(self._refused_by(event), event.code)
            raise _Drop(f"refresh refused ({event.code})")

    @staticmethod
    def _connect_refused(event: ReplyError) -> CadenzaError:
        if event.code == ERROR_UNAUTHORIZED:
            return StreamAuthenticationError(
                f"the WebSocket refused the token: {event.message}", code=event.code
            )
        return StreamError(f"connect refused: {event.message}", code=event.code)

    def _refuse_subscription(self, command_id: int, channel: str, error: StreamRpcError) -> None:
        """A subscribe was refused: never a silent drop.

        112 (unrecoverable position): subscribed again from the current
        position, without recovery, and ``on_gap`` so the application
        reconciles by REST. Anything else (103 permission denied, ...): the
        channel is no longer wanted (a later :meth:`subscribe` or
        :meth:`want` asks again), its subscribe callers get the error and
        ``on_refused(channel, error)`` tells the application.
        """
        now = asyncio.get_running_loop().time()
        refusal = self._subs.refused(command_id, channel, error.errno or 0, now)
        if refusal.resubscribed:
            self._log.warning(
                "stream: %s cannot be recovered (112); resubscribing from now and reconciling",
                channel,
            )
            self._gap(channel, "unrecoverable")
            return
        for waiter in refusal.callers:
            if not waiter.done():
                waiter.set_exception(error)
        if refusal.was_wanted:
            self._log.warning(
                "stream: subscribe to %s refused (%d %s)", channel, error.errno, error.message
            )
        self._notify()
        if self._on_refused is not None:
            try:
                self._on_refused(channel, error)
            except Exception:
                self._log.exception("on_refused callback failed for %s", channel)
        if self._observers:
            self._tell(channel, "refused", error)

    def _refused_by(self, event: ReplyError) -> str:
        """The token ``event`` refused: the one a refresh carried, else the connection's."""
        cmd = self._refresh_cmd
        if event.method == "refresh" and cmd is not None and cmd[0] == event.command_id:
            self._refresh_cmd = None
            return cmd[1]
        return self._conn_token

    def _fail_rpc(self, error: Exception) -> None:
        waiters, self._rpc_waiters = self._rpc_waiters, {}
        for waiter in waiters.values():
            if not waiter.done():
                waiter.set_exception(error)

    async def _refresh(self) -> None:
        """Refresh the open connection's token before its ttl runs out (on ``RefreshNeeded``).

        Keyed on the connection's token: a token the HTTP side already
        fetched is sent without calling the provider. When the provider
        fails or hands back the same token, nothing is sent: the connection
        runs until the server expires it (close 3005) and the reconnect asks
        the provider again, failing the stream if that fails too.
        """
        stale = self._conn_token
        try:
            token = await self._tokens.refresh(stale, timeout=self._config.timeouts.connect)
        except AuthenticationError as exc:
            self._log.warning(
                "stream: token refresh failed (%s); keeping the connection until it expires",
                exc.message,
            )
            return
        if token == stale:
            self._log.info(
                "stream: the token provider has no newer token; "
                "keeping the connection until it expires"
            )
            return
        if self._proto.connected and self._ws is not None:
            cid = self._proto.send_refresh(token, asyncio.get_running_loop().time())
            self._refresh_cmd = (cid, token)
            await self._after_commands()

    # ------------------------------------------------------------------ deadlines

    def _arm_timer(self) -> None:
        deadline = self._proto.next_deadline()
        if deadline is None:
            return
        timer = self._timer
        if timer is not None:
            if self._timer_when <= deadline:
                return
            timer.cancel()
        self._timer_when = deadline
        self._timer = asyncio.get_running_loop().call_at(deadline, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        ws = self._ws
        if ws is None or self._closing:
            return  # closing: the close handshake has its own timeout
        proto = self._proto
        receiving = False
        if isinstance(ws, _LiveConnection):
            proto.note_activity(ws.last_data)  # bytes of a frame still arriving count too
            receiving = ws.receiving
        try:
            now = asyncio.get_running_loop().time()
            for event in proto.check_timeouts(now, receiving=receiving):
                self._apply_event(event)
        except _Drop as drop:
            self._abort(drop.reason)
            return
        except _Fatal as fatal:  # pragma: no cover - timeouts never produce terminal events
            self._abort(str(fatal))
            return
        self._arm_timer()

    def _abort(self, reason: str) -> None:
        """Drop the current socket at once (no close handshake): the reader reconnects."""
        ws = self._ws
        if ws is None:
            return
        self._drop_reason = reason
        ws.transport.abort()
