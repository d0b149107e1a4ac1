"""CadenzaSimulator: a local Cadenza exchange speaking the real REST and Centrifugo protocols.

::

    async with CadenzaSimulator(cancel_delay=0.05) as sim:
        order = sim.create_order()
        # point a client at sim.api_url / sim.ws_url with sim.token
        await sim.wait_for(lambda: sim.get_order(order.trade_order_id).status == "CANCELLED")

REST (bearer auth, the seed's envelope and error table):
``POST /api/v3/tradeOrder/cancel``, ``GET /api/v3/tradeOrder/list``,
``POST /api/v3/tradeOrder/submit``. WebSocket: ``/connection/websocket``
(Centrifugo JSON protocol: connect, subscribe with history recovery,
unsubscribe, history, rpc ``command.trade_order.cancel``, refresh, server
ping/pong). Every change of an order publishes one
``event.trade_order.updated`` on ``tradingAccount:{account id}``.

Faults are methods (:meth:`disconnect_all`, :meth:`lose_history`,
:meth:`pause_publications`, :meth:`duplicate_next_publications`,
:meth:`delay_publications`, :meth:`reorder_next_publications`,
:meth:`stop_pinging`, :meth:`send_raw`, :meth:`fail_next_rest`,
:meth:`rate_limit_next_rest`, :meth:`slow_rest`, :meth:`restart`).

Everything the simulator starts (connection handlers, writer tasks, timers)
is stopped and awaited when the ``async with`` block ends.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from ..models import TradeOrder
from ._engine import (
    CHANNEL_PREFIX,
    ERRNO_FORBIDDEN,
    ERRNO_INVALID_REQUEST,
    ERRNO_RATE_LIMITED,
    ERRNO_SERVER_ERROR,
    ERRNO_UNAUTHORIZED,
    ApiFailure,
    Channel,
    Engine,
    TokenInfo,
    is_valid_id,
)
from ._ws import Connection

__all__ = ["CadenzaSimulator"]

T = TypeVar("T")

_encode = msgspec.json.Encoder().encode
_OK_TAIL = b',"success":true,"errno":0,"error":null}'
_REASONS = {
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}
MAX_LIST_LIMIT = 1000


def _error_body(errno: int, message: str) -> bytes:
    return _encode({"data": None, "success": False, "errno": errno, "error": message})


def _json(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=body, status=status, headers=headers, content_type="application/json")


def _failure(failure: ApiFailure) -> web.Response:
    return _json(_error_body(failure.errno, failure.message), failure.status)


def _copy(order: TradeOrder) -> TradeOrder:
    return msgspec.structs.replace(order)


class CadenzaSimulator:
    """A simulated Cadenza exchange on loopback; use it as ``async with CadenzaSimulator() as sim``.

    ``token`` (default: a random ``sim-...`` token) owns ``trading_account_id``
    (default: a random uuid4). ``cancel_delay`` 0 processes a cancel at once
    (the HTTP answer already says CANCELLED); > 0 answers PENDING_CANCEL and
    publishes CANCELLED after the delay. ``event_shape`` is ``"order"``
    (``data`` is the TradeOrder) or ``"status_change"`` (``{"order",
    "previousStatus", "newStatus"}``). The token is never shown by ``repr``.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        trading_account_id: str | None = None,
        cancel_delay: float = 0.0,
        ping_interval: float = 25.0,
        pong_timeout: float = 8.0,
        history_size: int = 300,
        history_ttl: float | None = None,
        event_shape: str = "order",
        max_message_size: int = 65536,
    ) -> None:
        self.host = host
        self.port = port
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.history_size = history_size
        self.history_ttl = history_ttl
        self.max_message_size = max_message_size
        self._engine = Engine(
            publish=self._publish,
            call_later=self._call_later,
            cancel_delay=cancel_delay,
            event_shape=event_shape,
        )
        self._account = self._engine.add_account(trading_account_id)
        self._token = self._engine.issue_token([self._account], token=token)
        self._channels: dict[str, Channel] = {}
        self._subscribers: dict[str, set[Connection]] = {}
        self._conns: set[Connection] = set()
        self._connect_count = 0
        self._runner: web.AppRunner | None = None
        self._stopping = False
        self._api_url = ""
        self._ws_url = ""
        # what was received: cancel_requests lists the cancels that reached the
        # order engine (past REST faults and auth), rest_requests every REST call.
        self.cancel_requests: list[tuple[Any, str]] = []
        self.rest_requests: list[tuple[str, str, Any]] = []
        self.pings_sent = 0
        self.pongs_received = 0
        # faults
        self._pinging = True
        self._paused = False
        self._duplicate_left = 0
        self._reorder_size = 0
        self._held: list[tuple[str, bytes]] = []
        self._publication_delay = 0.0
        self._delayed: dict[int, asyncio.TimerHandle] = {}
        self._delayed_seq = 0
        self._rest_faults: deque[tuple[str, float]] = deque()
        self._rest_delay = 0.0

    def __repr__(self) -> str:
        where = self._api_url or "not started"
        return f"<CadenzaSimulator {where} account={self._account} connections={len(self._conns)}>"

    # ---- lifecycle -------------------------------------------------------

    async def __aenter__(self) -> CadenzaSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Bind and serve. Raises ``OSError`` when the port is taken; a stopped simulator can't restart."""
        if self._runner is not None or self._stopping:
            raise RuntimeError("a simulator starts once")
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_post("/api/v3/tradeOrder/cancel", self._rest_cancel)
        app.router.add_get("/api/v3/tradeOrder/list", self._rest_list)
        app.router.add_post("/api/v3/tradeOrder/submit", self._rest_submit)
        app.router.add_get("/connection/websocket", self._ws_handler)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        self._runner = runner
        try:
            site = web.TCPSite(runner, self.host, self.port, backlog=1024)
            await site.start()
        except BaseException:
            self._runner = None
            await runner.cleanup()
            raise
        address = runner.addresses[0]
        host, port = address[0], address[1]
        self.port = port
        shown = f"[{host}]" if ":" in host else host
        self._api_url = f"http://{shown}:{port}"
        self._ws_url = f"ws://{shown}:{port}/connection/websocket"

    async def stop(self) -> None:
        """Close every connection (3001), cancel every timer, stop serving. Safe to call twice."""
        if self._stopping:
            return
        self._stopping = True
        self._engine.close()
        self._drop_in_flight_publications()
        await self._close_connections(3001, "shutdown")
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _close_connections(self, code: int, reason: str) -> None:
        conns = list(self._conns)
        for conn in conns:
            conn.request_close(code, reason)
        if conns:
            await asyncio.wait([conn.closed for conn in conns], timeout=5.0)

    # ---- public state ----------------------------------------------------

    @property
    def api_url(self) -> str:
        """``http://127.0.0.1:PORT`` once started."""
        return self._api_url

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:PORT/connection/websocket`` once started."""
        return self._ws_url

    @property
    def token(self) -> str:
        """The default token (owns :attr:`trading_account_id`)."""
        return self._token

    @property
    def trading_account_id(self) -> str:
        return self._account

    @property
    def cancel_delay(self) -> float:
        return self._engine.cancel_delay

    @cancel_delay.setter
    def cancel_delay(self, value: float) -> None:
        self._engine.cancel_delay = value

    @property
    def connections(self) -> int:
        """Live WebSocket connections."""
        return len(self._conns)

    @property
    def connect_count(self) -> int:
        """WebSocket connections accepted so far."""
        return self._connect_count

    @property
    def cancels_applied(self) -> Counter[str]:
        """Order id -> cancels that changed the order (accepted while it was open)."""
        return Counter(self._engine.cancels_applied)

    @property
    def pending_cancels(self) -> int:
        """Cancels waiting for the exchange delay."""
        return self._engine.pending_cancels

    @property
    def orders(self) -> list[TradeOrder]:
        """Copies of every order, in creation order."""
        return [_copy(order) for order in self._engine.orders.values()]

    def channel_position(self, account_id: str | None = None) -> tuple[str, int]:
        """(epoch, top offset) of an account's channel."""
        channel = self._channel(account_id or self._account)
        return channel.epoch, channel.offset

    # ---- accounts, tokens, orders -----------------------------------------

    def add_account(self, account_id: str | None = None, token: str | None = None) -> str:
        """Create an account owned by ``token`` (default: :attr:`token`); return its id."""
        account = self._engine.add_account(account_id)
        info = self._engine.token_info(token or self._token)
        if info is None:
            raise KeyError("unknown token")
        info.accounts.add(account)
        return account

    def issue_token(self, accounts: Iterable[str] | None = None, ttl: float | None = None) -> str:
        """A new token owning ``accounts`` (default: the default account), expiring after ``ttl`` s.

        An expired token: REST answers 401, connect answers error 109, and a
        live connection is closed with 3005 unless it sent ``refresh`` in time.
        """
        return self._engine.issue_token([self._account] if accounts is None else accounts, ttl)

    def expire_token(self, token: str) -> None:
        """Make ``token`` expired now (live connections using it close with 3005)."""
        info = self._engine.token_info(token)
        if info is None:
            raise KeyError("unknown token")
        info.expires_at = time.time()
        for conn in list(self._conns):
            if conn.token_info is info:
                conn.request_close(3005, "connection expired")

    def create_order(
        self,
        account_id: str | None = None,
        status: str = "OPEN",
        quantity: str = "1",
        executed_quantity: str = "0",
        *,
        publish: bool = False,
        **fields: Any,
    ) -> TradeOrder:
        """Create an order (any account, status, quantities); ``fields`` are TradeOrder fields.

        Publishes an event only with ``publish=True``. Raises ValueError on a
        duplicate or invalid id.
        """
        order = self._engine.create_order(
            account_id or self._account,
            status,
            quantity,
            executed_quantity,
            dict(fields),
            publish=publish,
        )
        return _copy(order)

    def create_orders(self, n: int, **kwargs: Any) -> list[TradeOrder]:
        """``n`` orders made by :meth:`create_order` with the same arguments."""
        return [self.create_order(**kwargs) for _ in range(n)]

    def get_order(self, order_id: str) -> TradeOrder | None:
        """A copy of the order as the exchange has it now, or None."""
        order = self._engine.get(order_id)
        return None if order is None else _copy(order)

    def fill(self, order_id: str, quantity: str | Decimal | None = None) -> TradeOrder:
        """Fill the order (all that is left, or ``quantity``) and publish the update.

        A full fill during a pending cancel wins: the order ends FILLED and the
        cancel is dropped. Raises KeyError (unknown) or ValueError (final order, too much).
        """
        return _copy(self._engine.fill(order_id, quantity))

    def set_status(self, order_id: str, status: str, publish: bool = True) -> TradeOrder:
        """Force a status (publishes the update unless ``publish=False``)."""
        return _copy(self._engine.set_status(order_id, status, publish=publish))

    def fill_on_next_cancel(self, order_id: str) -> None:
        """The next cancel of this order races a fill: the fill lands first, the cancel answers 400."""
        self._engine.fill_on_next_cancel(order_id)

    def publish_raw_order_update(
        self, account_id: str | None, payload: dict[str, Any] | bytes
    ) -> int:
        """Publish ``payload`` (any JSON value, or raw bytes: even malformed) on the account channel.

        Returns its offset. Raw bytes are put in ``pub.data`` as they are.
        """
        data = payload if isinstance(payload, bytes) else _encode(payload)
        return self._publish(account_id or self._account, data)

    async def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0) -> T:
        """Poll ``predicate`` until it is truthy and return its value.

        Raises the builtin ``TimeoutError`` after ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if loop.time() >= deadline:
                raise TimeoutError(f"condition not met within {timeout:g}s")
            await asyncio.sleep(0.002)

    # ---- channels and publications -----------------------------------------

    def _call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(delay, callback)

    def _channel(self, account_id: str) -> Channel:
        channel = self._channels.get(account_id)
        if channel is None:
            channel = Channel(CHANNEL_PREFIX + account_id, self.history_size, self.history_ttl)
            self._channels[account_id] = channel
        return channel

    def _subscribe(self, conn: Connection, channel: str) -> None:
        self._subscribers.setdefault(channel, set()).add(conn)

    def _unsubscribe(self, conn: Connection, channel: str) -> None:
        subs = self._subscribers.get(channel)
        if subs is not None:
            subs.discard(conn)

    def _connection_gone(self, conn: Connection) -> None:
        self._conns.discard(conn)
        for channel in conn.subscriptions:
            self._unsubscribe(conn, channel)

    def _publish(self, account_id: str, data: bytes) -> int:
        channel = self._channel(account_id)
        offset, pub = channel.add(data)
        frame = channel.push_prefix + pub + b"}}"
        if self._paused:
            return offset
        if self._duplicate_left > 0:
            self._duplicate_left -= 1
            self._deliver(channel.name, frame)
        self._deliver(channel.name, frame)
        return offset

    def _deliver(self, name: str, frame: bytes) -> None:
        if self._reorder_size > 0:
            self._held.append((name, frame))
            if len(self._held) >= self._reorder_size:
                held, self._held = self._held, []
                self._reorder_size = 0
                for item in reversed(held):
                    self._deliver(*item)
            return
        if self._publication_delay > 0:
            self._delayed_seq += 1
            key = self._delayed_seq
            self._delayed[key] = asyncio.get_running_loop().call_later(
                self._publication_delay, self._deliver_delayed, key, name, frame
            )
            return
        self._deliver_now(name, frame)

    def _deliver_delayed(self, key: int, name: str, frame: bytes) -> None:
        self._delayed.pop(key, None)
        self._deliver_now(name, frame)

    def _deliver_now(self, name: str, frame: bytes) -> None:
        subs = self._subscribers.get(name)
        if subs:
            for conn in subs:
                conn.send(frame)

    def _drop_in_flight_publications(self) -> None:
        for handle in self._delayed.values():
            handle.cancel()
        self._delayed.clear()
        self._held = []

    # ---- faults ----------------------------------------------------------

    async def disconnect_all(self, code: int = 3001, reason: str = "shutdown") -> None:
        """Close every WebSocket connection with ``code``; returns once they are closed."""
        await self._close_connections(code, reason)

    def lose_history(self, account_id: str | None = None) -> None:
        """New epoch and empty history (one account, or all): the next recovery fails.

        Connections stay up; publications after this start again at offset 1
        under the new epoch. Combine with :meth:`disconnect_all` to make
        clients resubscribe and see ``recovered`` false.
        """
        if account_id is not None:
            self._channel(account_id).reset()
            return
        self._channel(self._account)
        for channel in self._channels.values():
            channel.reset()

    def pause_publications(self) -> None:
        """Record publications in history but deliver none live (a connected but mute server)."""
        self._paused = True

    def resume_publications(self) -> None:
        """Deliver live again; what was missed is only in history (recovery, or REST)."""
        self._paused = False

    def duplicate_next_publications(self, n: int) -> None:
        """Deliver each of the next ``n`` publications twice (same offset)."""
        self._duplicate_left = n

    def delay_publications(self, seconds: float) -> None:
        """Deliver publications ``seconds`` late (0 turns the delay off); order is kept."""
        self._publication_delay = seconds

    def reorder_next_publications(self, n: int) -> None:
        """Hold the next ``n`` publications, then deliver them in reverse order."""
        self._reorder_size = n
        self._held = []

    def stop_pinging(self) -> None:
        """Stop sending pings (the TCP connection stays healthy)."""
        self._pinging = False

    def resume_pinging(self) -> None:
        self._pinging = True

    async def send_raw(self, frame: str | bytes) -> None:
        """Send ``frame`` as is to every connection (str: text frame, bytes: binary frame)."""
        futures = [conn.send_raw(frame) for conn in list(self._conns)]
        if futures:
            await asyncio.wait(futures, timeout=5.0)

    def fail_next_rest(self, n: int = 1, status: int = 503) -> None:
        """Answer the next ``n`` REST calls with ``status`` (5xx) and an error envelope."""
        self._rest_faults.extend([("fail", float(status))] * n)

    def rate_limit_next_rest(self, n: int = 1, retry_after: float = 1.0) -> None:
        """Answer the next ``n`` REST calls with 429 and ``Retry-After: retry_after``."""
        self._rest_faults.extend([("rate", retry_after)] * n)

    def slow_rest(self, seconds: float) -> None:
        """Delay every REST answer by ``seconds`` (0 turns it off)."""
        self._rest_delay = seconds

    async def restart(self) -> None:
        """Drop every connection (3001) and start a new epoch on every channel; orders are kept."""
        self._drop_in_flight_publications()
        self._channel(self._account)
        for channel in self._channels.values():
            channel.reset()
        await self._close_connections(3001, "shutdown")

    # ---- REST ------------------------------------------------------------

    async def _prelude(
        self, request: web.Request
    ) -> tuple[TokenInfo | None, Any, web.Response | None]:
        """Record the request, apply REST faults and auth. Returns (token, body, early answer)."""
        body: Any = None
        if request.method == "POST":
            raw = await request.read()
            try:
                body = msgspec.json.decode(raw)
            except msgspec.DecodeError:
                body = raw
            self.rest_requests.append((request.method, request.path, body))
        else:
            self.rest_requests.append((request.method, request.path, dict(request.query)))
        if self._rest_delay > 0:
            await asyncio.sleep(self._rest_delay)
        if self._rest_faults:
            kind, value = self._rest_faults.popleft()
            if kind == "rate":
                headers = {"Retry-After": f"{value:g}"}
                return (
                    None,
                    body,
                    _json(_error_body(ERRNO_RATE_LIMITED, "Too many requests"), 429, headers),
                )
            status = int(value)
            return (
                None,
                body,
                _json(
                    _error_body(ERRNO_SERVER_ERROR, _REASONS.get(status, "Server error")), status
                ),
            )
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return (
                None,
                body,
                _json(_error_body(ERRNO_UNAUTHORIZED, "Unauthorized: missing bearer token"), 401),
            )
        info = self._engine.token_info(token.strip())
        if info is None:
            return (
                None,
                body,
                _json(_error_body(ERRNO_UNAUTHORIZED, "Unauthorized: invalid token"), 401),
            )
        if info.expired():
            return (
                None,
                body,
                _json(_error_body(ERRNO_UNAUTHORIZED, "Unauthorized: token expired"), 401),
            )
        return info, body, None

    async def _rest_cancel(self, request: web.Request) -> web.Response:
        info, body, early = await self._prelude(request)
        if early is not None:
            return early
        assert info is not None
        if not isinstance(body, dict):
            self.cancel_requests.append((None, "http"))
            return _json(
                _error_body(ERRNO_INVALID_REQUEST, "Invalid request: body must be a JSON object"),
                400,
            )
        order_id = body.get("tradeOrderId")
        self.cancel_requests.append((order_id, "http"))
        try:
            order = self._engine.cancel(info, order_id, body.get("tradingAccountId"))
        except ApiFailure as failure:
            return _failure(failure)
        return _json(b'{"data":' + _encode(order) + _OK_TAIL)

    async def _rest_submit(self, request: web.Request) -> web.Response:
        info, body, early = await self._prelude(request)
        if early is not None:
            return early
        assert info is not None
        if not isinstance(body, dict):
            return _json(
                _error_body(ERRNO_INVALID_REQUEST, "Invalid request: body must be a JSON object"),
                400,
            )
        try:
            order = self._engine.submit(info, body)
        except ApiFailure as failure:
            return _failure(failure)
        return _json(b'{"data":' + _encode(order) + _OK_TAIL)

    async def _rest_list(self, request: web.Request) -> web.Response:
        info, _, early = await self._prelude(request)
        if early is not None:
            return early
        assert info is not None
        try:
            return self._list(info, request.query)
        except ApiFailure as failure:
            return _failure(failure)

    def _list(self, info: TokenInfo, query: Any) -> web.Response:
        def integer(name: str, default: int, low: int, high: int) -> int:
            text = query.get(name)
            if text is None or text == "":
                return default
            try:
                value = int(text)
            except ValueError:
                raise ApiFailure(
                    400, ERRNO_INVALID_REQUEST, f"Invalid request: {name} must be an integer"
                ) from None
            if not low <= value <= high:
                raise ApiFailure(
                    400, ERRNO_INVALID_REQUEST, f"Invalid request: {name} out of range"
                )
            return value

        limit = integer("limit", 50, 1, MAX_LIST_LIMIT)
        offset = integer("offset", 0, 0, 10**9)
        order_id = query.get("tradeOrderId")
        account = query.get("tradingAccountId")
        statuses = query.get("orderStatus")
        instrument = query.get("instrumentId")
        if order_id is not None and not is_valid_id(order_id):
            raise ApiFailure(400, ERRNO_INVALID_REQUEST, "Invalid request: malformed tradeOrderId")
        if account is not None:
            if not is_valid_id(account):
                raise ApiFailure(
                    400, ERRNO_INVALID_REQUEST, "Invalid request: malformed tradingAccountId"
                )
            if account not in info.accounts:
                raise ApiFailure(
                    403, ERRNO_FORBIDDEN, "Forbidden: no access to this trading account"
                )
        if order_id is not None:
            found = self._engine.get(order_id)
            if found is not None and found.trading_account_id not in info.accounts:
                raise ApiFailure(403, ERRNO_FORBIDDEN, "Forbidden: no access to this order")
            candidates: Iterable[TradeOrder] = [found] if found is not None else []
        else:
            candidates = self._engine.orders.values()
        wanted = set(statuses.split(",")) if statuses else None
        matches = [
            order
            for order in candidates
            if order.trading_account_id in info.accounts
            and (account is None or order.trading_account_id == account)
            and (wanted is None or order.status in wanted)
            and (instrument is None or order.instrument_id == instrument)
        ]
        if query.get("ascending", "").lower() == "false":
            matches.reverse()
        page = matches[offset : offset + limit]
        total = len(matches)
        pagination = _encode(
            {
                "offset": offset,
                "limit": limit,
                "total": total,
                "hasNext": offset + len(page) < total,
            }
        )
        body = b'{"data":' + _encode(page) + b',"pagination":' + pagination + _OK_TAIL
        return _json(body)

    # ---- WebSocket -------------------------------------------------------

    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(
            max_msg_size=self.max_message_size,
            compress=False,
            autoping=True,
            decode_text=False,
            # Some clients send an empty Sec-WebSocket-Protocol header for JSON:
            # accept it quietly (nothing is echoed for the empty protocol).
            protocols=("",),
        )
        await ws.prepare(request)
        if self._stopping:
            await ws.close(code=3001, message=b"shutdown")
            return ws
        conn = Connection(self, ws)
        self._conns.add(conn)
        self._connect_count += 1
        try:
            await conn.serve()
        finally:
            self._connection_gone(conn)
        return ws
