"""One simulated Centrifugo WebSocket connection: commands in, replies and pushes out.

A connection owns one writer task (everything it sends goes through it, so
messages that are ready together leave in one newline-joined frame) and its
timers (ping, pong deadline, token expiry, delayed replies), all plain
``loop.call_later`` handles or :class:`~cadenza_async.testing._delays.Held`
callbacks it cancels when it ends. Every close, whatever asks for it, goes
through the writer: pending messages leave first, then the close frame with
its code. Everything outside the connection (tokens, channels, cancels, the
server's settings and faults) is reached through its :class:`ConnectionHost`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any, Final, NamedTuple, Protocol

import msgspec
from aiohttp import WSMsgType, web

from ._cancels import CancelDesk, CancelTicket
from ._delays import DelaySwitch, Held
from ._engine import CHANNEL_PREFIX, ApiFailure, Engine, TokenInfo
from ._hub import ChannelHub
from ._submits import SubmitDesk
from ._wire import Command, SubscribeRequest, decode_command, encode, error_reply, reply

__all__ = ["CANCEL_METHOD", "SUBMIT_METHOD", "Connection", "ConnectionHost", "Refusal"]

CANCEL_METHOD: Final = "command.trade_order.cancel"
SUBMIT_METHOD: Final = "command.trade_order.submit"
_FLAG_REJECT_UNRECOVERED: Final = 2
_PING: Final = b"{}"


class Refusal(NamedTuple):
    """An error reply a fault puts in place of a subscribe result."""

    code: int
    message: str
    temporary: bool


class ConnectionHost(Protocol):
    """What a connection uses outside itself; the simulator's WebSocket endpoint provides it."""

    engine: Engine  # tokens, and the cancel RPC
    hub: ChannelHub  # channels, subscribe and unsubscribe
    cancels: CancelDesk  # the cancel log, overlap per order, and the cancel reply delay
    submits: SubmitDesk  # the submit log and the submit reply delay
    subscribe_reply_delay: DelaySwitch
    ping_interval: float
    pong_timeout: float
    pinging: bool
    pings_sent: int
    pongs_received: int

    def take_subscribe_refusal(self, channel: str, recover: bool) -> Refusal | None:
        """The refusal for this subscribe command, if a fault asked for one (it is used up)."""

    def connection_closed(self, conn: Connection) -> None:
        """The connection ended: forget it and its subscriptions."""


class _Raw:
    """A frame sent as is (not joined with others), with a future set once it left."""

    __slots__ = ("data", "done")

    def __init__(self, data: str | bytes, done: asyncio.Future[None]) -> None:
        self.data = data
        self.done = done


class Connection:
    """A client connection to the simulated Centrifugo endpoint."""

    def __init__(
        self,
        host: ConnectionHost,
        ws: web.WebSocketResponse,
        transport: asyncio.BaseTransport | None = None,
    ) -> None:
        self._host = host
        self._ws = ws
        self._transport = transport  # (for the read-stall fault)
        self._loop = asyncio.get_running_loop()
        self._out: list[bytes | _Raw] = []
        self._wake = asyncio.Event()
        self._close_request: tuple[int, str] | None = None
        self.subscriptions: set[str] = set()
        self.token_info: TokenInfo | None = None
        self.client_id = ""
        self.connected = False
        self._pings: deque[float] = deque()
        self._ping_handle: asyncio.TimerHandle | None = None
        self._pong_handle: asyncio.TimerHandle | None = None
        self._expiry_handle: asyncio.TimerHandle | None = None
        self._held: set[Held] = set()
        self._tickets: set[CancelTicket] = set()
        self.closed = self._loop.create_future()

    # ---- sending ---------------------------------------------------------

    def send(self, message: bytes) -> None:
        """Queue one JSON message; it leaves with whatever else is ready."""
        if self._close_request is not None:
            return
        self._out.append(message)
        self._wake.set()

    def forget_subscription(self, channel: str) -> None:
        """The server dropped this connection's subscription to ``channel`` (an unsubscribe push)."""
        self.subscriptions.discard(channel)

    def send_raw(self, data: str | bytes) -> asyncio.Future[None]:
        done: asyncio.Future[None] = self._loop.create_future()
        if self._close_request is not None:
            done.set_result(None)
        else:
            self._out.append(_Raw(data, done))
            self._wake.set()
        return done

    def request_close(self, code: int, reason: str) -> None:
        """Close after what is queued has been sent. Only the first request counts."""
        if self._close_request is None:
            self._close_request = (code, reason)
            self._wake.set()

    async def _write_loop(self) -> None:
        ws = self._ws
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._out:
                    batch, self._out = self._out, []
                    await self._flush(batch)
                if self._close_request is not None and not self._out:
                    code, reason = self._close_request
                    await ws.close(code=code, message=reason.encode())
                    return
        except (ConnectionError, RuntimeError):
            # The peer went away mid-write: the reader sees the loss and ends the connection.
            return
        finally:
            for item in self._out:
                if isinstance(item, _Raw) and not item.done.done():
                    item.done.set_result(None)

    async def _flush(self, batch: list[bytes | _Raw]) -> None:
        ws = self._ws
        text: list[bytes] = []
        for item in batch:
            if isinstance(item, bytes):
                text.append(item)
                continue
            if text:
                await ws.send_frame(b"\n".join(text), WSMsgType.TEXT)
                text = []
            try:
                if isinstance(item.data, str):
                    await ws.send_frame(item.data.encode(), WSMsgType.TEXT)
                else:
                    await ws.send_frame(item.data, WSMsgType.BINARY)
            finally:
                if not item.done.done():
                    item.done.set_result(None)
        if text:
            await ws.send_frame(text[0] if len(text) == 1 else b"\n".join(text), WSMsgType.TEXT)

    def stall_reading(self, stalled: bool) -> None:
        """Stop (or resume) reading the client's frames: its socket fills up and its writes block."""
        transport = self._transport
        if isinstance(transport, asyncio.ReadTransport) and not transport.is_closing():
            if stalled:
                transport.pause_reading()
            else:
                transport.resume_reading()

    # ---- lifecycle -------------------------------------------------------

    async def serve(self) -> None:
        """Read commands until the connection closes, then clean up every timer and task."""
        writer = asyncio.ensure_future(self._write_loop())
        try:
            ws = self._ws
            while True:
                msg = await ws.receive()
                if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
                    if self._close_request is None:
                        data = msg.data
                        self._handle_frame(data if isinstance(data, bytes) else data.encode())
                elif msg.type in (
                    WSMsgType.CLOSE,
                    WSMsgType.CLOSING,
                    WSMsgType.CLOSED,
                    WSMsgType.ERROR,
                ):
                    break
        finally:
            self._stop_timers()
            self._host.connection_closed(self)
            if self._close_request is not None and not writer.done():
                # The writer is sending the close frame: let it finish (bounded).
                with contextlib.suppress(asyncio.TimeoutError, Exception):
                    await asyncio.wait_for(asyncio.shield(writer), 2.0)
            if not writer.done():
                writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            if not self._ws.closed:
                with contextlib.suppress(Exception):
                    await self._ws.close(code=1000)
            if not self.closed.done():
                self.closed.set_result(None)

    def _stop_timers(self) -> None:
        for handle in (self._ping_handle, self._pong_handle, self._expiry_handle):
            if handle is not None:
                handle.cancel()
        self._ping_handle = self._pong_handle = self._expiry_handle = None
        held, self._held = self._held, set()
        for item in held:
            item.cancel()
        tickets, self._tickets = self._tickets, set()
        for ticket in tickets:
            ticket.end()

    def _later(self, switch: DelaySwitch, callback: Callable[[], None]) -> None:
        """Run ``callback`` after ``switch``'s delay, unless the connection ends first."""

        def run() -> None:
            self._held.discard(item)
            callback()

        item = switch.hold(run)
        self._held.add(item)

    # ---- inbound ---------------------------------------------------------

    def _bad_request(self) -> None:
        self.request_close(3501, "bad request")

    def _handle_frame(self, data: bytes) -> None:
        if data.endswith(b"\n"):
            data = data[:-1]
        if not data.strip():
            self._bad_request()
            return
        for line in data.split(b"\n"):
            if not line.strip():
                self._bad_request()
                return
            try:
                command = decode_command(line)
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
                self._bad_request()
                return
            self._dispatch(command)
            if self._close_request is not None:
                return

    def _dispatch(self, cmd: Command) -> None:
        if cmd.id == 0:
            self._dispatch_without_id(cmd)
        elif cmd.connect is not None:
            if self.connected:
                self._bad_request()
            else:
                self._connect(cmd.id, cmd.connect.token)
        elif not self.connected:
            self._bad_request()
        else:
            self._dispatch_method(cmd)

    def _dispatch_without_id(self, cmd: Command) -> None:
        """A ``send`` is dropped, a pong answers the oldest ping; anything else closes 3501."""
        if cmd.send is not None:
            return
        if self._is_pong(cmd):
            self._pings.popleft()
            self._host.pongs_received += 1
            return
        self._bad_request()  # a pong nobody asked for, or a command without id

    def _is_pong(self, cmd: Command) -> bool:
        """No command in it, and a ping of ours waits for its pong."""
        commands = (
            cmd.connect,
            cmd.subscribe,
            cmd.unsubscribe,
            cmd.rpc,
            cmd.refresh,
            cmd.history,
            cmd.ping,
        )
        return all(command is None for command in commands) and self.connected and bool(self._pings)

    def _dispatch_method(self, cmd: Command) -> None:
        """A command with an id on a connected connection, answered by its method."""
        if cmd.subscribe is not None:
            self._subscribe(cmd)
        elif cmd.rpc is not None:
            self._rpc(cmd.id, cmd.rpc.method, cmd.rpc.data)
        elif cmd.unsubscribe is not None:
            self._unsubscribe(cmd.id, cmd.unsubscribe.channel)
        elif cmd.refresh is not None:
            self._refresh(cmd.id, cmd.refresh.token)
        elif cmd.history is not None:
            self._history(cmd)
        elif cmd.publish is not None:
            self.send(error_reply(cmd.id, 103, "permission denied"))
        elif cmd.presence is not None or cmd.presence_stats is not None:
            self.send(error_reply(cmd.id, 108, "not available"))
        elif cmd.sub_refresh is not None:
            self.send(reply(cmd.id, "sub_refresh", b"{}"))
        else:
            self._bad_request()  # the legacy ping command, or no method at all

    def _unsubscribe(self, command_id: int, channel: str) -> None:
        if channel in self.subscriptions:
            self.subscriptions.discard(channel)
            self._host.hub.unsubscribe(self, channel)
        self.send(reply(command_id, "unsubscribe", b"{}"))

    def _connect(self, command_id: int, token: str) -> None:
        info = self._host.engine.token_info(token)
        if info is None:
            self.request_close(3500, "invalid token")
            return
        if info.expired():
            self.send(error_reply(command_id, 109, "token expired"))
            return
        self.connected = True
        self.token_info = info
        self.client_id = str(uuid.uuid4())
        interval = self._host.ping_interval
        result: dict[str, Any] = {"client": self.client_id, "version": "cadenza-sim"}
        if interval > 0:
            result["ping"] = int(interval) if float(interval).is_integer() else interval
            result["pong"] = True
        ttl = info.ttl()
        if ttl is not None:
            result["expires"] = True
            result["ttl"] = ttl
            self._schedule_expiry(info)
        self.send(reply(command_id, "connect", encode(result)))
        if interval > 0:
            self._ping_handle = self._loop.call_later(
                random.uniform(interval / 2, interval), self._ping
            )

    def _schedule_expiry(self, info: TokenInfo) -> None:
        if self._expiry_handle is not None:
            self._expiry_handle.cancel()
            self._expiry_handle = None
        if info.expires_at is not None:
            delay = max(0.0, info.expires_at - time.time())
            self._expiry_handle = self._loop.call_later(delay, self._check_expiry)

    def _check_expiry(self) -> None:
        self._expiry_handle = None
        info = self.token_info
        if info is None or info.expires_at is None:
            return
        if info.expired():
            self.request_close(3005, "connection expired")
        else:
            self._schedule_expiry(info)

    def _refresh(self, command_id: int, token: str) -> None:
        info = self._host.engine.token_info(token)
        if info is None:
            self.request_close(3500, "invalid token")
            return
        if info.expired():
            self.send(error_reply(command_id, 109, "token expired"))
            return
        self.token_info = info
        ttl = info.ttl()
        result: dict[str, Any] = {}
        if ttl is not None:
            result = {"expires": True, "ttl": ttl}
        self._schedule_expiry(info)
        self.send(reply(command_id, "refresh", encode(result)))

    # ---- ping / pong -----------------------------------------------------

    def _ping(self) -> None:
        host = self._host
        self._ping_handle = self._loop.call_later(host.ping_interval, self._ping)
        if not host.pinging:
            return
        self.send(_PING)
        host.pings_sent += 1
        self._pings.append(time.monotonic())
        if self._pong_handle is None:
            self._pong_handle = self._loop.call_later(host.pong_timeout, self._check_pong)

    def _check_pong(self) -> None:
        self._pong_handle = None
        if not self._pings:
            return
        waited = time.monotonic() - self._pings[0]
        timeout = self._host.pong_timeout
        if waited >= timeout - 0.001:
            self.request_close(3012, "no pong")
        else:
            self._pong_handle = self._loop.call_later(timeout - waited, self._check_pong)

    # ---- subscriptions ---------------------------------------------------

    def _account_allowed(self, channel: str) -> int:
        """0 when this connection may use ``channel``, else the Centrifugo error code."""
        if not channel.startswith(CHANNEL_PREFIX):
            return 0 if channel in self._host.hub.named else 102
        info = self.token_info
        if info is None or channel[len(CHANNEL_PREFIX) :] not in info.accounts:
            return 103
        return 0

    def _subscribe(self, cmd: Command) -> None:
        req = cmd.subscribe
        assert req is not None
        host = self._host
        refusal = host.take_subscribe_refusal(req.channel, req.recover)
        if host.subscribe_reply_delay.active:
            # The server takes its time: the whole subscribe happens when the delay is over.
            self._later(
                host.subscribe_reply_delay, lambda: self._answer_subscribe(cmd.id, req, refusal)
            )
        else:
            self._answer_subscribe(cmd.id, req, refusal)

    def _answer_subscribe(
        self, command_id: int, req: SubscribeRequest, refusal: Refusal | None
    ) -> None:
        if refusal is not None:
            self.send(
                error_reply(command_id, refusal.code, refusal.message, temporary=refusal.temporary)
            )
            return
        channel_name = req.channel
        code = self._account_allowed(channel_name)
        if code:
            self.send(
                error_reply(
                    command_id, code, "unknown channel" if code == 102 else "permission denied"
                )
            )
            return
        if channel_name in self.subscriptions:
            self.send(error_reply(command_id, 105, "already subscribed"))
            return
        channel = self._host.hub.by_name(channel_name)
        assert channel is not None  # (allowed: an account's or a named one)
        result: dict[str, Any] = {}
        recoverable = req.recoverable or req.recover
        if recoverable:
            result["recoverable"] = True
        if req.positioned or recoverable:
            result["positioned"] = True
        publications: list[bytes] = []
        if req.recover:
            recovered = channel.recover(req.epoch, req.offset)
            result["was_recovering"] = True
            if recovered is None:
                if req.flag & _FLAG_REJECT_UNRECOVERED:
                    self.send(error_reply(command_id, 112, "unrecoverable position"))
                    return
            else:
                result["recovered"] = True
                publications = recovered
        result["epoch"] = channel.epoch
        if channel.offset:
            result["offset"] = channel.offset
        body = encode(result)
        if publications:
            body = body[:-1] + b',"publications":[' + b",".join(publications) + b"]}"
        self.subscriptions.add(channel_name)
        self._host.hub.subscribe(self, channel_name)
        self.send(reply(command_id, "subscribe", body))

    def _history(self, cmd: Command) -> None:
        req = cmd.history
        assert req is not None
        code = self._account_allowed(req.channel)
        if code:
            self.send(
                error_reply(cmd.id, code, "unknown channel" if code == 102 else "permission denied")
            )
            return
        channel = self._host.hub.by_name(req.channel)
        assert channel is not None  # (allowed: an account's or a named one)
        since = req.since
        if since is not None and since.epoch and since.epoch != channel.epoch:
            self.send(error_reply(cmd.id, 112, "unrecoverable position"))
            return
        pubs = channel.since(None, since.offset if since else 0, req.limit, req.reverse)
        if req.limit == 0:
            pubs = []
        body = encode({"epoch": channel.epoch, "offset": channel.offset})
        if pubs:
            body = body[:-1] + b',"publications":[' + b",".join(pubs) + b"]}"
        self.send(reply(cmd.id, "history", body))

    # ---- rpc -------------------------------------------------------------

    def _rpc(self, command_id: int, method: str, data: msgspec.Raw) -> None:
        if method == SUBMIT_METHOD:
            self._rpc_submit(command_id, data)
            return
        if method != CANCEL_METHOD:
            self.send(error_reply(command_id, 104, "method not found"))
            return
        try:
            params = msgspec.json.decode(data)
        except msgspec.DecodeError:
            params = None
        info = self.token_info
        assert info is not None
        if not isinstance(params, dict):
            params = {}
        order_id = params.get("tradeOrderId")
        cancels = self._host.cancels
        ticket = cancels.open(order_id)
        cancels.log(order_id, "ws")
        form = self._host.engine.form
        try:
            order = self._host.engine.cancel(info, order_id, params.get("tradingAccountId"))
        except ApiFailure as failure:
            payload = form.rpc_error(failure)
        else:
            payload = form.rpc_order(order)
        message = reply(command_id, "rpc", b'{"data":' + payload + b"}")
        if not cancels.reply_delay.active:
            self.send(message)
            ticket.end()
            return

        def answer() -> None:
            self._tickets.discard(ticket)
            self.send(message)
            ticket.end()

        # The cancel is applied; only its answer waits. A connection that ends
        # first drops the answer, and the request is no longer in flight.
        self._tickets.add(ticket)
        self._later(cancels.reply_delay, answer)

    def _rpc_submit(self, command_id: int, data: msgspec.Raw) -> None:
        """``command.trade_order.submit``: the REST submit as an RPC, params in the wire's form."""
        try:
            params = msgspec.json.decode(data)
        except msgspec.DecodeError:
            params = None
        info = self.token_info
        assert info is not None
        submits = self._host.submits
        engine = self._host.engine
        try:
            body = engine.form.submit_body(params)
            submits.log(body.get("clientOrderId"), "ws")
            payload = engine.form.rpc_order(engine.submit(info, body))
        except ApiFailure as failure:
            payload = engine.form.rpc_error(failure)
        message = reply(command_id, "rpc", b'{"data":' + payload + b"}")
        if not submits.reply_delay.active:
            self.send(message)
            return
        # Applied; only the answer waits. A connection that ends first drops it.
        self._later(submits.reply_delay, lambda: self.send(message))
