"""CentrifugoSocket: one WebSocket under a sans-I/O Centrifugo core (open, pump, write, shut).

The I/O pieces the order stream and ``cadenza-async doctor`` share, so that
both speak to a server the same way:

* **open** to exactly the given URL: a 3xx answer to the handshake is never
  followed (the connect frame carries the token), and a handshake that
  ended anywhere else is refused before anything is sent; no proxy unless
  one is given; compression off; websockets' own pings off (Centrifugo
  pings in its protocol); the websockets log scrubbed of the secrets in use
  (:class:`~cadenza_async._redact.RedactingLogger`);
* **pump**: every text frame into the core with the time it arrived, its
  events to the caller's handler, then whatever the core queued (pongs,
  commands the handler asked for) written out, frame after frame;
* **write** the core's frames from another task, and **shut** the socket.

websockets exceptions stop here: a failed open is :class:`OpenFailed`, a
connection that ended (on either side) is :class:`Closed`, a binary frame is
:class:`BinaryFrame`. What each means (reconnect, give up, report) is the
caller's to decide.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Final, Literal

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.protocol import State

from ._redact import RedactingLogger, SecretSource
from .protocol.centrifugo import CentrifugoProtocol, Event

__all__ = [
    "BinaryFrame",
    "CentrifugoSocket",
    "Closed",
    "FrameHandler",
    "NoRedirectConnect",
    "OpenFailed",
]

FrameHandler = Callable[[list[Event]], "bool | None"]
"""Called with the core's events of each frame; True stops the pump (after writing)."""

#: A close code the client sends when a message passes ``max_size`` (websockets' 1009).
CLOSE_MESSAGE_TOO_BIG: Final = 1009

OpenFailure = Literal["status", "redirected", "timeout", "transport", "handshake"]


class OpenFailed(Exception):
    """No connection was opened (nothing was sent).

    ``kind``: ``status`` (the handshake was answered HTTP ``status``; a 3xx
    is not followed), ``redirected`` (the handshake ended at another URI),
    ``timeout`` (no handshake in time), ``transport`` (refused, reset, DNS:
    ``strerror`` says which) or ``handshake`` (anything else the handshake
    refused). ``error_type`` names the underlying exception's type.
    """

    def __init__(
        self,
        kind: OpenFailure,
        *,
        status: int | None = None,
        error_type: str = "",
        strerror: str | None = None,
    ) -> None:
        super().__init__(kind if status is None else f"{kind} {status}")
        self.kind = kind
        self.status = status
        self.error_type = error_type
        self.strerror = strerror


class Closed(Exception):
    """The connection ended.

    ``sent_code``: the close code this side sent (1009: a message over
    ``max_size``), ``code`` and ``reason``: the peer's close frame's, when
    one came (``None``: the link was lost without one).
    """

    def __init__(self, *, sent_code: int | None, code: int | None, reason: str) -> None:
        super().__init__(reason or "connection closed")
        self.sent_code = sent_code
        self.code = code
        self.reason = reason

    @property
    def too_big(self) -> bool:
        """True when this side closed the connection on a message over ``max_size``."""
        return self.sent_code == CLOSE_MESSAGE_TOO_BIG


class BinaryFrame(Exception):
    """The peer sent a binary frame: the Centrifugo JSON protocol has none."""


def _closed(exc: ConnectionClosed) -> Closed:
    received = exc.rcvd
    return Closed(
        sent_code=exc.sent.code if exc.sent is not None else None,
        code=received.code if received is not None else None,
        reason=received.reason if received is not None else "",
    )


class NoRedirectConnect(connect):
    """websockets' ``connect`` that never follows a redirect.

    websockets follows a 3xx handshake answer to another host (it refuses
    only wss -> ws), and the connect frame that carries the token would go
    there. Here every 3xx surfaces as the ``InvalidStatus`` it is, and
    :meth:`CentrifugoSocket.open` also checks that the URI it ends up with is
    the one asked for before anything is sent.
    """

    def process_redirect(self, exc: Exception) -> Exception | str:
        return exc


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


class CentrifugoSocket:
    """One open WebSocket whose frames go through ``core``; made by :meth:`open`."""

    __slots__ = ("_core", "_ws")

    def __init__(self, ws: _LiveConnection, core: CentrifugoProtocol) -> None:
        self._ws = ws
        self._core = core

    @classmethod
    async def open(
        cls,
        url: str,
        core: CentrifugoProtocol,
        *,
        max_size: int,
        timeout: float,
        proxy: str | None,
        user_agent: str,
        secrets: SecretSource,
    ) -> CentrifugoSocket:
        """The handshake with exactly ``url``, within ``timeout``; raises :class:`OpenFailed`.

        ``secrets``: what the websockets log is scrubbed of (read at each
        record). ``proxy`` ``None``: no proxy, whatever the environment says.
        """
        connector = NoRedirectConnect(
            url,
            max_size=max_size,
            compression=None,
            open_timeout=timeout,
            ping_interval=None,  # Centrifugo pings in its own protocol
            close_timeout=min(2.0, timeout),
            user_agent_header=user_agent,
            logger=RedactingLogger(logging.getLogger("websockets.client"), secrets),
            create_connection=_LiveConnection,
            proxy=proxy,
        )
        try:
            ws = await connector
        except InvalidStatus as exc:
            raise OpenFailed("status", status=exc.response.status_code) from None
        except (asyncio.TimeoutError, TimeoutError) as exc:  # (before OSError: a subclass)
            raise OpenFailed("timeout", error_type=type(exc).__name__) from None
        except OSError as exc:
            raise OpenFailed(
                "transport", error_type=type(exc).__name__, strerror=exc.strerror
            ) from None
        except (WebSocketException, ValueError) as exc:
            raise OpenFailed("handshake", error_type=type(exc).__name__) from None
        if connector.uri != url:  # belt and braces, should websockets follow one after all
            ws.transport.abort()
            raise OpenFailed("redirected")
        assert isinstance(ws, _LiveConnection)
        return cls(ws, core)

    # ------------------------------------------------------------------ reading

    async def pump(self, handle: FrameHandler) -> None:
        """Read frames into the core until ``handle`` returns True or the connection ends.

        After each frame, what the core queued is written. Raises
        :class:`Closed` when the connection ends, :class:`BinaryFrame` for a
        binary frame, and whatever ``handle`` raises (the socket stays open
        then: shut it).
        """
        ws = self._ws
        core = self._core
        receive_frame = core.receive_frame
        data_to_send = core.data_to_send
        time = ws.loop.time
        try:
            while True:
                message = await ws.recv()
                if not isinstance(message, str):
                    raise BinaryFrame
                stop = handle(receive_frame(message, time()))
                frames = data_to_send()
                if frames:
                    for frame in frames:
                        await ws.send(frame)
                if stop:
                    return
        except ConnectionClosed as exc:
            raise _closed(exc) from None

    @property
    def last_data(self) -> float:
        """Event-loop time the socket last delivered any bytes (a whole frame or part of one)."""
        return self._ws.last_data

    @property
    def receiving(self) -> bool:
        """True while part of a frame has arrived and the rest has not yet."""
        return self._ws.receiving

    # ------------------------------------------------------------------ writing

    async def flush(self) -> None:
        """Write what the core queued; raises :class:`Closed` when the connection ended."""
        try:
            for frame in self._core.data_to_send():
                await self._ws.send(frame)
        except ConnectionClosed as exc:
            raise _closed(exc) from None

    async def send_frames(
        self,
        frames: Sequence[str],
        *,
        on_cut: Callable[[CentrifugoSocket, Sequence[str]], None],
    ) -> None:
        """Send ``frames`` in order from a task of the caller's; a loss is left to the reader.

        websockets writes a frame before it waits for the socket to drain,
        so a cancel that lands in that wait loses none of them: the frames
        after the one being written go to ``on_cut(self, rest)`` (to be sent
        from elsewhere) and the cancellation goes on.
        """
        sent = 0
        try:
            for frame in frames:
                await self._ws.send(frame)
                sent += 1
        except (ConnectionClosed, OSError):
            pass  # the reader sees the loss and fails what waits on a reply
        except asyncio.CancelledError:
            rest = frames[sent + 1 :]  # (frames[sent] was written; its drain was cut short)
            if rest:
                on_cut(self, rest)
            raise

    # ------------------------------------------------------------------ ending

    def abort(self) -> None:
        """Drop the connection at once (no close handshake)."""
        self._ws.transport.abort()

    async def close(self, timeout: float) -> None:
        """The close handshake, given up after ``timeout`` seconds; never raises."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._ws.close(), timeout)

    async def shut(self, timeout: float) -> None:
        """Abort the connection unless it is closed, and wait (``timeout`` at most) until it is."""
        ws = self._ws
        if ws.state is not State.CLOSED:
            ws.transport.abort()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.wait_closed(), timeout)
