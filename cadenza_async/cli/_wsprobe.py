"""One Centrifugo connection opened by hand for diagnosis: handshake, connect, subscribe, one RPC.

The order stream's own socket (:class:`~cadenza_async._wsio.CentrifugoSocket`:
the open that follows no redirect, the websockets log scrubbed of the token,
the frame pump) driven step by step, without the stream's reconnects and
fallbacks, so each step is seen and timed on its own: the handshake, the
connect reply (the server's ping interval), a subscribe reply (the channel's
recovery position) and an RPC reply. Pings are answered while a reply is
awaited. No proxy is used. Every failure is a :class:`WsProbeError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal, TypeVar

import msgspec

from .._wsio import BinaryFrame, CentrifugoSocket, Closed, OpenFailed
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
        self._socket: CentrifugoSocket | None = None

    async def __aenter__(self) -> CentrifugoProbe:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection (bounded by the close timeout); safe to call twice."""
        socket, self._socket = self._socket, None
        if socket is not None:
            await socket.close(self._timeout)

    async def open(self) -> float:
        """The WebSocket handshake (TCP, TLS, HTTP upgrade); its seconds."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            self._socket = await CentrifugoSocket.open(
                self._url,
                self._proto,
                max_size=self._max_size,
                timeout=self._timeout,
                proxy=None,
                user_agent="cadenza-async doctor",
                secrets=lambda: (self._token,),
            )
        except OpenFailed as failed:
            raise self._open_failed(failed) from None
        return loop.time() - started

    def _open_failed(self, failed: OpenFailed) -> WsProbeError:
        if failed.kind == "status":
            status = failed.status
            return WsProbeError(
                "handshake", f"the handshake was answered HTTP {status}", status=status
            )
        if failed.kind == "timeout":
            return WsProbeError("timeout", f"no handshake within {self._timeout:g} s")
        if failed.kind == "transport":
            return WsProbeError(
                "transport", f"cannot connect: {failed.strerror or failed.error_type}"
            )
        if failed.kind == "redirected":
            return WsProbeError(
                "handshake", "the handshake ended at another URI; redirects are not followed"
            )
        return WsProbeError("handshake", f"the handshake failed: {failed.error_type}")

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
        """Send what the protocol queued, then pump frames until the reply to ``cid`` (pongs go out meanwhile)."""
        socket = self._socket
        if socket is None:
            raise WsProbeError("transport", "not connected")
        loop = asyncio.get_running_loop()
        started = loop.time()
        found: list[_E] = []

        def on_frame(events: list[Event]) -> bool:
            for event in events:
                verdict = self._verdict(cid, event, match)
                if verdict is not None:
                    found.append(verdict)
                    return True
            return False

        async def exchange() -> None:
            await socket.flush()
            await socket.pump(on_frame)

        try:
            await asyncio.wait_for(exchange(), self._timeout)
        except (asyncio.TimeoutError, TimeoutError):
            raise WsProbeError("timeout", f"no reply within {self._timeout:g} s") from None
        except BinaryFrame:
            raise WsProbeError("protocol", "the server sent a binary frame") from None
        except Closed as closed:
            if closed.code is None:
                raise WsProbeError("closed", "the connection was lost") from None
            raise WsProbeError("closed", closed.reason or "closed", code=closed.code) from None
        return found[0], loop.time() - started

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
