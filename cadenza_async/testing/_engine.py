"""The simulated exchange's state: accounts, tokens, orders and per-channel history.

No sockets here. The engine changes orders and hands every change to a
``publish`` callback as ready-made event bytes; timers (the exchange's cancel
delay, its acceptance delay) go through a ``call_later`` callback whose
handles the engine keeps and cancels in :meth:`Engine.close`. REST, RPC and
the Python API all go through the same methods, so they behave alike.

Placing: a submit is idempotent by ``clientOrderId`` (per account: the same
id again answers the order it placed, never a second one). With
``accept_delay`` > 0 the order starts SUBMITTED and becomes OPEN (or
REJECTED) after the delay; with 0 the answer already shows OPEN or
REJECTED. An order is rejected (``rejectReason``) by rule, a LIMIT price
outside its instrument's band (:meth:`Engine.set_price_band`), or on demand
(:meth:`Engine.reject_next_submits`).

Every order is counted live (not final) or not at each change, per account
and instrument, with the peak kept: :meth:`Engine.live_orders` and
:meth:`Engine.peak_live` tell a test how many of a quoting loop's orders
were live on the exchange at the same instant.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Final

import msgspec

from .._validate import check_client_order_id, is_uuid
from ..models import TERMINAL_STATUSES, OrderStatus, TradeOrder

if TYPE_CHECKING:
    from ._account import SimAccounts
    from ._forms import WireForm

__all__ = [
    "CANCELLABLE_STATUSES",
    "ERRNO_FORBIDDEN",
    "ERRNO_INVALID_REQUEST",
    "ERRNO_NOT_CANCELLABLE",
    "ERRNO_NOT_FOUND",
    "ERRNO_RATE_LIMITED",
    "ERRNO_SERVER_ERROR",
    "ERRNO_UNAUTHORIZED",
    "ApiFailure",
    "Channel",
    "Engine",
    "TokenInfo",
]

#: errno values the simulator puts in error envelopes (the seed gives -111001).
ERRNO_NOT_CANCELLABLE: Final = -111001
ERRNO_NOT_FOUND: Final = -111002
ERRNO_INVALID_REQUEST: Final = -100400
ERRNO_UNAUTHORIZED: Final = -100401
ERRNO_FORBIDDEN: Final = -100403
ERRNO_RATE_LIMITED: Final = -100429
ERRNO_SERVER_ERROR: Final = -100500

#: Statuses a cancel is accepted in (PENDING_CANCEL answers the cancel again, unchanged).
CANCELLABLE_STATUSES: Final = frozenset(
    {
        OrderStatus.OPEN,
        OrderStatus.PENDING,
        OrderStatus.CREATED,
        OrderStatus.SUBMITTED,
        OrderStatus.ACCEPTED,
        OrderStatus.PARTIALLY_FILLED,
    }
)

CHANNEL_PREFIX: Final = "tradingAccount:"
#: The price a MARKET order fills at (the simulator has no order book to walk).
MARKET_PRICE: Final = "50000.00"

_encode = msgspec.json.Encoder().encode


class ApiFailure(Exception):
    """An API error answer: HTTP ``status``, envelope ``errno`` and ``message``."""

    def __init__(self, status: int, errno: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.errno = errno
        self.message = message


def is_valid_id(value: object) -> bool:
    """True for an order or account id the API takes: a UUID in canonical text."""
    return isinstance(value, str) and is_uuid(value)


def is_valid_client_id(value: object) -> bool:
    """True for a ``clientOrderId`` the API takes (the SDK's own rule for it)."""
    try:
        check_client_order_id(value)
    except ValueError:
        return False
    return True


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class _Stamps:
    """The exchange's one clock for what it stamps (orders, portfolios): unique, rising.

    Two changes in one millisecond get consecutive stamps, in the order they
    happened, whatever they change: the stamps of orders and of portfolios never
    disagree on which came first (the SDK compares the two).
    """

    last = 0


def stamp_ms() -> int:
    """The next server stamp: now in ms, or one more than the last stamp if that is later."""
    stamp = now_ms()
    if stamp <= _Stamps.last:
        stamp = _Stamps.last + 1
    _Stamps.last = stamp
    return stamp


class TokenInfo:
    """What a token may do: its accounts and, optionally, when it expires (Unix seconds)."""

    __slots__ = ("accounts", "expires_at")

    def __init__(self, accounts: set[str], expires_at: float | None) -> None:
        self.accounts = accounts
        self.expires_at = expires_at

    def expired(self, now: float | None = None) -> bool:
        if self.expires_at is None:
            return False
        return (time.time() if now is None else now) >= self.expires_at

    def ttl(self, now: float | None = None) -> int | None:
        """Whole seconds left (at least 1), or None for a token that never expires."""
        if self.expires_at is None:
            return None
        left = self.expires_at - (time.time() if now is None else now)
        return max(1, int(left + 0.999))


class Channel:
    """One channel's stream: epoch, top offset and a bounded history of publications.

    History entries hold the encoded ``pub`` object (``{"data":...,"offset":N}``)
    so a recovery reply is a join of stored bytes.
    """

    __slots__ = ("epoch", "history", "history_ttl", "name", "offset", "push_prefix")

    def __init__(self, name: str, history_size: int, history_ttl: float | None) -> None:
        self.name = name
        self.epoch = _new_epoch()
        self.offset = 0
        self.history: deque[tuple[int, bytes, float]] = deque(maxlen=max(0, history_size))
        self.history_ttl = history_ttl
        self.push_prefix = b'{"push":{"channel":' + _encode(name) + b',"pub":'

    def add(self, data: bytes) -> tuple[int, bytes]:
        """Record a publication; return its offset and its encoded ``pub`` object."""
        self.offset += 1
        pub = b'{"data":' + data + b',"offset":' + str(self.offset).encode() + b"}"
        if self.history.maxlen:
            self.history.append((self.offset, pub, time.monotonic()))
        return self.offset, pub

    def reset(self) -> None:
        """Start a new epoch: history lost, offsets start again from zero."""
        self.epoch = _new_epoch()
        self.offset = 0
        self.history.clear()

    def _expire(self) -> None:
        if self.history_ttl is None:
            return
        limit = time.monotonic() - self.history_ttl
        while self.history and self.history[0][2] < limit:
            self.history.popleft()

    def recover(self, epoch: str, offset: int) -> list[bytes] | None:
        """The publications after ``offset`` if all of them are still held, else None."""
        self._expire()
        if epoch != self.epoch or offset < 0 or offset > self.offset:
            return None
        if offset == self.offset:
            return []
        if not self.history or self.history[0][0] > offset + 1:
            return None
        return [pub for off, pub, _ in self.history if off > offset]

    def since(self, epoch: str | None, offset: int, limit: int, reverse: bool) -> list[bytes]:
        """History publications (after ``offset`` when given), at most ``limit`` (<=0: all)."""
        self._expire()
        if epoch and epoch != self.epoch:
            return []
        pubs = [pub for off, pub, _ in self.history if off > offset]
        if reverse:
            pubs.reverse()
        return pubs[:limit] if limit > 0 else pubs


def _new_epoch() -> str:
    return secrets.token_hex(4)


def _dec(value: str | None, default: str = "0") -> Decimal:
    try:
        return Decimal(value if value is not None else default)
    except InvalidOperation:
        return Decimal(default)


def _fmt(value: Decimal) -> str:
    return format(value.normalize(), "f")


Publish = Callable[[str, bytes], object]
CallLater = Callable[[float, Callable[[], None]], Any]


class Engine:
    """Orders, accounts and tokens of the simulated exchange.

    Every change of an order calls ``publish(account_id, event_bytes)`` once,
    the event written in ``form``'s wire generation.
    ``cancel_delay`` > 0 makes a cancel answer PENDING_CANCEL and complete
    (CANCELLED) after the delay; 0 completes it at once.
    """

    def __init__(
        self,
        *,
        publish: Publish,
        call_later: CallLater,
        cancel_delay: float = 0.0,
        form: WireForm,
    ) -> None:
        self._publish = publish
        self._call_later = call_later
        self.cancel_delay = cancel_delay
        self.form = form
        self.orders: dict[str, TradeOrder] = {}
        # account id -> order ids, in creation order (an account's listing need not scan all)
        self._order_ids_by_account: dict[str, dict[str, None]] = {}
        self.accounts: set[str] = set()
        self.tokens: dict[str, TokenInfo] = {}
        self._pending_cancels: dict[str, Any] = {}
        self._fill_on_cancel: set[str] = set()
        self.cancels_applied: dict[str, int] = {}
        # placing
        self.accept_delay = 0.0
        self._pending_accepts: dict[str, Any] = {}
        self.peak_pending_accepts = 0  # the most orders waiting for acceptance at once
        self._by_client_id: dict[tuple[str, str], str] = {}
        self._price_bands: dict[str | None, tuple[Decimal, Decimal]] = {}
        self._reject_next: deque[str] = deque()
        self.submits_applied = 0
        self.duplicate_submits = 0
        # (account, instrument) -> ids of its orders not final now, and the most at once
        self._live: dict[tuple[str, str | None], set[str]] = {}
        self._peak_live: dict[tuple[str, str | None], int] = {}
        # accounts: portfolios moved by every change, statuses, the RFQ dealer (_account)
        self.sim_accounts: SimAccounts | None = None
        self._fill_prices: dict[str, str] = {}  # a quoted order fills at its quote's price

    # ---- accounts and tokens -------------------------------------------------

    def add_account(self, account_id: str | None = None) -> str:
        account = account_id if account_id is not None else str(uuid.uuid4())
        if not is_valid_id(account):
            raise ValueError(f"invalid account id {account!r}")
        self.accounts.add(account)
        return account

    def issue_token(
        self, accounts: Iterable[str], ttl: float | None = None, token: str | None = None
    ) -> str:
        value = token if token is not None else "sim-" + secrets.token_urlsafe(24)
        owned = set(accounts)
        for account in owned:
            self.add_account(account)
        expires = None if ttl is None else time.time() + ttl
        self.tokens[value] = TokenInfo(owned, expires)
        return value

    def token_info(self, token: str | None) -> TokenInfo | None:
        if not token:
            return None
        return self.tokens.get(token)

    # ---- orders --------------------------------------------------------------

    def create_order(
        self,
        account_id: str,
        status: str,
        quantity: str,
        executed_quantity: str,
        fields: dict[str, Any],
        *,
        publish: bool,
        placed: bool = False,
    ) -> TradeOrder:
        """A new order; ``placed``: by a submit (what it locks moves the portfolio at once).

        An order made by the test helper moves the portfolio from its first change on.
        """
        self.add_account(account_id)
        order_id = fields.pop("trade_order_id", None) or str(uuid.uuid4())
        if not is_valid_id(order_id):
            raise ValueError(f"invalid order id {order_id!r}")
        if order_id in self.orders:
            raise ValueError(f"order {order_id} already exists")
        now = stamp_ms()
        instrument = fields.pop("instrument_id", None) or "BINANCE:BTC/USDT"
        venue, _, pair = instrument.partition(":")
        base, _, quote = pair.partition("/")
        values: dict[str, Any] = {
            "venue": venue or "BINANCE",
            "instrument_id": instrument,
            "base_asset": base or None,
            "quote_asset": quote or None,
            "order_side": "BUY",
            "order_type": "LIMIT",
            "time_in_force": "GTC",
            "limit_price": "50000.00",
            "executed_cost": "0",
            "created_at": now,
            "updated_at": now,
        }
        values.update(fields)
        order = TradeOrder(
            trade_order_id=order_id,
            trading_account_id=account_id,
            status=status,
            quantity=quantity,
            executed_quantity=executed_quantity,
            **values,
        )
        self.orders[order_id] = order
        self._order_ids_by_account.setdefault(account_id, {})[order_id] = None
        self._track(order)
        if publish:
            self._emit(order, None, portfolio=placed)
        return order

    def get(self, order_id: str) -> TradeOrder | None:
        return self.orders.get(order_id)

    def orders_of(self, account_id: str) -> list[TradeOrder]:
        """The account's orders (current state), in creation order."""
        ids = self._order_ids_by_account.get(account_id, {})
        return [self.orders[oid] for oid in ids]

    def _touch(self, order: TradeOrder) -> int:
        stamp = stamp_ms()
        if order.updated_at is not None and stamp <= order.updated_at:
            stamp = _Stamps.last = order.updated_at + 1  # (a time set by hand, ahead)
        order.updated_at = stamp
        self._track(order)
        return stamp

    def _track(self, order: TradeOrder) -> None:
        """Count the order live (not final) or not, after each change of its status."""
        key = (order.trading_account_id, order.instrument_id)
        live = self._live.get(key)
        if order.status in TERMINAL_STATUSES:
            if live is not None:
                live.discard(order.trade_order_id)
            return
        if live is None:
            live = self._live[key] = set()
        live.add(order.trade_order_id)
        if len(live) > self._peak_live.get(key, 0):
            self._peak_live[key] = len(live)

    def live_orders(self, account_id: str, instrument_id: str | None) -> list[TradeOrder]:
        """The account's orders on ``instrument_id`` that are not final now."""
        ids = self._live.get((account_id, instrument_id), ())
        return [self.orders[oid] for oid in ids]

    def peak_live(self, account_id: str, instrument_id: str | None) -> int:
        """The most of the account's orders on ``instrument_id`` ever live at the same instant."""
        return self._peak_live.get((account_id, instrument_id), 0)

    def reset_peak_live(self, account_id: str, instrument_id: str | None) -> None:
        """Start counting the peak again from the orders live now."""
        key = (account_id, instrument_id)
        self._peak_live[key] = len(self._live.get(key, ()))

    def _emit(self, order: TradeOrder, previous: str | None, *, portfolio: bool = True) -> None:
        self._publish(order.trading_account_id, self.form.event(order, previous))
        if portfolio and self.sim_accounts is not None:
            self.sim_accounts.order_changed(order)  # its portfolio event comes after the order's

    def set_status(self, order_id: str, status: str, *, publish: bool = True) -> TradeOrder:
        order = self._require(order_id)
        previous = order.status
        order.status = status
        self._touch(order)
        if status == OrderStatus.CANCELLED and order.cancelled_at is None:
            order.cancelled_at = order.updated_at
        if status != OrderStatus.PENDING_CANCEL:
            self._drop_pending_cancel(order_id)
        if publish:
            self._emit(order, previous)
        return order

    def _require(self, order_id: str) -> TradeOrder:
        order = self.orders.get(order_id)
        if order is None:
            raise KeyError(order_id)
        return order

    def fill(self, order_id: str, quantity: str | Decimal | None = None) -> TradeOrder:
        """Fill ``quantity`` (default: all that is left). Raises ValueError on a final order."""
        order = self._require(order_id)
        if order.status in TERMINAL_STATUSES:
            raise ValueError(f"order {order_id} is {order.status} and cannot fill")
        total = _dec(order.quantity)
        done = _dec(order.executed_quantity)
        left = total - done
        amount = left if quantity is None else Decimal(str(quantity))
        if amount <= 0 or amount > left:
            raise ValueError(f"fill of {amount} does not fit the {left} left on order {order_id}")
        done += amount
        previous = order.status
        order.executed_quantity = _fmt(done)
        price = self._fill_prices.get(order_id) or (
            MARKET_PRICE if order.order_type == "MARKET" else order.limit_price
        )
        if price is not None:
            order.executed_cost = _fmt(done * _dec(price))
            order.executed_price = price
        if done >= total:
            order.status = OrderStatus.FILLED
            self._drop_pending_cancel(order_id)
        elif order.status != OrderStatus.PENDING_CANCEL:
            order.status = OrderStatus.PARTIALLY_FILLED
        self._touch(order)
        self._emit(order, previous)
        return order

    def fill_on_next_cancel(self, order_id: str) -> None:
        self._require(order_id)
        self._fill_on_cancel.add(order_id)

    def _drop_pending_cancel(self, order_id: str) -> None:
        handle = self._pending_cancels.pop(order_id, None)
        if handle is not None:
            handle.cancel()

    def cancel(
        self, token: TokenInfo, order_id: object, account_id: object | None = None
    ) -> TradeOrder:
        """Apply a cancel as the exchange would; raise :class:`ApiFailure` for the error table."""
        order = self._order_to_cancel(token, order_id, account_id)
        order_id = order.trade_order_id
        if order_id in self._fill_on_cancel:
            self._fill_on_cancel.discard(order_id)
            if order.status not in TERMINAL_STATUSES:
                self.fill(order_id)
        status = order.status
        if status == OrderStatus.PENDING_CANCEL:
            return order
        if status not in CANCELLABLE_STATUSES:
            raise ApiFailure(400, ERRNO_NOT_CANCELLABLE, _not_cancellable(status))
        self.cancels_applied[order_id] = self.cancels_applied.get(order_id, 0) + 1
        if self.cancel_delay > 0:
            order.status = OrderStatus.PENDING_CANCEL
            self._touch(order)
            self._emit(order, status)
            self._pending_cancels[order_id] = self._call_later(
                self.cancel_delay, lambda: self._complete_cancel(order_id)
            )
        else:
            self._finish_cancel(order, status)
        return order

    def _order_to_cancel(
        self, token: TokenInfo, order_id: object, account_id: object | None
    ) -> TradeOrder:
        """The order a cancel names, or the :class:`ApiFailure` of the error table."""
        if not is_valid_id(order_id):
            raise ApiFailure(
                400, ERRNO_INVALID_REQUEST, "Invalid request: missing or malformed tradeOrderId"
            )
        assert isinstance(order_id, str)
        if account_id is not None:
            if not is_valid_id(account_id):
                raise ApiFailure(
                    400, ERRNO_INVALID_REQUEST, "Invalid request: malformed tradingAccountId"
                )
            if account_id not in token.accounts:
                raise ApiFailure(
                    403, ERRNO_FORBIDDEN, "Forbidden: no access to this trading account"
                )
        order = self.orders.get(order_id)
        if order is None or (account_id is not None and order.trading_account_id != account_id):
            raise ApiFailure(404, ERRNO_NOT_FOUND, "Order not found")
        if order.trading_account_id not in token.accounts:
            raise ApiFailure(403, ERRNO_FORBIDDEN, "Forbidden: no access to this order")
        if self.sim_accounts is not None:
            self.sim_accounts.check_available(order.trading_account_id)
        return order

    def _complete_cancel(self, order_id: str) -> None:
        self._pending_cancels.pop(order_id, None)
        order = self.orders.get(order_id)
        if order is None or order.status != OrderStatus.PENDING_CANCEL:
            return
        self._finish_cancel(order, OrderStatus.PENDING_CANCEL)

    def _finish_cancel(self, order: TradeOrder, previous: str) -> None:
        order.status = OrderStatus.CANCELLED
        stamp = self._touch(order)
        order.cancelled_at = stamp
        self._emit(order, previous)

    def submit(self, token: TokenInfo, body: dict[str, Any]) -> TradeOrder:
        """Create an order from a submit request; raise :class:`ApiFailure` when it is invalid."""
        account = _submit_account(token, body)
        quantity, fields = _submit_fields(body)
        if fields.get("order_type") == "MARKET":
            fields.setdefault("limit_price", None)
        client_id = fields.get("client_order_id")
        if client_id is not None:
            if not is_valid_client_id(client_id):
                raise ApiFailure(
                    400, ERRNO_INVALID_REQUEST, "Invalid request: malformed clientOrderId"
                )
            placed = self._by_client_id.get((account, client_id))
            if placed is not None:
                # The idempotency key: the order this clientOrderId placed, as it is now.
                self.duplicate_submits += 1
                return self.orders[placed]
        quote_price = None
        if self.sim_accounts is not None:
            self.sim_accounts.check_available(account)
            quote_price = self.sim_accounts.take_quote(body)
        self.submits_applied += 1
        reason = self._rejection(fields)
        if self.accept_delay > 0:
            order = self.create_order(
                account, OrderStatus.SUBMITTED, quantity, "0", fields, publish=True, placed=True
            )
            order_id = order.trade_order_id
            if quote_price is not None:
                self._fill_prices[order_id] = format(quote_price, "f")
            self._pending_accepts[order_id] = self._call_later(
                self.accept_delay, lambda: self._complete_accept(order_id, reason)
            )
            if len(self._pending_accepts) > self.peak_pending_accepts:
                self.peak_pending_accepts = len(self._pending_accepts)
        elif reason is not None:
            fields["reject_reason"] = reason
            order = self.create_order(
                account, OrderStatus.REJECTED, quantity, "0", fields, publish=True, placed=True
            )
        else:
            order = self.create_order(
                account, OrderStatus.OPEN, quantity, "0", fields, publish=True, placed=True
            )
            if quote_price is not None:
                self._fill_prices[order.trade_order_id] = format(quote_price, "f")
            self._fill_if_market(order)
        if client_id is not None:
            self._by_client_id[(account, client_id)] = order.trade_order_id
        return order

    def find_by_client_id(self, account_id: str, client_order_id: str) -> TradeOrder | None:
        """The order a submit with this ``clientOrderId`` placed on the account, or None."""
        order_id = self._by_client_id.get((account_id, client_order_id))
        return None if order_id is None else self.orders.get(order_id)

    def _rejection(self, fields: dict[str, Any]) -> str | None:
        """Why the exchange refuses this new order (``rejectReason``), or None to accept it."""
        if self._reject_next:
            return self._reject_next.popleft()
        band = self._price_bands.get(fields.get("instrument_id")) or self._price_bands.get(None)
        price = fields.get("limit_price")
        if band is not None and price is not None and fields.get("order_type") != "MARKET":
            low, high = band
            try:
                value = Decimal(price)
            except InvalidOperation:
                return "limit price is not a number"
            if not low <= value <= high:
                return f"limit price {price} out of band [{_fmt(low)}, {_fmt(high)}]"
        return None

    def _complete_accept(self, order_id: str, reason: str | None) -> None:
        self._pending_accepts.pop(order_id, None)
        order = self.orders.get(order_id)
        if order is None or order.status != OrderStatus.SUBMITTED:
            return  # cancelled, filled or forced meanwhile: the exchange has moved on
        previous = order.status
        if reason is not None:
            order.status = OrderStatus.REJECTED
            order.reject_reason = reason
        else:
            order.status = OrderStatus.OPEN
        self._touch(order)
        self._emit(order, previous)
        if reason is None:
            self._fill_if_market(order)

    def _fill_if_market(self, order: TradeOrder) -> None:
        """A MARKET order fills whole as soon as it is on the book, at :data:`MARKET_PRICE`."""
        if order.order_type in ("MARKET", "QUOTED"):
            self.fill(order.trade_order_id)

    def set_price_band(
        self, low: str | Decimal | None, high: str | Decimal | None, instrument_id: str | None
    ) -> None:
        """Reject LIMIT orders priced outside ``[low, high]`` (None, None: no band)."""
        if low is None and high is None:
            self._price_bands.pop(instrument_id, None)
            return
        lo = Decimal(str(low)) if low is not None else Decimal("-Infinity")
        hi = Decimal(str(high)) if high is not None else Decimal("Infinity")
        if lo > hi:
            raise ValueError("a price band needs low <= high")
        self._price_bands[instrument_id] = (lo, hi)

    def reject_next_submits(self, n: int, reason: str) -> None:
        """Reject the next ``n`` new orders (not repeats of a clientOrderId) with ``reason``."""
        if n < 1:
            raise ValueError("n must be >= 1")
        self._reject_next.extend([reason] * n)

    def close(self) -> None:
        """Cancel every pending exchange timer."""
        for handle in self._pending_cancels.values():
            handle.cancel()
        self._pending_cancels.clear()
        for handle in self._pending_accepts.values():
            handle.cancel()
        self._pending_accepts.clear()

    @property
    def pending_cancels(self) -> int:
        return len(self._pending_cancels)


def _not_cancellable(status: str | None) -> str:
    """The exchange's text for a cancel of an order in ``status`` (final, not cancellable)."""
    if status == OrderStatus.FILLED:
        return "Order is already filled and cannot be cancelled"
    if status == OrderStatus.CANCELLED:
        return "Order is already cancelled and cannot be cancelled"
    return f"Order is {status} and cannot be cancelled"


def _submit_account(token: TokenInfo, body: dict[str, Any]) -> str:
    """The account a submit places on (the token's only one when none is named)."""
    account = body.get("tradingAccountId")
    if account is None and len(token.accounts) == 1:
        account = next(iter(token.accounts))
    if not is_valid_id(account):
        raise ApiFailure(
            400, ERRNO_INVALID_REQUEST, "Invalid request: tradingAccountId is required"
        )
    assert isinstance(account, str)
    if account not in token.accounts:
        raise ApiFailure(403, ERRNO_FORBIDDEN, "Forbidden: no access to this trading account")
    return account


_SUBMIT_FIELDS: tuple[tuple[str, str], ...] = (
    ("instrumentId", "instrument_id"),
    ("orderType", "order_type"),
    ("timeInForce", "time_in_force"),
    ("limitPrice", "limit_price"),
    ("stopPrice", "stop_price"),
    ("clientOrderId", "client_order_id"),
    ("quoteId", "quote_id"),
)


def _submit_fields(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A submit's quantity and the order fields it names, checked; ApiFailure (400) if not."""
    side = body.get("orderSide")
    if side not in ("BUY", "SELL"):
        raise ApiFailure(
            400, ERRNO_INVALID_REQUEST, "Invalid request: orderSide must be BUY or SELL"
        )
    quantity = body.get("quantity")
    try:
        if not isinstance(quantity, str) or Decimal(quantity) <= 0:
            raise InvalidOperation
    except InvalidOperation:
        raise ApiFailure(
            400,
            ERRNO_INVALID_REQUEST,
            "Invalid request: quantity must be a positive decimal string",
        ) from None
    fields: dict[str, Any] = {"order_side": side}
    for wire, name in _SUBMIT_FIELDS:
        value = body.get(wire)
        if value is not None:
            if not isinstance(value, str):
                raise ApiFailure(
                    400, ERRNO_INVALID_REQUEST, f"Invalid request: {wire} must be a string"
                )
            fields[name] = value
    return quantity, fields
