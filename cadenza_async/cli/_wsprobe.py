"""One Centrifugo connection opened by hand for diagnosis: handshake, connect, subscribe, one RPC.

A thin loop around the SDK's sans-I/O :class:`CentrifugoProtocol`, without
the order stream's reconnects and fallbacks, so each step is seen and timed
on its own: the handshake, the connect reply (the server's ping interval),
a subscribe reply (the channel's recovery position) and an RPC reply.
Pings are answered while a reply is awaited. As in the SDK's stream, no
redirect is followed (the token travels in the connect frame), no proxy is
used, and the websockets log is scrubbed of the token. Every failure is a
:class:`WsProbeError`; websockets exceptions stop here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Literal, TypeVar

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from .._redact import RedactingLogger
from ..protocol.centrifugo import (
    CentrifugoProtocol,
    Connected,
    Disconnected,
    Event,
    ProtocolViolation,
    Reply,
    ReplyError,
    StreamPosition,
    Subscribed,
)

__all__ = ["CentrifugoProbe", "RpcAnswer", "RpcErrorBody", "WsProbeError", "decode_rpc_answer"]

Failure = Literal["handshake", "transport", "timeout", "closed", "reply", "protocol"]
_E = TypeVar("_E", bound=Event)


class WsProbeError(Exception):
    """A step of the probe failed.

    ``kind``: ``handshake`` (HTTP ``status`` answered instead of the
    upgrade), ``transport`` (no connection), ``timeout``, ``closed`` (by
    the server: close ``code`` and the reason as ``message``), ``reply``
    (an error reply: ``code``, ``message``, ``temporary``) or ``protocol``
    (something the SDK's protocol core refuses).
    """

    def __init__(
        self,
        kind: Failure,
        message: str,
        *,
        code: int | None = None,
        status: int | None = None,
        temporary: bool = False,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.code = code
        self.status = status
        self.temporary = temporary


class RpcErrorBody(msgspec.Struct, omit_defaults=True):
    code: int = 0
    message: str = ""
    temporary: bool = False
    status: int = 0


class RpcAnswer(msgspec.Struct, omit_defaults=True):
    """What an RPC reply's data holds: the method's ``data``, or its ``error``."""

    data: msgspec.Raw | None = None
    error: RpcErrorBody | None = None


_rpc_answer = msgspec.json.Decoder(RpcAnswer)


def decode_rpc_answer(raw: msgspec.Raw) -> RpcAnswer:
    """Raises WsProbeError (``protocol``) for a reply that is not an object of that shape."""
    try:
        return _rpc_answer.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise WsProbeError("protocol", "the RPC reply is not the expected JSON object") from None


class _NoRedirectConnect(connect):
    """websockets' ``connect`` that surfaces a 3xx as the ``InvalidStatus`` it is."""

    def process_redirect(self, exc: Exception) -> Exception | str:
        return exc


class CentrifugoProbe:
    """A hand-driven Centrifugo connection; use ``async with``, then the steps in order.

    Each step waits at most ``timeout`` seconds and returns its result with
    the seconds it took.
    """

    def __init__(self, url: str, token: str, *, timeout: float, max_size: int) -> None:
        self._url = url
        self._token = token
        self._timeout = timeout
        self._max_size = max_size
        self._proto = CentrifugoProtocol(command_timeout=timeout)
        self._ws: ClientConnection | None = None

    async def __aenter__(self) -> CentrifugoProbe:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection (bounded by the close timeout); safe to call twice."""
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()

    async def open(self) -> float:
        """The WebSocket handshake (TCP, TLS, HTTP upgrade); its seconds."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        connector = _NoRedirectConnect(
            self._url,
            max_size=self._max_size,
            compression=None,
            open_timeout=self._timeout,
            ping_interval=None,  # Centrifugo pings in its own protocol
            close_timeout=min(2.0, self._timeout),
            user_agent_header="cadenza-async doctor",
            logger=RedactingLogger(logging.getLogger("websockets.client"), lambda: (self._token,)),
            proxy=None,
        )
        try:
            ws = await connector
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise WsProbeError(
                "handshake", f"the handshake was answered HTTP {status}", status=status
            ) from None
        except (asyncio.TimeoutError, TimeoutError):
            raise WsProbeError("timeout", f"no handshake within {self._timeout:g} s") from None
        except OSError as exc:
            raise WsProbeError(
                "transport", f"cannot connect: {exc.strerror or type(exc).__name__}"
            ) from None
        except (WebSocketException, ValueError) as exc:
            raise WsProbeError("handshake", f"the handshake failed: {type(exc).__name__}") from None
        self._ws = ws
        return loop.time() - started

    async def connect(self, version: str) -> tuple[Connected, float]:
        """The connect command with the token: the server's answer (ping interval, ttl) and its seconds."""
        now = asyncio.get_running_loop().time()
        cid = self._proto.send_connect(self._token, now, name="cadenza-async", version=version)
        return await self._reply(cid, lambda e: e if isinstance(e, Connected) else None)

    async def subscribe(self, channel: str) -> tuple[Subscribed, float]:
        """Subscribe ``channel`` (no recovery asked): its position and the seconds it took."""
        now = asyncio.get_running_loop().time()
        cid = self._proto.send_subscribe(channel, now, recover=False)
        return await self._reply(
            cid, lambda e: e if isinstance(e, Subscribed) and e.command_id == cid else None
        )

    async def last_publication(self, sub: Subscribed) -> msgspec.Raw | None:
        """The channel's last publication, replayed by recovering from the one before it.

        ``sub`` is the channel's subscription (no recovery asked). The channel is
        subscribed again, asking to recover from the offset before its last one;
        None when the channel has no publication, or the server keeps no history
        to replay (the subscription stays usable either way).
        """
        if sub.offset < 1 or not sub.epoch:
            return None
        loop = asyncio.get_running_loop()
        self._proto.send_unsubscribe(sub.channel, loop.time())
        position = StreamPosition(sub.epoch, sub.offset - 1)
        cid = self._proto.send_subscribe(sub.channel, loop.time(), recover_from=position)
        again, _ = await self._reply(
            cid, lambda e: e if isinstance(e, Subscribed) and e.command_id == cid else None
        )
        return again.publications[-1].data if again.publications else None

    async def rpc(self, method: str, data: bytes) -> tuple[msgspec.Raw, float]:
        """One RPC: the reply's data and the seconds it took (an error reply raises)."""
        now = asyncio.get_running_loop().time()
        cid = self._proto.send_rpc(method, data, now)
        reply, elapsed = await self._reply(
            cid, lambda e: e if isinstance(e, Reply) and e.command_id == cid else None
        )
        return reply.data, elapsed

    async def _reply(self, cid: int, match: Callable[[Event], _E | None]) -> tuple[_E, float]:
        """Send what the protocol queued, then read until the reply to ``cid`` (pongs go out meanwhile)."""
        ws = self._ws
        if ws is None:
            raise WsProbeError("transport", "not connected")
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self._timeout
        try:
            await self._flush(ws)
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise asyncio.TimeoutError
                message = await asyncio.wait_for(ws.recv(), remaining)
                if not isinstance(message, str):
                    raise WsProbeError("protocol", "the server sent a binary frame")
                events = self._proto.receive_frame(message, loop.time())
                await self._flush(ws)  # pongs
                for event in events:
                    found = self._verdict(cid, event, match)
                    if found is not None:
                        return found, loop.time() - started
        except (asyncio.TimeoutError, TimeoutError):
            raise WsProbeError("timeout", f"no reply within {self._timeout:g} s") from None
        except ConnectionClosed as exc:
            received = exc.rcvd
            if received is None:
                raise WsProbeError("closed", "the connection was lost") from None
            raise WsProbeError("closed", received.reason or "closed", code=received.code) from None

    async def _flush(self, ws: ClientConnection) -> None:
        for frame in self._proto.data_to_send():
            await ws.send(frame)

    @staticmethod
    def _verdict(cid: int, event: Event, match: Callable[[Event], _E | None]) -> _E | None:
        """The awaited reply, None for anything else; raises for an error reply or the connection's end."""
        if isinstance(event, ProtocolViolation):
            raise WsProbeError("protocol", event.reason)
        if isinstance(event, ReplyError) and event.command_id == cid:
            raise WsProbeError("reply", event.message, code=event.code, temporary=event.temporary)
        if isinstance(event, Disconnected):
            raise WsProbeError("closed", event.reason or "disconnected", code=event.code)
        return match(event)
