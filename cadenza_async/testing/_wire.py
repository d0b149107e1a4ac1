"""Inbound Centrifugo commands as msgspec Structs, and the simulator's wire byte helpers.

Inbound structs ignore unknown fields, as the real server does. Outbound
messages are built from pre-encoded fragments where they are on the hot path.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

__all__ = [
    "CLIENT_ERRORS",
    "TEMPORARY_ERRORS",
    "Command",
    "decode_command",
    "encode",
    "error_reply",
    "reply",
]


class ConnectRequest(msgspec.Struct, omit_defaults=True):
    token: str = ""
    name: str = ""
    version: str = ""


class SubscribeRequest(msgspec.Struct, omit_defaults=True):
    channel: str = ""
    recover: bool = False
    epoch: str = ""
    offset: int = 0
    recoverable: bool = False
    positioned: bool = False
    flag: int = 0


class UnsubscribeRequest(msgspec.Struct, omit_defaults=True):
    channel: str = ""


class StreamPosition(msgspec.Struct, omit_defaults=True):
    offset: int = 0
    epoch: str = ""


class HistoryRequest(msgspec.Struct, omit_defaults=True):
    channel: str = ""
    limit: int = 0
    since: StreamPosition | None = None
    reverse: bool = False


class RpcRequest(msgspec.Struct, omit_defaults=True):
    method: str = ""
    data: msgspec.Raw = msgspec.Raw(b"null")


class RefreshRequest(msgspec.Struct, omit_defaults=True):
    token: str = ""


class Command(msgspec.Struct, omit_defaults=True):
    """One client command; ``{}`` (every field empty) is a pong."""

    id: int = 0
    connect: ConnectRequest | None = None
    subscribe: SubscribeRequest | None = None
    unsubscribe: UnsubscribeRequest | None = None
    history: HistoryRequest | None = None
    rpc: RpcRequest | None = None
    refresh: RefreshRequest | None = None
    ping: msgspec.Raw | None = None
    publish: msgspec.Raw | None = None
    presence: msgspec.Raw | None = None
    presence_stats: msgspec.Raw | None = None
    send: msgspec.Raw | None = None
    sub_refresh: msgspec.Raw | None = None


#: Centrifugo's client error codes and their texts, as the real server sends them.
CLIENT_ERRORS: Final[dict[int, str]] = {
    100: "internal server error",
    101: "unauthorized",
    102: "unknown channel",
    103: "permission denied",
    104: "method not found",
    105: "already subscribed",
    106: "limit exceeded",
    107: "bad request",
    108: "not available",
    109: "token expired",
    110: "expired",
    111: "too many requests",
    112: "unrecoverable position",
}
#: Codes the real server marks ``temporary`` (the client retries with backoff).
TEMPORARY_ERRORS: Final = frozenset({100, 111})

_command_decoder: Final = msgspec.json.Decoder(Command)
encode: Final = msgspec.json.Encoder().encode


def decode_command(line: bytes) -> Command:
    """Decode one command; raises ``msgspec.DecodeError``/``ValidationError`` on a bad one."""
    return _command_decoder.decode(line)


def reply(command_id: int, method: str, result: bytes) -> bytes:
    """``{"id": N, "<method>": <result>}`` with ``result`` already encoded."""
    return b'{"id":' + str(command_id).encode() + b',"' + method.encode() + b'":' + result + b"}"


def error_reply(command_id: int, code: int, message: str, *, temporary: bool = False) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message}
    if temporary:
        error["temporary"] = True
    return encode({"id": command_id, "error": error})
