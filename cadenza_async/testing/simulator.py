"""CadenzaSimulator: the simulated exchange's lifecycle and its control surface (state, orders, faults).

::

    async with CadenzaSimulator(cancel_delay=0.05) as sim:
        order = sim.create_order()
        # point a client at sim.api_url / sim.ws_url with sim.token
        await sim.wait_for(lambda: sim.get_order(order.trade_order_id).status == "CANCELLED")

REST (bearer auth, the seed's envelope and error table):
``POST /api/v3/tradeOrder/cancel``, ``GET /api/v3/tradeOrder/list``,
``POST /api/v3/tradeOrder/submit``. WebSocket: ``/connection/websocket``
(Centrifugo JSON protocol: connect, subscribe with history recovery,
unsubscribe, history, rpc ``command.trade_order.cancel`` and
``command.trade_order.submit``, refresh, server ping/pong). Every change of
an order publishes one ``event.trade_order.updated`` on
``tradingAccount:{account id}``.

Placing (``accept_delay``, :meth:`CadenzaSimulator.set_price_band`,
:meth:`CadenzaSimulator.reject_next_submits`): a submit is idempotent by
``clientOrderId``; with an acceptance delay it answers SUBMITTED and the
event says OPEN (or REJECTED, with ``rejectReason``) later.
:meth:`CadenzaSimulator.live_orders_of` and
:meth:`CadenzaSimulator.peak_live_orders` tell how many of an account's
orders on an instrument are (and ever were at once) live on the exchange.

The parts, one module each: the order engine (``_engine``), the REST
endpoints and their faults (``_rest``), the channel hub and the publication
faults (``_hub``), the WebSocket endpoint (``_endpoint``) and its connections
(``_ws``), the cancel requests in flight (``_cancels``), and the delay
switches the faults share (``_delays``). This class wires them together,
starts and stops them, and is the one place a test talks to.

Everything the simulator starts (connection handlers, writer tasks, timers,
held answers) is stopped and awaited when the ``async with`` block ends.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from ..models import TradeOrder
from ._account import SimAccounts
from ._cancels import CancelDesk
from ._endpoint import WebSocketEndpoint
from ._engine import CHANNEL_PREFIX, Engine
from ._forms import WireForm, WireName
from ._hub import ChannelHub
from ._market import SimMarket
from ._rest import RestApi
from ._submits import SubmitDesk
from ._ws import Connection

__all__ = ["CadenzaSimulator"]

T = TypeVar("T")

_encode = msgspec.json.Encoder().encode


def _copy(order: TradeOrder) -> TradeOrder:
    return msgspec.structs.replace(order)


class CadenzaSimulator:
    """A simulated Cadenza exchange on loopback; use it as ``async with CadenzaSimulator() as sim``.

    ``token`` (default: a random ``sim-...`` token) owns ``trading_account_id``
    (default: a random uuid4). ``cancel_delay`` 0 processes a cancel at once
    (the HTTP answer already says CANCELLED); > 0 answers PENDING_CANCEL and
    publishes CANCELLED after the delay. ``wire`` is the API generation it
    speaks (``"current"``, the official client's current models, or
    ``"legacy"``; see :mod:`cadenza_async.testing._forms`). ``event_shape``
    (legacy only) is ``"order"`` (``data`` is the TradeOrder) or
    ``"status_change"`` (``{"order", "previousStatus", "newStatus"}``).
    ``portfolio_updates`` (``"SNAPSHOT"`` or ``"DELTA"``; None, the default:
    off) publishes ``event.portfolio.updated`` after each order change that
    moves a portfolio (see :attr:`accounts`). The token is never shown by ``repr``.

    Faults are methods; each is off until called and stays on until turned
    off (a delay of 0), used up (the ``n``/``times`` ones) or over (an
    outage). ``delay_rest``, ``delay_cancel_reply`` and
    ``delay_subscribe_replies`` accept ``math.inf``: held until that delay is
    set to a finite value again, or the simulator stops.

    WebSocket:

    - ``disconnect_all(code, reason)``: a close frame with ``code`` on every
      connection (3000-3499: clients reconnect; 3500-3999, e.g. 3503: they don't).
    - ``refuse_websocket(status=503)`` / ``accept_websocket()``: handshakes
      answered HTTP ``status`` (None: TCP closed, no answer), open connections
      closed with 3001; REST unaffected.
    - ``delay_subscribe_replies(s)``: every subscribe handled and answered late.
    - ``refuse_subscribe(account, code=, message=, times=, resubscribe_only=)``:
      the next subscribes of ``tradingAccount:{account}`` get a Centrifugo error.
    - ``stall_websocket_reads()`` / ``resume_websocket_reads()``: what clients
      send is not read (TCP stays up), so their writes block once buffers fill.
    - ``stop_pinging()``, ``send_raw(frame)``, ``lose_history(account)``,
      ``pause_publications()``, ``duplicate_next_publications(n)``,
      ``reorder_next_publications(n)``, ``delay_publications(s)``, ``restart()``.

    Market (``sim.market``, a :class:`~cadenza_async.testing._market.SimMarket`;
    ``market_seed`` seeds its books): instruments with rules, books moved by
    ``market.step(n)``, tickers and candles on their channels, REST market
    data, and the market faults (``drop_next``, ``lose_history``,
    ``send_delta``, ``cross_book``, ``stall``, ``set_wire_form``).

    REST (``endpoint`` names: ``"cancel"``, ``"list"``, ``"submit"``, ``"market"``):

    - ``fail_next_rest(n, status, endpoint=)``, ``rate_limit_next_rest(n,
      retry_after, endpoint=)``: the next ``n`` calls answer 5xx / 429.
    - ``delay_rest(s, endpoint=)`` (``slow_rest(s)``: every endpoint): answers late.
    - ``rest_outage(s, status=503, endpoints=)``: for ``s`` seconds every call
      answers ``status`` (counted in ``rest_outage_answers``).
    - ``delay_cancel_reply(s)``: the cancel is applied and published at once,
      its HTTP answer or RPC reply comes ``s`` seconds later.

    Placing:

    - ``accept_delay`` (seconds): a submit answers SUBMITTED and the order
      becomes OPEN (or REJECTED) that much later, with its event; 0 (the
      default) answers OPEN or REJECTED at once. A MARKET order fills whole
      as soon as it is OPEN, at 50000.00 (``MARKET_PRICE``: the simulator
      has no book to walk), so its submit is proven FILLED.
    - Ids are what the API's are: order and account ids are UUIDs (a
      malformed one is answered 400), ``clientOrderId`` is free text.
    - ``set_price_band(low, high, instrument_id=)``: LIMIT orders priced
      outside are REJECTED (``rejectReason`` says why);
      ``reject_next_submits(n, reason=)``: the next ``n`` new orders are.
    - ``delay_submit_reply(s)``: the submit is applied (and published) at
      once, its HTTP answer or RPC reply comes ``s`` seconds later.
    - ``lose_next_submit_replies(n, status=None)``: the next ``n`` HTTP
      submits are applied, then their connection is dropped unanswered
      (``status`` None) or answered ``status`` (a 5xx).
    - ``submit_requests`` (``(clientOrderId, "http" | "ws")`` of every submit
      that reached the order engine), ``submits_applied`` (new orders
      placed), ``duplicate_submits`` (repeats of a ``clientOrderId``, answered
      with the order already placed), ``find_by_client_order_id(...)``,
      ``live_orders_of(...)``, ``peak_live_orders(...)``.

    What arrived: ``rest_requests`` (every REST call), ``cancel_requests``
    (``(order id, "http" | "ws")`` for every cancel that reached the order
    engine), ``max_concurrent_cancels`` (order id -> the most cancel requests,
    HTTP and RPC together, in flight at once: from being read to being
    answered, or until the client went away), ``cancels_applied``,
    ``connect_count``, ``websocket_refusals``, ``pings_sent``, ``pongs_received``.
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
        accept_delay: float = 0.0,
        wire: str = "current",
        market_seed: int = 0,
        portfolio_updates: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._hub = ChannelHub(history_size=history_size, history_ttl=history_ttl)
        self._engine = Engine(
            publish=self._hub.publish,
            call_later=self._call_later,
            cancel_delay=cancel_delay,
            form=WireForm(wire, event_shape),
        )
        self._engine.accept_delay = accept_delay
        self._cancels = CancelDesk()
        self._submits = SubmitDesk()
        self._rest = RestApi(self._engine, self._cancels, self._submits)
        self._ws = WebSocketEndpoint(
            engine=self._engine,
            hub=self._hub,
            cancels=self._cancels,
            submits=self._submits,
            ping_interval=ping_interval,
            pong_timeout=pong_timeout,
            max_message_size=max_message_size,
        )
        self._market = SimMarket(self._hub, seed=market_seed)
        self._accounts = SimAccounts(self._hub.publish, lambda: self._engine.form.name)
        self._accounts.mid_price = self._mid_price
        self._accounts._history_only = lambda account, data: self._hub.channel(account).add(data)[0]
        self._engine.sim_accounts = self._accounts
        self._accounts.set_mode(portfolio_updates)
        self._account = self._engine.add_account(trading_account_id)
        self._token = self._engine.issue_token([self._account], token=token)
        self._runner: web.AppRunner | None = None
        self._stopping = False
        self._api_url = ""
        self._ws_url = ""

    def __repr__(self) -> str:
        where = self._api_url or "not started"
        return f"<CadenzaSimulator {where} account={self._account} connections={self.connections}>"

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
        self._rest.add_routes(app)
        self._rest.add_market_routes(app, self._market.routes())
        self._rest.add_account_routes(app, self._accounts)
        app.router.add_get("/connection/websocket", self._ws.handle)
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
        """Close every connection (3001), cancel every timer, answer every held request, stop serving.

        Safe to call twice.
        """
        if self._stopping:
            return
        self._stopping = True
        self._engine.close()
        await self._market.aclose()
        self._hub.drop_in_flight()
        self._ws.stopping = True
        self._rest.stop()
        self._cancels.reply_delay.release_all()
        self._submits.reply_delay.release_all()
        await self._close_connections(3001, "shutdown")
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _close_connections(self, code: int, reason: str) -> None:
        await asyncio.wait([self._ws.close_where(code, reason)], timeout=5.0)

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
    def market(self) -> SimMarket:
        """The simulated market: instruments, books moved by ``market.step(n)``, its faults."""
        return self._market

    @property
    def accounts(self) -> SimAccounts:
        """Portfolios moved by fills, account statuses, the RFQ dealer, health (see ``_account``).

        ``accounts.mode`` (``set_mode("SNAPSHOT" | "DELTA")``),
        ``balance(account, symbol)``, ``set_balance(...)``,
        ``drop_next_portfolio_events(n)``, ``send_unmergeable_delta(account)``,
        ``set_status(account, "INACTIVE")``, ``set_quote_price(instrument, price)``,
        ``quote_ttl``, ``quotes_executed``, ``health_status``.
        """
        return self._accounts

    def _mid_price(self, instrument_id: str) -> Decimal | None:
        try:
            ticker = self._market.ticker(instrument_id)
        except KeyError:
            return None
        return (Decimal(ticker["bidPrice"]) + Decimal(ticker["askPrice"])) / 2

    @property
    def token(self) -> str:
        """The default token (owns :attr:`trading_account_id`)."""
        return self._token

    @property
    def trading_account_id(self) -> str:
        return self._account

    @property
    def wire(self) -> WireName:
        """The wire generation spoken: ``"current"`` (the default) or ``"legacy"``.

        Settable: from then on REST answers, events, RPC results and the
        RPC submit's params follow the new one.
        """
        return self._engine.form.name

    @wire.setter
    def wire(self, value: str) -> None:
        self._engine.form = WireForm(value, self._engine.form.event_shape)

    @property
    def cancel_delay(self) -> float:
        return self._engine.cancel_delay

    @cancel_delay.setter
    def cancel_delay(self, value: float) -> None:
        self._engine.cancel_delay = value

    @property
    def accept_delay(self) -> float:
        """Seconds from a submit to the exchange accepting (or rejecting) the order; 0: at once."""
        return self._engine.accept_delay

    @accept_delay.setter
    def accept_delay(self, value: float) -> None:
        self._engine.accept_delay = value

    @property
    def ping_interval(self) -> float:
        """Seconds between server pings (announced to connections made from now on)."""
        return self._ws.ping_interval

    @ping_interval.setter
    def ping_interval(self, value: float) -> None:
        self._ws.ping_interval = value

    @property
    def pong_timeout(self) -> float:
        """Seconds a client has to answer a ping before the server closes with 3012."""
        return self._ws.pong_timeout

    @pong_timeout.setter
    def pong_timeout(self, value: float) -> None:
        self._ws.pong_timeout = value

    @property
    def max_message_size(self) -> int:
        """The inbound WebSocket message limit of connections made from now on."""
        return self._ws.max_message_size

    @max_message_size.setter
    def max_message_size(self, value: int) -> None:
        self._ws.max_message_size = value

    @property
    def history_size(self) -> int:
        """Publications a channel made from now on keeps for recovery."""
        return self._hub.history_size

    @history_size.setter
    def history_size(self, value: int) -> None:
        self._hub.history_size = value

    @property
    def history_ttl(self) -> float | None:
        """Seconds a publication stays in the history of a channel made from now on (None: no limit)."""
        return self._hub.history_ttl

    @history_ttl.setter
    def history_ttl(self, value: float | None) -> None:
        self._hub.history_ttl = value

    @property
    def connections(self) -> int:
        """Live WebSocket connections."""
        return len(self._ws.connections)

    @property
    def _conns(self) -> set[Connection]:
        """The live connections themselves (for tests that reach below the public faults)."""
        return self._ws.connections

    @property
    def connect_count(self) -> int:
        """WebSocket connections accepted so far."""
        return self._ws.connect_count

    @property
    def websocket_refusals(self) -> int:
        """WebSocket handshakes refused by :meth:`refuse_websocket` so far."""
        return self._ws.handshakes_refused

    @property
    def pings_sent(self) -> int:
        return self._ws.pings_sent

    @pings_sent.setter
    def pings_sent(self, value: int) -> None:
        self._ws.pings_sent = value

    @property
    def pongs_received(self) -> int:
        return self._ws.pongs_received

    @pongs_received.setter
    def pongs_received(self, value: int) -> None:
        self._ws.pongs_received = value

    @property
    def rest_requests(self) -> list[tuple[str, str, Any]]:
        """Every REST call as it arrived: (method, path, JSON body or query dict)."""
        return self._rest.requests

    @rest_requests.setter
    def rest_requests(self, value: list[tuple[str, str, Any]]) -> None:
        self._rest.requests = value

    @property
    def cancel_requests(self) -> list[tuple[Any, str]]:
        """(order id, ``"http"`` or ``"ws"``) of every cancel that reached the order engine.

        Past the REST faults and auth; a cancel an outage or a 5xx fault answered is not here.
        """
        return self._cancels.requests

    @cancel_requests.setter
    def cancel_requests(self, value: list[tuple[Any, str]]) -> None:
        self._cancels.requests = value

    @property
    def max_concurrent_cancels(self) -> dict[str, int]:
        """Order id -> the most cancel requests for it (HTTP and RPC) in flight at the same time.

        In flight: from the moment the simulator has read the request (before
        any REST delay or fault) until its answer is sent, or until its client
        has gone away (an HTTP client that gave up, a closed WebSocket). Every
        order a cancel request named is here, so 1 means "never two at once".
        """
        return self._cancels.max_concurrent

    @property
    def submit_requests(self) -> list[tuple[Any, str]]:
        """(clientOrderId or None, ``"http"`` or ``"ws"``) of every submit that reached the engine.

        Past the REST faults and auth; repeats of a ``clientOrderId`` are here too.
        """
        return self._submits.requests

    @property
    def max_concurrent_submits(self) -> int:
        """The most HTTP submit requests the simulator held at once (read, not yet answered)."""
        return self._submits.max_concurrent

    @property
    def submits_applied(self) -> int:
        """New orders placed by submits (a repeated ``clientOrderId`` places none)."""
        return self._engine.submits_applied

    @property
    def duplicate_submits(self) -> int:
        """Submits answered with the order their ``clientOrderId`` had already placed."""
        return self._engine.duplicate_submits

    @property
    def peak_pending_acceptances(self) -> int:
        """The most placed orders waiting for the exchange's acceptance at the same instant.

        With ``accept_delay`` > 0 a new order stays SUBMITTED for that long; this
        counts such orders exactly at each submit (not sampled), so a test can
        tell how many submits a client kept unproven at once.
        """
        return self._engine.peak_pending_accepts

    @property
    def rest_outage_answers(self) -> int:
        """REST calls answered by :meth:`rest_outage` so far."""
        return self._rest.outage_answers

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
        channel = self._hub.channel(account_id or self._account)
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
        if any(conn.token_info is info for conn in self._ws.connections):
            # (callable outside the running loop: nothing to wait for then)
            self._ws.close_where(3005, "connection expired", lambda conn: conn.token_info is info)

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

    def find_by_client_order_id(
        self, client_order_id: str, account_id: str | None = None
    ) -> TradeOrder | None:
        """A copy of the order a submit with ``client_order_id`` placed on the account, or None."""
        order = self._engine.find_by_client_id(account_id or self._account, client_order_id)
        return None if order is None else _copy(order)

    def live_orders_of(
        self, instrument_id: str | None = "BINANCE:BTC/USDT", account_id: str | None = None
    ) -> list[TradeOrder]:
        """Copies of the account's orders on ``instrument_id`` that are live now (not final).

        Live is any status but a final one: SUBMITTED and PENDING_CANCEL count.
        """
        live = self._engine.live_orders(account_id or self._account, instrument_id)
        return [_copy(order) for order in live]

    def peak_live_orders(
        self, instrument_id: str | None = "BINANCE:BTC/USDT", account_id: str | None = None
    ) -> int:
        """The most of the account's orders on ``instrument_id`` ever live at the same instant.

        Counted at every change of every order (creation, submit, acceptance,
        fill, cancel), so a moment with two live orders is never missed.
        """
        return self._engine.peak_live(account_id or self._account, instrument_id)

    def reset_peak_live_orders(
        self, instrument_id: str | None = "BINANCE:BTC/USDT", account_id: str | None = None
    ) -> None:
        """Count :meth:`peak_live_orders` again from the orders live now."""
        self._engine.reset_peak_live(account_id or self._account, instrument_id)

    def set_price_band(
        self,
        low: str | Decimal | None,
        high: str | Decimal | None,
        *,
        instrument_id: str | None = None,
    ) -> None:
        """Reject LIMIT orders (on ``instrument_id``; None: every instrument) priced outside [low, high].

        The order is placed and then REJECTED with a ``rejectReason`` (at once,
        or after ``accept_delay``): the submit itself succeeds. ``None, None``
        removes the band. Raises ValueError when ``low > high``.
        """
        self._engine.set_price_band(low, high, instrument_id)

    def reject_next_submits(self, n: int = 1, *, reason: str = "rejected by the exchange") -> None:
        """Reject the next ``n`` new orders with ``rejectReason`` ``reason``."""
        self._engine.reject_next_submits(n, reason)

    def delay_submit_reply(self, seconds: float) -> None:
        """Apply every submit at once but send its answer ``seconds`` later (0 turns it off).

        The order is placed and its events published as usual; only the HTTP
        answer of ``POST .../submit`` and the RPC reply of
        ``command.trade_order.submit`` wait: the event beats the reply.
        ``math.inf``: until set to a finite value again, or the simulator
        stops. Raises ValueError for a negative delay.
        """
        self._submits.reply_delay.set(seconds)

    def lose_next_submit_replies(self, n: int = 1, *, status: int | None = None) -> None:
        """Apply the next ``n`` HTTP submits, then lose their answers.

        ``status`` None drops the connection without an answer (the client
        sees a transport error); a 5xx answers that status. Either way the
        order exists. Raises ValueError for ``n`` < 1 or another status.
        """
        self._submits.lose_replies(n, status)

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
        return self._hub.publish(account_id or self._account, data)

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

    # ---- timers ------------------------------------------------------------

    def _call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(delay, callback)

    # ---- faults: WebSocket ---------------------------------------------------

    async def disconnect_all(self, code: int = 3001, reason: str = "shutdown") -> None:
        """Close every WebSocket connection with a close frame carrying ``code`` and ``reason``.

        Returns once they are closed. Codes 3500-3999 (3500 invalid token,
        3501 bad request, 3503 force disconnect, ...) tell Centrifugo clients
        not to reconnect; 3000-3499 tell them to reconnect.
        """
        await self._close_connections(code, reason)

    def refuse_websocket(self, status: int | None = 503) -> asyncio.Future[None]:
        """Refuse WebSocket handshakes until :meth:`accept_websocket`; REST keeps working.

        A handshake at ``/connection/websocket`` is answered HTTP ``status``
        (None: the TCP connection is closed without any HTTP answer), and
        counted in :attr:`websocket_refusals`. The connections open now are
        closed with 3001 (so clients try to reconnect); the returned future is
        done once they are closed (awaiting it is optional). Raises ValueError
        for a ``status`` that is not an HTTP status.
        """
        self._ws.refuse(status)
        return self._ws.close_where(3001, "shutdown")

    def accept_websocket(self) -> None:
        """Accept WebSocket handshakes again (after :meth:`refuse_websocket`)."""
        self._ws.accept()

    def delay_subscribe_replies(self, seconds: float) -> None:
        """Handle, and so answer, every subscribe command ``seconds`` late (0 turns it off).

        The channel's pushes start with the late reply, as they would on a
        slow server. ``math.inf``: never, until set to a finite value again
        (then at once). Raises ValueError for a negative delay.
        """
        self._ws.subscribe_reply_delay.set(seconds)

    def refuse_subscribe(
        self,
        account_id: str | None = None,
        *,
        code: int,
        message: str | None = None,
        times: int = 1,
        resubscribe_only: bool = False,
    ) -> None:
        """Answer the next ``times`` subscribes to ``tradingAccount:{account_id}`` with error ``code``.

        ``account_id`` None: the default account. ``message`` defaults to the
        real Centrifugo text of the code (103 "permission denied", 112
        "unrecoverable position", ...); 100 and 111 are marked temporary, as
        the real server marks them. With ``resubscribe_only`` only subscribes
        that ask ``recover: true`` are refused (and counted). Calls add up:
        each one's refusals are used in the order they were asked for. Raises
        ValueError for ``times`` < 1, or an unknown code without ``message``.
        """
        channel = CHANNEL_PREFIX + (account_id or self._account)
        self._ws.refuse_subscribe(channel, code, message, times, resubscribe_only)

    def lose_history(self, account_id: str | None = None) -> None:
        """New epoch and empty history (one account, or all): the next recovery fails.

        Connections stay up; publications after this start again at offset 1
        under the new epoch. Combine with :meth:`disconnect_all` to make
        clients resubscribe and see ``recovered`` false.
        """
        if account_id is not None:
            self._hub.channel(account_id).reset()
            return
        self._hub.reset_all(self._account)

    def pause_publications(self) -> None:
        """Record publications in history but deliver none live (a connected but mute server)."""
        self._hub.paused = True

    def resume_publications(self) -> None:
        """Deliver live again; what was missed is only in history (recovery, or REST)."""
        self._hub.paused = False

    def duplicate_next_publications(self, n: int) -> None:
        """Deliver each of the next ``n`` publications twice (same offset)."""
        self._hub.duplicate_left = n

    def delay_publications(self, seconds: float) -> None:
        """Deliver publications ``seconds`` late (0 turns the delay off); order is kept."""
        self._hub.publication_delay = seconds

    def reorder_next_publications(self, n: int) -> None:
        """Hold the next ``n`` publications, then deliver them in reverse order."""
        self._hub.reorder_next(n)

    def stop_pinging(self) -> None:
        """Stop sending pings (the TCP connection stays healthy)."""
        self._ws.pinging = False

    def resume_pinging(self) -> None:
        self._ws.pinging = True

    def stall_websocket_reads(self) -> None:
        """Stop reading what clients send over WebSocket (TCP stays up): once the socket
        buffers fill, a client's writes wait for them to drain. Until
        :meth:`resume_websocket_reads`; connections made meanwhile stall too."""
        self._ws.stall_reading(True)

    def resume_websocket_reads(self) -> None:
        self._ws.stall_reading(False)

    async def send_raw(self, frame: str | bytes) -> None:
        """Send ``frame`` as is to every connection (str: text frame, bytes: binary frame)."""
        futures = [conn.send_raw(frame) for conn in list(self._ws.connections)]
        if futures:
            await asyncio.wait(futures, timeout=5.0)

    async def restart(self) -> None:
        """Drop every connection (3001) and start a new epoch on every channel; orders are kept."""
        self._hub.drop_in_flight()
        self._hub.reset_all(self._account)
        await self._close_connections(3001, "shutdown")

    # ---- faults: REST --------------------------------------------------------

    def fail_next_rest(self, n: int = 1, status: int = 503, endpoint: str | None = None) -> None:
        """Answer the next ``n`` REST calls with ``status`` (5xx) and an error envelope.

        ``endpoint`` (``"cancel"``, ``"list"``, ``"submit"``) counts only that
        endpoint's calls; None: any call. Raises ValueError for another name.
        """
        self._rest.queue_faults("fail", float(status), n, endpoint)

    def rate_limit_next_rest(
        self, n: int = 1, retry_after: float = 1.0, endpoint: str | None = None
    ) -> None:
        """Answer the next ``n`` REST calls with 429 and ``Retry-After: retry_after``.

        ``endpoint`` (``"cancel"``, ``"list"``, ``"submit"``) counts only that
        endpoint's calls; None: any call. Raises ValueError for another name.
        """
        self._rest.queue_faults("rate", retry_after, n, endpoint)

    def slow_rest(self, seconds: float) -> None:
        """Delay every REST answer by ``seconds`` (0 turns it off): :meth:`delay_rest` on every endpoint."""
        self._rest.delay(seconds, None)

    def delay_rest(self, seconds: float, *, endpoint: str | None = None) -> None:
        """Answer the calls of ``endpoint`` (``"cancel"``, ``"list"``, ``"submit"``; None: all) late.

        A call arriving from now on waits ``seconds`` before faults, auth and
        the handler (0 turns it off). ``math.inf`` holds calls until the
        endpoint's delay is set to a finite value (they then go on at once) or
        the simulator stops (they are answered 503). A held cancel stops
        counting as in flight when its client gives up, but still reaches the
        exchange when let go, as a real slow server's would. Raises ValueError
        for an unknown endpoint or a negative delay.
        """
        self._rest.delay(seconds, endpoint)

    def rest_outage(
        self, seconds: float, *, status: int = 503, endpoints: Iterable[str] | None = None
    ) -> None:
        """For ``seconds`` from now, answer every REST call (or those of ``endpoints``) with ``status``.

        The answer is the API's error envelope; nothing reaches the engine;
        each one is counted in :attr:`rest_outage_answers`. Afterwards the
        endpoints answer normally again; ``seconds=0`` ends an outage now.
        Raises ValueError for an unknown endpoint or a status outside 400-599.
        """
        self._rest.outage(seconds, status, endpoints)

    def delay_cancel_reply(self, seconds: float) -> None:
        """Apply every cancel at once but send its answer ``seconds`` later (0 turns it off).

        The exchange processes the cancel and publishes its events as usual
        (``cancel_delay``); only the HTTP answer of ``POST .../cancel``, and the
        RPC reply of ``command.trade_order.cancel``, wait. ``math.inf``: until
        set to a finite value again (then at once), or the simulator stops.
        Raises ValueError for a negative delay.
        """
        self._cancels.reply_delay.set(seconds)
