"""The Centrifugo client protocol (JSON) as a sans-I/O state machine: frames in, events out.

Rule of this file: no sockets, no clocks, no tasks. The caller feeds every
received text frame with the current time, acts on the returned events,
and writes whatever :meth:`CentrifugoProtocol.data_to_send` returns. Time
only enters as ``now`` arguments; :meth:`~CentrifugoProtocol.next_deadline`
says when :meth:`~CentrifugoProtocol.check_timeouts` must be called next.

The wire itself (the message shapes, decoding with the deep-data fallback,
encoding, batching commands into frames) is
:mod:`cadenza_async.protocol.centrifugo_codec`'s; this file gives the
messages their meaning.

One protocol object lives for the whole life of a stream and survives its
connections: per-channel stream positions (epoch, offset of the last
APPLIED publication) are kept across :meth:`~CentrifugoProtocol.connection_lost`
so the next subscribe can ask for recovery.

Per-connection states::

    IDLE --send_connect--> CONNECTING --connect reply--> CONNECTED
      ^                        |                            |
      +---- connection_lost ---+----------------------------+
    any state --bad frame / ping timeout--> BROKEN (frames ignored until connection_lost)

What the peer may send and what happens:

========================================  ===============================================
received                                  result
========================================  ===============================================
``{}`` (ping)                             ``{}`` queued when the connect result said pong
reply with a known id                     ``Connected`` / ``Subscribed`` / ``Reply``
                                          / ``ReplyError``
reply with an unknown or timed-out id     ignored (late replies are harmless)
reply to a subscribe since unsubscribed   ignored, success or error (the channel's
or sent again                             newest subscribe is the one that counts)
``push.pub`` on a subscribed channel      ``Publication``; offset <= position: dropped
                                          (duplicate); offset skips: ``PositionGap`` first
``push.unsubscribe``                      ``Unsubscribed`` (code >= 2500: resubscribe)
``push.disconnect``                       ``Disconnected``
unknown push kinds, unknown fields        ignored
a publication whose ``data`` nests         ``Publication`` with ``data`` =
deeper than the decoder allows            ``UNDECODABLE_DATA`` (the envelope is intact)
not JSON / not UTF-8 / too deep /         ``ProtocolViolation`` (last event of the frame);
wrong types / blank line                  the connection must be dropped
========================================  ===============================================

Nothing here raises on peer input: a frame either yields events or a
``ProtocolViolation``. Misuse by the caller (a command before the connect
reply, invalid RPC payload) raises :class:`CentrifugoUsageError`.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from typing import NamedTuple

import msgspec

from .centrifugo_codec import (
    DECODE_ERRORS,
    MAX_DATA_DEPTH,
    MAX_FRAME_SIZE,
    UNDECODABLE_DATA,
    ChannelRequest,
    Command,
    ConnectRequest,
    ConnectResult,
    ErrorBody,
    Message,
    PubBody,
    Push,
    RefreshRequest,
    RefreshResult,
    RpcRequest,
    SubscribeRequest,
    SubscribeResult,
    batch_frames,
    decode_message,
    decode_without_deep_data,
    encode_command,
    is_json,
)

__all__ = [
    "ERROR_ALREADY_SUBSCRIBED",
    "ERROR_TOKEN_EXPIRED",
    "ERROR_UNAUTHORIZED",
    "MAX_DATA_DEPTH",
    "MAX_FRAME_SIZE",
    "UNDECODABLE_DATA",
    "CentrifugoProtocol",
    "CentrifugoUsageError",
    "CommandTimedOut",
    "Connected",
    "Disconnected",
    "Event",
    "PingTimeout",
    "PositionGap",
    "ProtocolViolation",
    "Publication",
    "RefreshNeeded",
    "Reply",
    "ReplyError",
    "StreamPosition",
    "Subscribed",
    "Unsubscribed",
    "close_code_reconnects",
    "error_is_temporary",
    "reconnect_delays",
    "unsubscribe_code_resubscribes",
]

# --------------------------------------------------------------------------- codes

ERROR_INTERNAL = 100
ERROR_UNAUTHORIZED = 101
ERROR_ALREADY_SUBSCRIBED = 105
ERROR_TOKEN_EXPIRED = 109
ERROR_TOO_MANY_REQUESTS = 111
ERROR_CONCURRENT_PAGINATION = 113
_TEMPORARY_ERRORS = frozenset(
    {ERROR_INTERNAL, ERROR_TOO_MANY_REQUESTS, ERROR_CONCURRENT_PAGINATION}
)


def close_code_reconnects(code: int | None) -> bool:
    """True when a connection closed with ``code`` may be reopened.

    ``None`` (no close frame: reset, half-open, abort) and ``< 3000``
    (transport level) reconnect; 3000-3499 and 4000-4499 reconnect;
    3500-3999 and 4500-4999 are terminal. Anything above 4999 reconnects.
    """
    if code is None or code < 3500:
        return True
    if code < 4000:
        return False
    if code < 4500:
        return True
    return code >= 5000


def error_is_temporary(code: int, flagged: bool = False) -> bool:
    """True for a reply error worth retrying with backoff (the server's flag or 100/111/113)."""
    return flagged or code in _TEMPORARY_ERRORS


def unsubscribe_code_resubscribes(code: int) -> bool:
    """True when an unsubscribe push with ``code`` asks the client to subscribe again."""
    return code >= 2500


def reconnect_delays(
    min_delay: float = 0.1, max_delay: float = 20.0, rng: random.Random | None = None
) -> Iterator[float]:
    """Endless full-jitter backoff: ``min(max, min + uniform(0, min(max, min * 2**attempt)))``.

    Start a new generator after a successful connect (that resets the attempt count).
    """
    uniform = (rng or random).uniform
    attempt = 0
    while True:
        yield min(max_delay, min_delay + uniform(0.0, min(max_delay, min_delay * 2.0**attempt)))
        if attempt < 64:
            attempt += 1


# --------------------------------------------------------------------------- events


class StreamPosition(NamedTuple):
    """Where a channel's stream stands: its epoch and the offset of the last applied publication."""

    epoch: str
    offset: int


class Connected(msgspec.Struct, frozen=True):
    """The connect command succeeded; ``ping`` is the server's ping interval in seconds."""

    client_id: str
    version: str
    ping: float
    pong: bool
    expires: bool
    ttl: float


class Publication(msgspec.Struct, frozen=True, gc=False):
    """One publication to apply, in order; ``data`` is the undecoded JSON payload."""

    channel: str
    data: msgspec.Raw
    offset: int | None


class Subscribed(msgspec.Struct, frozen=True):
    """A subscribe command succeeded.

    ``publications`` are the recovered ones not seen before, in offset order:
    apply them before anything received later. ``gap`` is True when
    continuity was lost (recovery asked for and refused, or a resubscribe
    without a position): the application must reload from its source of truth.
    """

    command_id: int
    channel: str
    recovered: bool
    was_recovering: bool
    recoverable: bool
    positioned: bool
    epoch: str
    offset: int
    publications: list[Publication]
    gap: bool


class PositionGap(msgspec.Struct, frozen=True):
    """A live publication skipped offsets: publications in between were lost."""

    channel: str
    expected_offset: int
    got_offset: int


class Reply(msgspec.Struct, frozen=True):
    """A successful reply to an ``rpc``, ``unsubscribe`` or ``refresh`` command."""

    command_id: int
    method: str
    data: msgspec.Raw


class ReplyError(msgspec.Struct, frozen=True):
    """An error reply to any command; ``channel`` is set for subscribe errors."""

    command_id: int
    method: str
    channel: str | None
    code: int
    message: str
    temporary: bool

    @property
    def token_expired(self) -> bool:
        """Error 109: fetch a new token and retry."""
        return self.code == ERROR_TOKEN_EXPIRED


class CommandTimedOut(msgspec.Struct, frozen=True):
    """No reply in time; a late reply to this id will be ignored."""

    command_id: int
    method: str
    channel: str | None


class Unsubscribed(msgspec.Struct, frozen=True):
    """The server unsubscribed a channel; subscribe again when ``resubscribe`` is True."""

    channel: str
    code: int
    reason: str
    resubscribe: bool


class Disconnected(msgspec.Struct, frozen=True):
    """The connection ended; ``reconnect`` is False for terminal codes."""

    code: int | None
    reason: str
    reconnect: bool


class RefreshNeeded(msgspec.Struct, frozen=True):
    """The connection token expires soon: fetch a fresh one and call ``send_refresh``."""


class PingTimeout(msgspec.Struct, frozen=True):
    """Nothing received for ``silence`` seconds (ping interval + max delay): drop the link.

    "Received" is a whole frame or any bytes reported by :meth:`CentrifugoProtocol.note_activity`.
    """

    silence: float


class ProtocolViolation(msgspec.Struct, frozen=True):
    """The peer sent something this client cannot accept: drop the connection.

    ``reason`` never contains frame contents (they may carry secrets).
    """

    reason: str


Event = (
    Connected
    | Subscribed
    | Publication
    | PositionGap
    | Reply
    | ReplyError
    | CommandTimedOut
    | Unsubscribed
    | Disconnected
    | RefreshNeeded
    | PingTimeout
    | ProtocolViolation
)


class CentrifugoUsageError(RuntimeError):
    """The caller misused the protocol object (for example a command before connecting)."""


RECEIVING_RECHECK = 0.25
"""Seconds a due reply deadline is postponed while a frame is still arriving."""


def _continuity_lost(
    recovering: bool, resubscribing: bool, res: SubscribeResult, last: int | None
) -> bool:
    """True when a subscribe reply leaves a hole before what comes next.

    Recovery asked for and refused; no recovery asked for on a channel that
    was subscribed before; or the server's top past the last publication it
    replayed.
    """
    refused = (not res.recovered) if recovering else resubscribing
    return refused or (res.recovered and last is not None and res.offset > last)


# --------------------------------------------------------------------------- state

_IDLE = 0
_CONNECTING = 1
_CONNECTED = 2
_BROKEN = 3

_UNSUBSCRIBED = 0
_SUBSCRIBING = 1
_SUBSCRIBED = 2


class _Channel:
    """One channel's subscription on the current connection and its position (kept across)."""

    __slots__ = ("command_id", "epoch", "ever_subscribed", "offset", "positioned", "state")

    def __init__(self) -> None:
        self.state = _UNSUBSCRIBED
        self.positioned = False
        self.epoch = ""
        self.offset = 0
        self.ever_subscribed = False
        self.command_id = 0  # the subscribe in flight (while SUBSCRIBING)


class _AwaitedReply:
    """A command sent and not yet answered: what it was, and until when its reply may come."""

    __slots__ = ("channel", "deadline", "method", "recover")

    def __init__(self, method: str, deadline: float, channel: str | None, recover: bool) -> None:
        self.method = method
        self.deadline = deadline
        self.channel = channel
        self.recover = recover


class CentrifugoProtocol:
    """The client side of one Centrifugo stream: commands out, events in, positions kept.

    ``max_ping_delay`` is added to the server's ping interval to get the
    no-ping deadline (any received data counts as liveness).
    ``command_timeout`` is the default reply deadline of every command.
    ``refresh_margin`` is how long before a token's ``ttl`` runs out
    :class:`RefreshNeeded` is emitted (at most half the ttl).
    ``max_frame_size`` bounds the frames :meth:`data_to_send` batches
    commands into (bytes; the server's inbound message limit).
    """

    def __init__(
        self,
        *,
        max_ping_delay: float = 10.0,
        command_timeout: float = 10.0,
        refresh_margin: float = 10.0,
        max_frame_size: int = MAX_FRAME_SIZE,
    ) -> None:
        if max_frame_size < 1:
            raise CentrifugoUsageError("max_frame_size must be >= 1")
        self.max_ping_delay = max_ping_delay
        self.command_timeout = command_timeout
        self.refresh_margin = refresh_margin
        self.max_frame_size = max_frame_size
        self._state = _IDLE
        self._channels: dict[str, _Channel] = {}
        self._pending: dict[int, _AwaitedReply] = {}
        self._deadlines: list[tuple[float, int]] = []
        self._next_id = 0
        self._out: list[str] = []
        self._pong = False
        self._ping_interval = 0.0
        self._last_received = 0.0
        self._refresh_at: float | None = None
        self.client_id = ""
        self.pings_received = 0
        self.duplicates_dropped = 0
        self.undecodable_publications = 0

    def __repr__(self) -> str:
        states = ("idle", "connecting", "connected", "broken")
        return f"<CentrifugoProtocol {states[self._state]} channels={len(self._channels)}>"

    # ----------------------------------------------------------------- queries

    @property
    def connected(self) -> bool:
        """True between the connect reply and the end of the connection."""
        return self._state == _CONNECTED

    @property
    def positions(self) -> dict[str, StreamPosition]:
        """The last applied position of every positioned channel (a copy)."""
        return {
            name: StreamPosition(ch.epoch, ch.offset)
            for name, ch in self._channels.items()
            if ch.positioned
        }

    def is_subscribed(self, channel: str) -> bool:
        """True when ``channel`` is subscribed on the current connection."""
        ch = self._channels.get(channel)
        return ch is not None and ch.state == _SUBSCRIBED

    def is_subscribing(self, channel: str) -> bool:
        """True while a subscribe of ``channel`` waits for its reply on the current connection."""
        ch = self._channels.get(channel)
        return ch is not None and ch.state == _SUBSCRIBING

    def awaiting_reply(self, command_id: int) -> bool:
        """True while command ``command_id`` waits for its reply (not answered, timed out or lost)."""
        return command_id in self._pending

    @property
    def has_data_to_send(self) -> bool:
        """True when :meth:`data_to_send` has frames to write."""
        return bool(self._out)

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`check_timeouts` has something to report, or ``None``."""
        best: float | None = None
        if self._state == _CONNECTED and self._ping_interval > 0:
            best = self._last_received + self._ping_interval + self.max_ping_delay
        if self._refresh_at is not None and (best is None or self._refresh_at < best):
            best = self._refresh_at
        heap = self._deadlines
        pending = self._pending
        while heap and heap[0][1] not in pending:
            heapq.heappop(heap)
        if heap and (best is None or heap[0][0] < best):
            best = heap[0][0]
        return best

    # ----------------------------------------------------------------- commands

    def data_to_send(self) -> list[str]:
        """The text frames to write now, in order: as few as ``max_frame_size`` allows.

        Commands are ``\\n``-batched (Centrifugo reads several commands from
        one message), each frame at most ``max_frame_size`` bytes; a single
        command longer than that goes alone.
        """
        out = self._out
        if not out:
            return []
        self._out = []
        if len(out) == 1:
            return out
        return batch_frames(out, self.max_frame_size)

    def send_connect(
        self,
        token: str,
        now: float,
        *,
        name: str = "cadenza-async",
        version: str = "",
        timeout: float | None = None,
    ) -> int:
        """Queue the connect command; its reply gives :class:`Connected` or :class:`ReplyError`."""
        if self._state != _IDLE:
            raise CentrifugoUsageError("connect may only be sent once per connection")
        self._state = _CONNECTING
        self._last_received = now
        return self._command(
            Command(0, connect=ConnectRequest(token=token, name=name, version=version)),
            "connect",
            now,
            timeout,
        )

    def send_subscribe(
        self,
        channel: str,
        now: float,
        *,
        recover: bool = True,
        recover_from: StreamPosition | None = None,
        timeout: float | None = None,
    ) -> int:
        """Queue a subscribe; with ``recover`` it asks to resume from the last applied position.

        ``recover_from`` overrides the remembered position. The reply gives
        :class:`Subscribed` or :class:`ReplyError`.
        """
        self._require_connected()
        if not isinstance(channel, str) or not channel:
            raise CentrifugoUsageError("channel must be a non-empty str")
        ch = self._channels.get(channel)
        if ch is None:
            ch = self._channels[channel] = _Channel()
        elif ch.state != _UNSUBSCRIBED:
            raise CentrifugoUsageError(f"channel {channel!r} is already subscribed or subscribing")
        position = recover_from
        if position is None and recover and ch.positioned:
            position = StreamPosition(ch.epoch, ch.offset)
        request = SubscribeRequest(channel)
        if position is not None:
            request.recover = True
            request.epoch = position.epoch
            request.offset = position.offset
            if recover_from is not None:
                ch.positioned = True
                ch.epoch, ch.offset = recover_from
        ch.state = _SUBSCRIBING
        ch.command_id = self._command(
            Command(0, subscribe=request),
            "subscribe",
            now,
            timeout,
            channel=channel,
            recover=position is not None,
        )
        return ch.command_id

    def send_unsubscribe(self, channel: str, now: float = 0.0) -> int:
        """Queue an unsubscribe and forget the channel's position (pushes for it are ignored)."""
        self._require_connected()
        self._channels.pop(channel, None)
        return self._command(
            Command(0, unsubscribe=ChannelRequest(channel)), "unsubscribe", now, None
        )

    def forget(self, channel: str) -> None:
        """Drop everything known about ``channel`` (no command is sent)."""
        self._channels.pop(channel, None)

    def send_rpc(
        self, method: str, data: bytes, now: float, *, timeout: float | None = None
    ) -> int:
        """Queue an RPC; ``data`` must be a JSON document. The reply gives :class:`Reply`."""
        self._require_connected()
        if not is_json(data):
            raise CentrifugoUsageError("rpc data must be valid JSON")
        return self._command(
            Command(0, rpc=RpcRequest(method, msgspec.Raw(data))), "rpc", now, timeout
        )

    def send_refresh(self, token: str, now: float, *, timeout: float | None = None) -> int:
        """Queue a connection token refresh; the reply re-arms :class:`RefreshNeeded`."""
        self._require_connected()
        return self._command(Command(0, refresh=RefreshRequest(token)), "refresh", now, timeout)

    def _require_connected(self) -> None:
        if self._state != _CONNECTED:
            raise CentrifugoUsageError("not connected: wait for the Connected event")

    def _command(
        self,
        command: Command,
        method: str,
        now: float,
        timeout: float | None,
        *,
        channel: str | None = None,
        recover: bool = False,
    ) -> int:
        self._next_id += 1
        cid = command.id = self._next_id
        self._out.append(encode_command(command))
        deadline = now + (self.command_timeout if timeout is None else timeout)
        self._pending[cid] = _AwaitedReply(method, deadline, channel, recover)
        heapq.heappush(self._deadlines, (deadline, cid))
        return cid

    # ----------------------------------------------------------------- input

    def note_activity(self, now: float) -> None:
        """Count bytes received at ``now`` as liveness, even if no whole frame arrived yet.

        The transport calls this with the time it last read any data: a
        large frame arriving slowly keeps the link alive. Earlier times
        than the last activity already seen are ignored.
        """
        if now > self._last_received:
            self._last_received = now

    def receive_frame(self, data: str | bytes, now: float) -> list[Event]:
        """Process one received text frame (one or more ``\\n``-separated messages).

        Returns the events in wire order. On bad input the last event is a
        :class:`ProtocolViolation`; everything before it is valid and must be
        applied, and the connection must then be dropped. Never raises on
        peer input.
        """
        # One of the two hot paths allowed above CC 15 (with
        # ConfirmationRegistry.observe): every order event of every account
        # passes here, so the publication case is inlined (no method call, no
        # attribute look-ups in the loop) and the rarer kinds go to helpers.
        self._last_received = now
        events: list[Event] = []
        if self._state == _BROKEN:
            return events
        if not isinstance(data, str):
            try:
                data = str(data, "utf-8")
            except (UnicodeDecodeError, TypeError):
                return self._violation(events, "frame is not valid UTF-8")
        if "\n" in data:
            lines = data.split("\n")
            if len(lines) > 1 and lines[-1] == "":
                lines.pop()
        else:
            lines = [data]
        decode = decode_message
        channels = self._channels
        for line in lines:
            if not line or line.isspace():
                return self._violation(events, "blank message in frame")
            try:
                msg = decode(line)
            except RecursionError:
                shallow = decode_without_deep_data(line)
                if shallow is None:
                    return self._violation(events, "undecodable message (nested too deep)")
                msg, replaced = shallow
                self.undecodable_publications += replaced
            except DECODE_ERRORS as exc:
                return self._violation(events, f"undecodable message ({type(exc).__name__})")
            push = msg.push
            if push is not None:
                pub = push.pub
                if pub is not None:
                    # hot path: one publication
                    channel = push.channel
                    ch = channels.get(channel)
                    if ch is None or ch.state != _SUBSCRIBED:
                        continue
                    off = pub.offset
                    if off:
                        if ch.positioned:
                            cur = ch.offset
                            if off <= cur:
                                self.duplicates_dropped += 1
                                continue
                            if off != cur + 1:
                                events.append(PositionGap(channel, cur + 1, off))
                        else:
                            ch.positioned = True
                        ch.offset = off
                        events.append(Publication(channel, pub.data, off))
                    else:
                        events.append(Publication(channel, pub.data, None))
                else:
                    self._handle_push(push, events)
                continue
            cid = msg.id
            if cid:
                self._handle_reply(cid, msg, now, events)
                continue
            if msg.error is not None:
                continue  # an error without an id answers nothing we sent
            if self._state == _CONNECTED:
                self.pings_received += 1
                if self._pong:
                    self._out.append("{}")
        return events

    def _violation(self, events: list[Event], reason: str) -> list[Event]:
        self._state = _BROKEN
        events.append(ProtocolViolation(reason))
        return events

    def _handle_push(self, push: Push, events: list[Event]) -> None:
        unsub = push.unsubscribe
        if unsub is not None:
            ch = self._channels.get(push.channel)
            if ch is None:
                return
            resubscribe = unsubscribe_code_resubscribes(unsub.code)
            if resubscribe:
                ch.state = _UNSUBSCRIBED
            else:
                del self._channels[push.channel]
            events.append(Unsubscribed(push.channel, unsub.code, unsub.reason, resubscribe))
            return
        disc = push.disconnect
        if disc is not None:
            self._state = _BROKEN
            events.append(Disconnected(disc.code, disc.reason, close_code_reconnects(disc.code)))
        # join, leave, message, subscribe, refresh and unknown kinds: ignored

    def _handle_reply(self, cid: int, msg: Message, now: float, events: list[Event]) -> None:
        pending = self._pending.pop(cid, None)
        if pending is None:
            return  # unknown id or a late reply to a timed-out command
        err = msg.error
        event = (
            self._reply_error(cid, pending, err)
            if err is not None
            else self._reply_event(cid, pending, msg, now)
        )
        if event is not None:
            events.append(event)

    def _subscribing(self, channel: str, cid: int) -> _Channel | None:
        """``channel`` if subscribe ``cid`` is still the one it waits on, else ``None`` (stale)."""
        ch = self._channels.get(channel)
        if ch is None or ch.state != _SUBSCRIBING or ch.command_id != cid:
            return None
        return ch

    def _reply_error(self, cid: int, pending: _AwaitedReply, err: ErrorBody) -> ReplyError | None:
        channel = pending.channel
        if channel is not None:
            ch = self._subscribing(channel, cid)
            if ch is None:
                return None  # unsubscribed (or subscribed anew) while it was in flight
            ch.state = _UNSUBSCRIBED
        temporary = error_is_temporary(err.code, err.temporary)
        return ReplyError(cid, pending.method, channel, err.code, err.message, temporary)

    def _reply_event(
        self, cid: int, pending: _AwaitedReply, msg: Message, now: float
    ) -> Event | None:
        """The event of a successful reply, by the method of the command it answers."""
        method = pending.method
        if method == "subscribe":
            return self._subscribed(cid, pending, msg.subscribe or SubscribeResult())
        if method == "connect":
            return self._connected(msg.connect or ConnectResult(), now)
        if method == "refresh":
            ref = msg.refresh or RefreshResult()
            self._arm_refresh(ref.expires, ref.ttl, now)
        elif method == "rpc" and msg.rpc is not None:
            return Reply(cid, method, msg.rpc.data)
        return Reply(cid, method, msgspec.Raw(b"null"))

    def _connected(self, res: ConnectResult, now: float) -> Connected:
        self._state = _CONNECTED
        self.client_id = res.client
        self._pong = res.pong
        self._ping_interval = res.ping
        self._last_received = now
        self._arm_refresh(res.expires, res.ttl, now)
        return Connected(res.client, res.version, res.ping, res.pong, res.expires, res.ttl)

    def _arm_refresh(self, expires: bool, ttl: float, now: float) -> None:
        if expires and ttl > 0:
            self._refresh_at = now + ttl - min(self.refresh_margin, ttl / 2)
        else:
            self._refresh_at = None

    def _subscribed(
        self, cid: int, pending: _AwaitedReply, res: SubscribeResult
    ) -> Subscribed | None:
        channel = pending.channel
        assert channel is not None
        ch = self._subscribing(channel, cid)
        if ch is None:
            return None  # unsubscribed (or subscribed anew) while it was in flight
        same_stream = ch.positioned and ch.epoch == res.epoch
        start = ch.offset if same_stream else None
        out, last, skipped = self._replayed(channel, res.publications, start)
        gap = skipped or _continuity_lost(pending.recover, ch.ever_subscribed, res, last)
        ch.state = _SUBSCRIBED
        ch.ever_subscribed = True
        ch.positioned = res.positioned or res.recoverable or bool(res.epoch) or last is not None
        ch.epoch = res.epoch
        ch.offset = max(res.offset, last or 0)
        return Subscribed(
            cid,
            channel,
            res.recovered,
            res.was_recovering,
            res.recoverable,
            res.positioned,
            res.epoch,
            ch.offset,
            out,
            gap,
        )

    def _replayed(
        self, channel: str, pubs: list[PubBody], last: int | None
    ) -> tuple[list[Publication], int | None, bool]:
        """A subscribe reply's publications after ``last``, in offset order, duplicates dropped.

        Returns them, the last offset applied, and whether offsets were skipped.
        """
        if len(pubs) > 1 and any(pubs[i].offset > pubs[i + 1].offset for i in range(len(pubs) - 1)):
            pubs = sorted(pubs, key=lambda p: p.offset)
        out: list[Publication] = []
        skipped = False
        for p in pubs:
            off = p.offset
            if off and last is not None:
                if off <= last:
                    self.duplicates_dropped += 1
                    continue
                if off != last + 1:
                    skipped = True
            out.append(Publication(channel, p.data, off or None))
            if off:
                last = off
        return out, last, skipped

    # ----------------------------------------------------------------- time

    def check_timeouts(self, now: float, *, receiving: bool = False) -> list[Event]:
        """Report everything due at ``now``: ping silence, unanswered commands, token refresh.

        ``receiving`` says a frame is partly received at ``now`` (the
        transport holds bytes of an unfinished frame). Reply deadlines that
        fall due then are postponed by :data:`RECEIVING_RECHECK` seconds: the
        late reply may be the frame still arriving (a big recovery reply on
        a slow link). A link that stops mid-frame still ends in
        :class:`PingTimeout`, which is checked first.
        """
        events: list[Event] = []
        if self._state == _CONNECTED and self._ping_interval > 0:
            silence = now - self._last_received
            if silence >= self._ping_interval + self.max_ping_delay:
                self._state = _BROKEN
                events.append(PingTimeout(silence))
        self._expire_commands(now, receiving, events)
        if self._refresh_at is not None and now >= self._refresh_at and self._state == _CONNECTED:
            self._refresh_at = None
            events.append(RefreshNeeded())
        return events

    def _expire_commands(self, now: float, receiving: bool, events: list[Event]) -> None:
        """A :class:`CommandTimedOut` for each command due at ``now`` (postponed while receiving)."""
        heap = self._deadlines
        pending = self._pending
        postponed: list[tuple[float, int]] = []
        while heap and heap[0][0] <= now:
            _, cid = heapq.heappop(heap)
            if cid not in pending:
                continue
            if receiving and self._state != _BROKEN:
                postponed.append((now + RECEIVING_RECHECK, cid))
                continue
            p = pending.pop(cid)
            if p.channel is not None:
                ch = self._subscribing(p.channel, cid)
                if ch is not None:
                    ch.state = _UNSUBSCRIBED
            events.append(CommandTimedOut(cid, p.method, p.channel))
        for item in postponed:
            pending[item[1]].deadline = item[0]
            heapq.heappush(heap, item)

    def connection_lost(self, close_code: int | None, reason: str = "") -> Disconnected:
        """End the current connection: pending commands and subscriptions are dropped.

        Positions are kept for recovery. The returned event says whether
        reconnecting is allowed for ``close_code`` (``None``: no close frame).
        """
        self._state = _IDLE
        self._pending.clear()
        self._deadlines.clear()
        self._out.clear()
        self._pong = False
        self._ping_interval = 0.0
        self._refresh_at = None
        for ch in self._channels.values():
            ch.state = _UNSUBSCRIBED
        return Disconnected(close_code, reason, close_code_reconnects(close_code))
