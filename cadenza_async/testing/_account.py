"""The simulator's accounts: portfolios that change on fills, account statuses, an RFQ dealer, health.

Nothing moves on its own. Every change of an order (the order engine calls
:meth:`SimAccounts.order_changed` after publishing it) re-derives what the
order holds: an open LIMIT BUY locks ``remaining x limit price`` of the
quote asset, an open SELL locks its remaining base quantity, and a fill
moves the balances (BUY: quote debited, base credited; SELL: the reverse)
and the instrument's position (opened, grown with an averaged entry price,
reduced with its realized PnL, CLOSED at zero). Each such change publishes
one ``event.portfolio.updated`` on the account's channel, after the order's
own event and stamped at or after the order's ``updatedAt``:

==================  =====================================  =====================================
what                ``"legacy"``                           ``"current"`` (the default)
==================  =====================================  =====================================
portfolio event     ``{"metadata": {...eventType...},      ``{"data": RpcPortfolio}``: RFC 3339
                    "data": Portfolio}`` (ms times;        times, ``updateMode``
                    ``updateMode`` only on a DELTA)
account event       ``{"metadata", "data":                 ``{"data": RpcTradingAccount}``
                    TradingAccount}``
REST portfolio,     ms times                               ms times and ``*DateTime`` companions
account, quote
==================  =====================================  =====================================

Publishing is off until :meth:`SimAccounts.set_mode` (or the simulator's
``portfolio_updates``) turns it on (the balances move either way, and REST
shows them): ``"SNAPSHOT"`` publishes the whole portfolio each time,
``"DELTA"`` only the balances and positions that changed (a closed
position with ``status`` CLOSED) and the summary.

Faults: :meth:`SimAccounts.drop_next_portfolio_events` (kept in the
channel's history, not delivered: subscribers see an offset gap at the next
publication), :meth:`SimAccounts.send_unmergeable_delta` (a DELTA whose
balance has no ``securitySymbol``, never applied to the true portfolio).

Accounts: :meth:`SimAccounts.set_status` publishes ``event.trading_account.updated``;
in INACTIVE, LOCKED, DISCONNECTED or UNAVAILABLE the account's submits and
cancels are refused (403) and its orders waiting for acceptance stay so.

RFQ: ``POST /api/v3/quote/rfq`` answers a firm quote at the instrument's
dealer price (:meth:`SimAccounts.set_quote_price`; else the simulated
market's mid, else 50000.00) with ``ttl`` seconds of validity (default
:attr:`SimAccounts.quote_ttl`). A submit with ``quoteId`` and ``orderType``
QUOTED executes it once, before its expiry, with the quote's side and
quantity, filled whole at the quote's price; otherwise it is refused (400).

Health: ``GET /api/v3/health`` (no token) answers :attr:`SimAccounts.health_status`
(``healthy`` 200, ``degraded`` 200, ``unhealthy`` 503).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import msgspec

from ..models import TERMINAL_STATUSES, TradeOrder
from . import _engine
from ._engine import (
    ERRNO_FORBIDDEN,
    ERRNO_INVALID_REQUEST,
    MARKET_PRICE,
    ApiFailure,
    TokenInfo,
    is_valid_id,
)
from ._forms import rfc3339

__all__ = ["DEFAULT_BALANCES", "SimAccounts"]

_encode = msgspec.json.Encoder().encode

#: What every account starts with.
DEFAULT_BALANCES: Final = (("USDT", "1000000"), ("BTC", "10"), ("ETH", "100"))
UNAVAILABLE: Final = frozenset({"INACTIVE", "LOCKED", "DISCONNECTED", "UNAVAILABLE"})
HEALTH_STATUSES: Final = {"healthy": 200, "degraded": 200, "unhealthy": 503}
PORTFOLIO_MODES: Final = ("SNAPSHOT", "DELTA")


def _fmt(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def _dec(value: str | None) -> Decimal:
    try:
        return Decimal(value) if value is not None else Decimal(0)
    except InvalidOperation:
        return Decimal(0)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _lock_of(order: TradeOrder, executed: Decimal, base: str, quote: str) -> tuple[str, Decimal]:
    """What an order holds back now: its remaining quote value (BUY) or base quantity (SELL)."""
    if order.status in TERMINAL_STATUSES or order.order_type in ("MARKET", "QUOTED"):
        return (quote, Decimal(0))
    remaining = max(Decimal(0), _dec(order.quantity) - executed)
    if order.order_side == "SELL":
        return (base, remaining)
    if order.limit_price:
        return (quote, remaining * _dec(order.limit_price))
    return (quote, Decimal(0))


class _Position:
    __slots__ = (
        "created",
        "entry",
        "instrument",
        "position_id",
        "price",
        "quantity",
        "realized",
        "updated",
    )

    def __init__(self, instrument: str, stamp: int) -> None:
        self.position_id = str(uuid.uuid4())
        self.instrument = instrument
        self.quantity = Decimal(0)  # signed: > 0 long, < 0 short
        self.entry = Decimal(0)
        self.realized = Decimal(0)
        self.price = Decimal(0)
        self.created = stamp
        self.updated = stamp

    def trade(self, signed: Decimal, price: Decimal) -> None:
        """A fill of ``signed`` (BUY > 0) at ``price``: grow (averaged entry) or reduce (realized)."""
        held = self.quantity
        if held == 0 or (held > 0) == (signed > 0):
            total = held + signed
            self.entry = (self.entry * abs(held) + price * abs(signed)) / abs(total)
            self.quantity = total
        else:
            closing = min(abs(signed), abs(held))
            direction = 1 if held > 0 else -1
            self.realized += (price - self.entry) * closing * direction
            self.quantity = held + signed
            if self.quantity != 0 and (self.quantity > 0) != (held > 0):
                self.entry = price  # flipped: the rest opened at this price
        self.price = price


class _Portfolio:
    __slots__ = ("balances", "changed", "executed", "locks", "positions", "updated_at")

    def __init__(self) -> None:
        self.balances: dict[str, list[Any]] = {}  # symbol -> [free, locked, updated_at]
        self.positions: dict[str, _Position] = {}  # instrument -> its position (open or closed)
        self.locks: dict[str, tuple[str, Decimal]] = {}  # order id -> (asset, amount locked)
        self.executed: dict[str, Decimal] = {}  # order id -> executed quantity seen
        self.updated_at = 0
        self.changed: tuple[set[str], set[str]] = (set(), set())  # symbols, instruments


class _Quote:
    __slots__ = ("fields", "used")

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields
        self.used = False


class SimAccounts:
    """Portfolios, account statuses, the RFQ dealer and health of a simulator (module docstring)."""

    def __init__(self, publish: Callable[[str, bytes], int], form: Callable[[], str]) -> None:
        self._publish = publish
        self._form = form
        self.mode: str | None = None  # None: balances move, no event is published
        self.portfolios: dict[str, _Portfolio] = {}
        self.statuses: dict[str, str] = {}
        self.venue = "BINANCE"
        self._drop = 0
        self._history_only: Callable[[str, bytes], int] | None = None
        self.portfolio_events = 0
        self.quotes: dict[str, _Quote] = {}
        self.quote_prices: dict[str, Decimal] = {}
        self.quote_ttl = 10
        self.quotes_executed = 0
        self.mid_price: Callable[[str], Decimal | None] = lambda _instrument: None
        self.health_status = "healthy"
        self.version = "3.0.1"

    # ---- portfolios ---------------------------------------------------------------------

    def portfolio(self, account: str) -> _Portfolio:
        held = self.portfolios.get(account)
        if held is None:
            held = self.portfolios[account] = _Portfolio()
            stamp = _engine.stamp_ms()
            for symbol, amount in DEFAULT_BALANCES:
                held.balances[symbol] = [Decimal(amount), Decimal(0), stamp]
            held.updated_at = stamp
        return held

    def set_mode(self, mode: str | None) -> None:
        """Publish ``event.portfolio.updated`` as ``"SNAPSHOT"`` or ``"DELTA"``; None: publish none."""
        if mode is not None and mode not in PORTFOLIO_MODES:
            raise ValueError(f"portfolio mode must be one of {PORTFOLIO_MODES}, not {mode!r}")
        self.mode = mode

    def set_balance(self, account: str, symbol: str, free: str, locked: str = "0") -> None:
        """Set a balance outright and publish the change."""
        held = self.portfolio(account)
        stamp = self._stamp(held, None)
        held.balances[symbol] = [Decimal(free), Decimal(locked), stamp]
        held.changed[0].add(symbol)
        self._publish_portfolio(account, held)

    def balance(self, account: str, symbol: str) -> tuple[Decimal, Decimal]:
        """(free, locked) of ``symbol`` on the account now (zeros when it has none)."""
        entry = self.portfolio(account).balances.get(symbol)
        return (Decimal(0), Decimal(0)) if entry is None else (entry[0], entry[1])

    def open_positions(self, account: str) -> dict[str, Decimal]:
        """Instrument -> signed quantity of every open position of the account."""
        held = self.portfolio(account)
        return {i: p.quantity for i, p in held.positions.items() if p.quantity != 0}

    def drop_next_portfolio_events(self, n: int = 1) -> None:
        self._drop += n

    def _stamp(self, held: _Portfolio, order: TradeOrder | None) -> int:
        # The exchange's one clock (after the order's own change, which came first).
        floor = 0 if order is None or order.updated_at is None else order.updated_at
        stamp = max(_engine.stamp_ms(), floor + 1, held.updated_at + 1)
        _engine._Stamps.last = max(_engine._Stamps.last, stamp)
        held.updated_at = stamp
        return stamp

    def order_changed(self, order: TradeOrder) -> None:
        """Re-derive what ``order`` locks and has filled; publish the portfolio if it moved."""
        account = order.trading_account_id
        held = self.portfolio(account)
        base, quote = order.base_asset or "BTC", order.quote_asset or "USDT"
        order_id = order.trade_order_id
        executed = _dec(order.executed_quantity)
        filled = executed - held.executed.get(order_id, Decimal(0))
        held.executed[order_id] = executed
        lock = _lock_of(order, executed, base, quote)
        before = held.locks.get(order_id, (lock[0], Decimal(0)))
        if not filled and before == lock:
            return
        stamp = self._stamp(held, order)
        self._move(held, before[0], before[1], -before[1], stamp)  # release the old lock
        self._move(held, lock[0], -lock[1], lock[1], stamp)  # take the new one
        if lock[1]:
            held.locks[order_id] = lock
        else:
            held.locks.pop(order_id, None)
        if filled > 0:
            self._filled(held, order, filled, stamp)
        self._publish_portfolio(account, held, order)

    def _filled(self, held: _Portfolio, order: TradeOrder, filled: Decimal, stamp: int) -> None:
        """A fill of ``filled``: balances moved, the instrument's position traded."""
        base, quote = order.base_asset or "BTC", order.quote_asset or "USDT"
        price = _dec(order.executed_price or order.limit_price or MARKET_PRICE)
        sign = 1 if (order.order_side or "BUY") == "BUY" else -1
        self._move(held, base, filled * sign, Decimal(0), stamp)
        self._move(held, quote, -filled * price * sign, Decimal(0), stamp)
        instrument = order.instrument_id or f"{self.venue}:{base}/{quote}"
        position = held.positions.get(instrument)
        if position is None or position.quantity == 0:
            position = held.positions[instrument] = _Position(instrument, stamp)
        position.trade(filled * sign, price)
        position.updated = stamp
        held.changed[1].add(instrument)

    def _move(
        self, held: _Portfolio, symbol: str, free: Decimal, locked: Decimal, stamp: int
    ) -> None:
        if not free and not locked:
            return
        entry = held.balances.setdefault(symbol, [Decimal(0), Decimal(0), stamp])
        entry[0] += free
        entry[1] += locked
        entry[2] = stamp
        held.changed[0].add(symbol)

    # ---- what is published and answered -------------------------------------------------

    def _balance_dict(
        self, account: str, symbol: str, entry: list[Any], rpc: bool
    ) -> dict[str, Any]:
        free, locked, stamp = entry
        out: dict[str, Any] = {
            "securitySymbol": symbol,
            "securityType": "CRYPTO",
            "tradingAccountId": account,
            "status": "ACTIVE",
            "free": _fmt(free),
            "locked": _fmt(locked),
            "borrowed": "0",
            "total": _fmt(free + locked),
            "net": _fmt(free + locked),
        }
        self._time(out, "updatedAt", stamp, rpc)
        return out

    def _position_dict(self, account: str, position: _Position, rpc: bool) -> dict[str, Any]:
        open_ = position.quantity != 0
        qty = abs(position.quantity)
        direction = 1 if position.quantity >= 0 else -1
        out: dict[str, Any] = {
            "positionId": position.position_id,
            "securitySymbol": position.instrument.partition(":")[2].partition("/")[0],
            "instrumentId": position.instrument,
            "tradingAccountId": account,
            "securityType": "CRYPTO",
            "status": "OPEN" if open_ else "CLOSED",
            "positionSide": "LONG" if direction > 0 else "SHORT",
            "quantity": _fmt(qty),
            "entryPrice": _fmt(position.entry),
            "currentPrice": _fmt(position.price),
            "unrealizedPnl": _fmt((position.price - position.entry) * qty * direction),
            "realizedPnl": _fmt(position.realized),
        }
        self._time(out, "createdAt", position.created, rpc)
        self._time(out, "updatedAt", position.updated, rpc)
        return out

    def _time(self, out: dict[str, Any], name: str, ms: int, rpc: bool) -> None:
        if rpc:
            out[name] = rfc3339(ms)
        else:
            out[name] = ms
            if self._form() == "current":
                out[name + "DateTime"] = rfc3339(ms)

    def _summary(self, account: str, held: _Portfolio) -> dict[str, Any]:
        equity = Decimal(0)
        for symbol, (free, locked, _) in held.balances.items():
            if symbol == "USDT":
                equity += free + locked
            else:
                price = self.mid_price(f"{self.venue}:{symbol}/USDT") or Decimal(MARKET_PRICE)
                equity += (free + locked) * price
        zero = "0"
        return {
            "tradingAccountId": account,
            "currency": "USDT",
            "leverage": 1,
            "equity": _fmt(equity),
            "margin": zero,
            "marginLoan": zero,
            "marginUsage": zero,
            "marginRequirement": zero,
            "marginLevel": zero,
            "credit": zero,
            "riskExposure": zero,
        }

    def portfolio_dict(
        self, account: str, *, rpc: bool, only: tuple[set[str], set[str]] | None = None
    ) -> dict[str, Any]:
        """The account's portfolio (``only``: those balances and positions) as the wire writes it."""
        held = self.portfolio(account)
        symbols = held.balances.keys() if only is None else only[0]
        instruments = held.positions.keys() if only is None else only[1]
        positions = [held.positions[i] for i in instruments if i in held.positions]
        if only is None:
            positions = [p for p in positions if p.quantity != 0]
        out: dict[str, Any] = {
            "tradingAccountId": account,
            "balances": [
                self._balance_dict(account, s, held.balances[s], rpc)
                for s in sorted(symbols)
                if s in held.balances
            ],
            "positions": [self._position_dict(account, p, rpc) for p in positions],
            "summary": self._summary(account, held),
        }
        if not rpc:
            out["venue"] = self.venue
        self._time(out, "updatedAt", held.updated_at, rpc)
        return out

    def _publish_portfolio(
        self, account: str, held: _Portfolio, order: TradeOrder | None = None
    ) -> None:
        delta = self.mode == "DELTA"
        changed = held.changed
        held.changed = (set(), set())
        if self.mode is None:
            for instrument in changed[1]:
                position = held.positions.get(instrument)
                if position is not None and position.quantity == 0:
                    del held.positions[instrument]
            return
        current = self._form() == "current"
        body = self.portfolio_dict(account, rpc=current, only=changed if delta else None)
        for instrument in changed[1]:
            position = held.positions.get(instrument)
            if position is not None and position.quantity == 0:
                del held.positions[instrument]  # closed: published once as CLOSED
        if delta or current:
            body["updateMode"] = self.mode
        self._emit(account, body, "event.portfolio.updated")

    def send_unmergeable_delta(self, account: str) -> None:
        """Publish a DELTA whose balance has no ``securitySymbol`` (the true portfolio is unchanged)."""
        held = self.portfolio(account)
        body = {
            "tradingAccountId": account,
            "updateMode": "DELTA",
            "balances": [{"free": "1", "locked": "0", "total": "1"}],
        }
        self._time(body, "updatedAt", self._stamp(held, None), self._form() == "current")
        self._emit(account, body, "event.portfolio.updated")

    def _emit(self, account: str, body: dict[str, Any], event_type: str) -> None:
        if self._form() == "current":
            data = b'{"data":' + _encode(body) + b"}"
        else:
            meta = {
                "eventId": str(uuid.uuid4()),
                "eventType": event_type,
                "timestamp": rfc3339(now_ms()),
            }
            data = _encode({"metadata": meta, "data": body})
        if event_type == "event.portfolio.updated":
            self.portfolio_events += 1
            if self._drop > 0 and self._history_only is not None:
                self._drop -= 1
                self._history_only(account, data)
                return
        self._publish(account, data)

    # ---- accounts -------------------------------------------------------------------------

    def account_dict(self, account: str, *, rpc: bool) -> dict[str, Any]:
        status = self.statuses.get(account, "ACTIVE")
        out: dict[str, Any] = {
            "tradingAccountId": account,
            "venue": self.venue,
            "nickname": f"sim-{account[:8]}",
            "status": status,
            "accountType": "SPOT",
            "externalAccountType": "SPOT",
            "credentials": [],
        }
        out["externalAccountId" if rpc else "externalTradingAccountId"] = account[:8]
        self._time(out, "createdAt", 1_700_000_000_000, rpc)
        self._time(out, "updatedAt", now_ms(), rpc)
        return out

    def set_status(self, account: str, status: str) -> None:
        """Set the account's status and publish ``event.trading_account.updated``."""
        self.statuses[account] = status
        body = self.account_dict(account, rpc=self._form() == "current")
        self._emit(account, body, "event.trading_account.updated")

    def check_available(self, account: str) -> None:
        """Raise :class:`ApiFailure` (403) when the account cannot trade now."""
        status = self.statuses.get(account, "ACTIVE")
        if status in UNAVAILABLE:
            raise ApiFailure(403, ERRNO_FORBIDDEN, f"Forbidden: trading account is {status}")

    # ---- the RFQ dealer ---------------------------------------------------------------------

    def set_quote_price(self, instrument_id: str, price: str | Decimal) -> None:
        self.quote_prices[instrument_id] = Decimal(str(price))

    def request_quote(self, body: object) -> dict[str, Any]:
        """A firm quote for an RFQ body; :class:`ApiFailure` (400) for a bad one."""
        if not isinstance(body, dict) or not is_valid_id(body.get("dealerAccountId")):
            raise ApiFailure(400, ERRNO_INVALID_REQUEST, "Invalid request: dealerAccountId")
        side = body.get("orderSide")
        if side not in ("BUY", "SELL"):
            raise ApiFailure(400, ERRNO_INVALID_REQUEST, "Invalid request: orderSide")
        instrument = self._instrument_of(body)
        price = self.quote_prices.get(instrument) or self.mid_price(instrument)
        price = price or Decimal(MARKET_PRICE)
        quantity, quote_quantity = _amounts(body, price)
        ttl = body.get("ttl", self.quote_ttl)
        if not isinstance(ttl, (int, float)) or not 0 < ttl <= 300:
            raise ApiFailure(400, ERRNO_INVALID_REQUEST, "Invalid request: ttl")
        created = now_ms()
        _venue, _, symbol = instrument.partition(":")
        base, _, quote = symbol.partition("/")
        fields = {
            "quoteId": str(uuid.uuid4()),
            "quoteRequestId": body.get("quoteRequestId"),
            "venue": _venue,
            "instrumentId": instrument,
            "dealerAccountId": body["dealerAccountId"],
            "traderAccountId": body.get("traderAccountId"),
            "baseAsset": base,
            "quoteAsset": quote,
            "orderSide": side,
            "quantityType": "BASE",
            "quantity": _fmt(quantity),
            "quoteQuantity": _fmt(quote_quantity),
            "price": _fmt(price),
            "status": "CREATED",
            "createdAt": created,
            "expireAt": created + int(ttl * 1000),
        }
        self.quotes[fields["quoteId"]] = _Quote(fields)
        out = {k: v for k, v in fields.items() if v is not None}
        if self._form() == "current":
            out["expireAtDateTime"] = rfc3339(fields["expireAt"])
            out["createdAtDateTime"] = rfc3339(created)
        return out

    def _instrument_of(self, body: dict[str, Any]) -> str:
        instrument = body.get("instrumentId")
        if instrument is None and body.get("baseAsset") and body.get("quoteAsset"):
            instrument = f"{self.venue}:{body['baseAsset']}/{body['quoteAsset']}"
        if not isinstance(instrument, str) or ":" not in instrument:
            raise ApiFailure(400, ERRNO_INVALID_REQUEST, "Invalid request: instrumentId")
        return instrument

    def take_quote(self, body: dict[str, Any]) -> Decimal | None:
        """The price a submit executes at: None without ``quoteId``; ApiFailure (400) when refused."""
        quote_id = body.get("quoteId")
        if quote_id is None:
            return None
        quote = self.quotes.get(quote_id)
        if quote is None:
            raise ApiFailure(400, ERRNO_INVALID_REQUEST, "Invalid request: unknown quoteId")
        fields = quote.fields
        if quote.used:
            raise ApiFailure(400, ERRNO_INVALID_REQUEST, "Quote already executed")
        if now_ms() >= fields["expireAt"]:
            fields["status"] = "EXPIRED"
            raise ApiFailure(400, ERRNO_INVALID_REQUEST, "Quote expired")
        if body.get("orderType") != "QUOTED" or body.get("orderSide") != fields["orderSide"]:
            raise ApiFailure(400, ERRNO_INVALID_REQUEST, "Invalid request: not the quote's order")
        if _dec(body.get("quantity")) != Decimal(fields["quantity"]):
            raise ApiFailure(
                400, ERRNO_INVALID_REQUEST, "Invalid request: not the quote's quantity"
            )
        quote.used = True
        fields["status"] = "ACCEPTED"
        self.quotes_executed += 1
        return Decimal(fields["price"])

    # ---- REST handlers (token info, query or body -> the envelope's data) -----------------

    def rest_portfolios(self, info: TokenInfo, query: Any) -> bytes:
        account = query.get("tradingAccountId")
        accounts = sorted(info.accounts)
        if account is not None:
            if account not in info.accounts:
                raise ApiFailure(403, ERRNO_FORBIDDEN, "Forbidden: no access to this account")
            accounts = [account]
        return _encode([self.portfolio_dict(a, rpc=False) for a in accounts])

    def rest_accounts(self, info: TokenInfo, query: Any) -> bytes:
        status = query.get("accountStatus")
        found = [self.account_dict(a, rpc=False) for a in sorted(info.accounts)]
        return _encode([a for a in found if status is None or a["status"] == status])

    def health(self) -> tuple[int, bytes]:
        stamp = now_ms()
        state = self.health_status
        checks = {name: {"status": state} for name in ("database", "temporal", "redis")}
        body = {
            "status": state,
            "timestamp": stamp,
            "isoDateTime": rfc3339(stamp),
            "version": self.version,
            "checks": checks,
        }
        return HEALTH_STATUSES.get(state, 503), _encode(body)


def _amounts(body: dict[str, Any], price: Decimal) -> tuple[Decimal, Decimal]:
    """An RFQ's (base quantity, quote quantity) at ``price``; ApiFailure (400) when malformed."""
    try:
        if body.get("quantity") is not None:
            quantity = Decimal(body["quantity"])
            return quantity, quantity * price
        quote_quantity = Decimal(body["quoteQuantity"])
        return quote_quantity / price, quote_quantity
    except (InvalidOperation, KeyError, TypeError):
        raise ApiFailure(400, ERRNO_INVALID_REQUEST, "Invalid request: quantity") from None
