"""The Centrifugo JSON wire (the codec): message shapes, decoding, encoding and batching.

Rule of this file: no sockets, no clocks, no tasks, and no state: it turns
text into typed messages and back. What the messages mean (replies routed by
id, positions, gaps, deadlines) is :mod:`cadenza_async.protocol.centrifugo`'s.

==================================  ============================================
piece                               what it does
==================================  ============================================
:class:`Message` and the structs    every inbound message (reply, push, ping) as
it holds                            msgspec decodes it: unknown fields ignored,
                                    missing ones defaulted (a tolerant reader)
:func:`decode_message`              one message (one line of a frame)
:func:`decode_without_deep_data`    the fallback for a message whose publication
                                    ``data`` nests too deep: that value becomes
                                    :data:`UNDECODABLE_DATA`, the rest is kept
:class:`Command` and its requests,  every outbound command, defaults omitted (an
:func:`encode_command`              exact writer)
:func:`batch_frames`                commands joined with ``\\n`` into frames of
                                    at most :data:`MAX_FRAME_SIZE` bytes
:func:`is_json`                     whether an RPC payload is a JSON document
==================================  ============================================

Decoding raises only :data:`DECODE_ERRORS`; the state machine turns them
into a ``ProtocolViolation``.
"""

from __future__ import annotations

import re
from typing import Annotated, Final

import msgspec

__all__ = [
    "DECODE_ERRORS",
    "MAX_DATA_DEPTH",
    "MAX_FRAME_SIZE",
    "UNDECODABLE_DATA",
    "ChannelRequest",
    "Command",
    "ConnectRequest",
    "ConnectResult",
    "DataResult",
    "DisconnectPush",
    "ErrorBody",
    "Message",
    "PubBody",
    "Push",
    "RefreshRequest",
    "RefreshResult",
    "RpcRequest",
    "SubscribeRequest",
    "SubscribeResult",
    "UnsubscribePush",
    "batch_frames",
    "decode_message",
    "decode_without_deep_data",
    "encode_command",
    "is_json",
]

# --------------------------------------------------------------------------- messages

Offset = Annotated[int, msgspec.Meta(ge=0)]


class ErrorBody(msgspec.Struct):
    code: int = 0
    message: str = ""
    temporary: bool = False


class PubBody(msgspec.Struct):
    data: msgspec.Raw = msgspec.Raw(b"null")
    offset: Offset = 0


class ConnectResult(msgspec.Struct):
    client: str = ""
    version: str = ""
    ping: float = 0.0
    pong: bool = False
    expires: bool = False
    ttl: float = 0.0


class SubscribeResult(msgspec.Struct):
    recoverable: bool = False
    positioned: bool = False
    epoch: str = ""
    offset: Offset = 0
    publications: list[PubBody] = []
    recovered: bool = False
    was_recovering: bool = False


class DataResult(msgspec.Struct):
    data: msgspec.Raw = msgspec.Raw(b"null")


class RefreshResult(msgspec.Struct):
    expires: bool = False
    ttl: float = 0.0


class UnsubscribePush(msgspec.Struct):
    code: int = 0
    reason: str = ""


class DisconnectPush(msgspec.Struct):
    code: int = 0
    reason: str = ""


class Push(msgspec.Struct):
    channel: str = ""
    pub: PubBody | None = None
    unsubscribe: UnsubscribePush | None = None
    disconnect: DisconnectPush | None = None


class Message(msgspec.Struct):
    id: Offset = 0
    push: Push | None = None
    error: ErrorBody | None = None
    connect: ConnectResult | None = None
    subscribe: SubscribeResult | None = None
    rpc: DataResult | None = None
    refresh: RefreshResult | None = None


class ConnectRequest(msgspec.Struct, omit_defaults=True):
    token: str = ""
    name: str = ""
    version: str = ""


class SubscribeRequest(msgspec.Struct, omit_defaults=True):
    channel: str
    recover: bool = False
    epoch: str = ""
    offset: int = 0


class ChannelRequest(msgspec.Struct, omit_defaults=True):
    channel: str


class RpcRequest(msgspec.Struct, omit_defaults=True):
    method: str
    data: msgspec.Raw


class RefreshRequest(msgspec.Struct, omit_defaults=True):
    token: str


class Command(msgspec.Struct, omit_defaults=True):
    id: int
    connect: ConnectRequest | None = None
    subscribe: SubscribeRequest | None = None
    unsubscribe: ChannelRequest | None = None
    rpc: RpcRequest | None = None
    refresh: RefreshRequest | None = None


_DECODER: Final = msgspec.json.Decoder(Message)
_ENCODER: Final = msgspec.json.Encoder()
_RAW_CHECK: Final = msgspec.json.Decoder()

DECODE_ERRORS: Final = (msgspec.MsgspecError, RecursionError, ValueError, OverflowError, TypeError)
"""What decoding a message can raise (``RecursionError``: nested too deep)."""

decode_message: Final = _DECODER.decode
"""One inbound message (a line of a frame) as a :class:`Message`; raises :data:`DECODE_ERRORS`."""


def encode_command(command: Command) -> str:
    """One outbound command as the JSON text of one message."""
    return _ENCODER.encode(command).decode()


def is_json(data: bytes) -> bool:
    """True when ``data`` is one JSON document (what an RPC's ``data`` must be)."""
    try:
        _RAW_CHECK.decode(data)
    except DECODE_ERRORS:
        return False
    return True


# --------------------------------------------------------------------------- frames

MAX_FRAME_SIZE = 65536
"""Bytes of one outbound frame: Centrifugo's default ``websocket.message_size_limit``.

Commands queued together are written as ``\\n``-separated batches, each at
most this long; the server closes a connection whose message passes its limit.
"""


def batch_frames(messages: list[str], limit: int) -> list[str]:
    """``messages`` joined with ``\\n`` into frames of at most ``limit`` UTF-8 bytes, in order."""
    frames: list[str] = []
    batch: list[str] = []
    size = 0
    for message in messages:
        n = len(message) if message.isascii() else len(message.encode())
        if batch and size + 1 + n > limit:
            frames.append("\n".join(batch))
            batch = []
        size = n if not batch else size + 1 + n
        batch.append(message)
    frames.append("\n".join(batch))
    return frames


# --------------------------------------------------------------------------- deep data

UNDECODABLE_DATA = b'"cadenza-async: undecodable publication data"'
"""What ``Publication.data`` holds when the publication's own data could not be decoded.

A JSON string where every order event is an object: any consumer that
validates the payload rejects it.
"""

MAX_DATA_DEPTH = 256
"""Publication data nested deeper than this is undecodable (see :func:`decode_without_deep_data`)."""

_STRUCTURE = re.compile(r'["{}\[\]:,]')
_STRING_TAIL = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


def _is_data_path(stack: list[tuple[str, str | None]]) -> bool:
    """True when the container just opened is ``push.pub.data`` or ``subscribe.publications[i].data``."""
    depth = len(stack)
    if depth == 4:
        return stack[3][1] == "data" and stack[2][1] == "pub" and stack[1][1] == "push"
    if depth == 5:
        return (
            stack[4][1] == "data"
            and stack[3][0] == "{"
            and stack[2] == ("[", "publications")
            and stack[1][1] == "subscribe"
        )
    return False


def decode_without_deep_data(line: str) -> tuple[Message, int] | None:
    """Decode a message the decoder refused for depth, with over-deep publication data replaced.

    Only used after ``RecursionError``. One linear scan finds every
    publication ``data`` value (a live ``push.pub`` or a publication in a
    subscribe reply) that nests deeper than :data:`MAX_DATA_DEPTH`; each is
    replaced by :data:`UNDECODABLE_DATA` and the message is decoded again.
    Returns the message and how many values were replaced, or ``None`` when
    nothing was replaced or the message still cannot be decoded: the depth
    is in the envelope itself and the frame is a protocol violation.

    Why publications are passed through instead of failing the frame: the
    WebSocket framing and the Centrifugo envelope (channel, offset) are
    intact, only the application payload is bad. Dropping the connection
    cannot fix that: the publication is in the channel's history, so the
    recovery after the reconnect replays it, and the link would never get
    past it. Passing it on keeps the position moving (its offset is
    applied), keeps every other message of the frame, and lets the
    application reject the payload as it rejects any malformed event.
    """
    spans = _DeepDataScan().run(line)
    if not spans:
        return None
    parts: list[str] = []
    prev = 0
    placeholder = UNDECODABLE_DATA.decode()
    for a, b in spans:
        parts.append(line[prev:a])
        parts.append(placeholder)
        prev = b
    parts.append(line[prev:])
    try:
        return _DECODER.decode("".join(parts)), len(spans)
    except DECODE_ERRORS:
        return None


class _DeepDataScan:
    """One linear scan of a message for publication ``data`` nested deeper than MAX_DATA_DEPTH.

    Follows only JSON's structure (strings, ``:``, ``,``, brackets) and the
    keys on the way down; see :func:`decode_without_deep_data`.
    """

    __slots__ = (
        "deepest",
        "expect_key",
        "key",
        "last_string",
        "span_depth",
        "span_start",
        "spans",
        "stack",
    )

    def __init__(self) -> None:
        self.stack: list[tuple[str, str | None]] = []
        self.key: str | None = None
        self.last_string: str | None = None
        self.expect_key = False
        self.spans: list[tuple[int, int]] = []
        self.span_start = -1
        self.span_depth = 0
        self.deepest = 0

    def run(self, line: str) -> list[tuple[int, int]] | None:
        """The (start, end) of every over-deep publication ``data``; ``None`` if not JSON."""
        search = _STRUCTURE.search
        tail = _STRING_TAIL.match
        pos = 0
        while (m := search(line, pos)) is not None:
            c = m.group()
            start = m.start()
            pos = start + 1
            if c == '"':
                end = tail(line, pos)
                if end is None:
                    return None  # unterminated string: not JSON
                pos = end.end()
                if self.expect_key:
                    self.last_string = line[start + 1 : pos - 1]
            elif c == ":":
                self.key, self.last_string, self.expect_key = self.last_string, None, False
            elif c == ",":
                self.key = None
                self.expect_key = self._in_object()
            elif c in "{[":
                self._open(c, start)
            elif not self._close(pos):
                return None
        return self.spans

    def _in_object(self) -> bool:
        stack = self.stack
        return bool(stack) and stack[-1][0] == "{"

    def _open(self, bracket: str, start: int) -> None:
        stack = self.stack
        stack.append((bracket, self.key if self._in_object() else None))
        depth = len(stack)
        if self.span_start >= 0:
            if depth > self.deepest:
                self.deepest = depth
        elif _is_data_path(stack):
            self.span_start, self.span_depth, self.deepest = start, depth, depth
        self.key = None
        self.expect_key = bracket == "{"

    def _close(self, end: int) -> bool:
        """A closing bracket at ``end - 1``; False when nothing is open (not JSON)."""
        stack = self.stack
        if not stack:
            return False
        stack.pop()
        self.key = None
        self.expect_key = False
        if self.span_start >= 0 and len(stack) < self.span_depth:
            if self.deepest - self.span_depth + 1 > MAX_DATA_DEPTH:
                self.spans.append((self.span_start, end))
            self.span_start = -1
        return True
