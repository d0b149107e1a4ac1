"""Typed wire models: TradeOrder, the REST envelope, order events, NewOrder, and the call results.

Models follow the wire: camelCase on the wire, snake_case in Python (msgspec
``rename="camel"``). Inbound models ignore unknown fields, and an unknown
order status decodes as its plain string, so a newer server never breaks an
older SDK. Decimal quantities and prices stay the exact strings the server
sent; the ``*_decimal`` accessors give :class:`decimal.Decimal`, never float.
Decoders and encoders are built once, at import.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, Literal

import msgspec

if TYPE_CHECKING:
    from .errors import CadenzaError

__all__ = [
    "TERMINAL_STATUSES",
    "CancelResult",
    "Envelope",
    "Fee",
    "NewOrder",
    "OrderEvent",
    "OrderStatus",
    "Pagination",
    "ReplaceResult",
    "SubmitResult",
    "TradeOrder",
    "is_terminal",
]


class OrderStatus:
    """Order status names as the API spells them.

    Statuses are plain strings on :class:`TradeOrder` so that a status this
    SDK does not know survives decoding; it counts as non-terminal.
    """

    # seed statuses
    OPEN: Final = "OPEN"
    PENDING: Final = "PENDING"
    # live enum
    CREATED: Final = "CREATED"
    SUBMITTED: Final = "SUBMITTED"
    ACCEPTED: Final = "ACCEPTED"
    PARTIALLY_FILLED: Final = "PARTIALLY_FILLED"
    FILLED: Final = "FILLED"
    CANCELLED: Final = "CANCELLED"
    PENDING_CANCEL: Final = "PENDING_CANCEL"
    REPLACED: Final = "REPLACED"
    PENDING_REPLACE: Final = "PENDING_REPLACE"
    REJECTED: Final = "REJECTED"
    EXPIRED: Final = "EXPIRED"
    REVOKED: Final = "REVOKED"
    UNKNOWN: Final = "UNKNOWN"

    @staticmethod
    def is_terminal(status: str) -> bool:
        """True when no later event can change an order in this status."""
        return status in TERMINAL_STATUSES


TERMINAL_STATUSES: Final[frozenset[str]] = frozenset(
    {
        OrderStatus.CANCELLED,
        OrderStatus.FILLED,
        OrderStatus.REJECTED,
        OrderStatus.EXPIRED,
        OrderStatus.REVOKED,
        OrderStatus.REPLACED,
    }
)

is_terminal = OrderStatus.is_terminal


def _decimal(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


# ``gc=False`` on the decoded models: they hold strings, numbers and (an order)
# a list of fees, so no reference cycle can run through them. Every cancel
# decodes an order from its reply and one from its event, and a bulk keeps one
# per result: untracked, none of them counts towards the cyclic collector's
# thresholds (a bulk of 10,000 ran about 20 collections fewer; see
# benchmarks/PROFILE.md).
class Fee(msgspec.Struct, rename="camel", omit_defaults=True, gc=False):
    """One fee charged on an order."""

    asset: str | None = None
    quantity: str | None = None

    @property
    def quantity_decimal(self) -> Decimal | None:
        return _decimal(self.quantity)


class TradeOrder(msgspec.Struct, rename="camel", omit_defaults=True, gc=False):
    """A trade order as the API returns it. Timestamps are Unix milliseconds."""

    trade_order_id: str
    trading_account_id: str
    status: str
    venue: str | None = None
    instrument_id: str | None = None
    base_asset: str | None = None
    quote_asset: str | None = None
    order_side: str | None = None
    order_type: str | None = None
    time_in_force: str | None = None
    limit_price: str | None = None
    stop_price: str | None = None
    quantity: str | None = None
    executed_quantity: str | None = None
    executed_cost: str | None = None
    executed_price: str | None = None
    fees: list[Fee] | None = None
    cancel_reason: str | None = None
    reject_reason: str | None = None
    client_order_id: str | None = None
    created_at: int | None = None
    updated_at: int | None = None
    cancelled_at: int | None = None
    canceled_at: int | None = None

    @property
    def is_terminal(self) -> bool:
        """True when the order is final (CANCELLED, FILLED, REJECTED, ...)."""
        return self.status in TERMINAL_STATUSES

    @property
    def cancellation_time(self) -> int | None:
        """When the order was cancelled (ms), under either spelling the server uses."""
        return self.cancelled_at if self.cancelled_at is not None else self.canceled_at

    @property
    def quantity_decimal(self) -> Decimal | None:
        return _decimal(self.quantity)

    @property
    def executed_quantity_decimal(self) -> Decimal | None:
        return _decimal(self.executed_quantity)

    @property
    def executed_cost_decimal(self) -> Decimal | None:
        return _decimal(self.executed_cost)

    @property
    def executed_price_decimal(self) -> Decimal | None:
        return _decimal(self.executed_price)

    @property
    def limit_price_decimal(self) -> Decimal | None:
        return _decimal(self.limit_price)

    @property
    def stop_price_decimal(self) -> Decimal | None:
        return _decimal(self.stop_price)


class Pagination(msgspec.Struct, rename="camel", omit_defaults=True, gc=False):
    """Paging information on list answers."""

    offset: int | None = None
    limit: int | None = None
    total: int | None = None
    cursor: str | None = None
    has_next: bool | None = None


class ErrorDetails(msgspec.Struct, rename="camel", omit_defaults=True, gc=False):
    """Extra error information newer servers send."""

    code: str | int | None = None
    request_id: str | None = None


class Envelope(msgspec.Struct, rename="camel", omit_defaults=True, gc=False):
    """Every REST answer: ``{"data", "success", "errno", "error"}``.

    ``data`` is kept raw and decoded in a second pass into the expected type.
    """

    data: msgspec.Raw = msgspec.Raw(b"null")
    success: bool = False
    errno: int = 0
    error: str | None = None
    details: ErrorDetails | None = None
    pagination: Pagination | None = None


class EventMetadata(msgspec.Struct, rename="camel", omit_defaults=True, gc=False):
    event_id: str | None = None
    event_type: str | None = None
    timestamp: str | None = None


class StatusChange(msgspec.Struct, rename="camel", omit_defaults=True, gc=False):
    """The status-change event shape: ``{"order", "previousStatus", "newStatus"}``."""

    order: TradeOrder
    previous_status: str | None = None
    new_status: str | None = None


class OrderEvent(msgspec.Struct, rename="camel", omit_defaults=True, gc=False):
    """A publication on ``tradingAccount:{id}``: metadata plus a raw payload."""

    metadata: EventMetadata | None = None
    data: msgspec.Raw = msgspec.Raw(b"null")


class _OrderEventFast(msgspec.Struct, rename="camel", gc=False):
    """The common event shape (``data`` is a TradeOrder) decoded in one pass."""

    metadata: EventMetadata | None = None
    data: TradeOrder | None = None


ORDER_UPDATED: Final = "event.trade_order.updated"

_envelope_decoder: Final = msgspec.json.Decoder(Envelope)
_order_decoder: Final = msgspec.json.Decoder(TradeOrder)
_order_list_decoder: Final = msgspec.json.Decoder(list[TradeOrder])
_event_decoder: Final = msgspec.json.Decoder(OrderEvent)
_fast_event_decoder: Final = msgspec.json.Decoder(_OrderEventFast)
_FAST_PATH_MISSES: Final = (
    msgspec.DecodeError,
    msgspec.ValidationError,
    RecursionError,
    UnicodeDecodeError,
)
_order_or_change_decoder: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])
_status_change_decoder: Final = msgspec.json.Decoder(StatusChange)
encoder: Final = msgspec.json.Encoder()


def _undecodable(exc: RecursionError | UnicodeDecodeError) -> msgspec.DecodeError:
    """msgspec's own error for what it raises outside its hierarchy (depth, bad UTF-8)."""
    if isinstance(exc, RecursionError):
        return msgspec.DecodeError("JSON is nested too deeply")
    return msgspec.DecodeError("invalid UTF-8 in a JSON string")


def decode_envelope(body: bytes) -> Envelope:
    """Decode a REST answer. Raises ``msgspec.DecodeError`` when it is not the envelope."""
    try:
        return _envelope_decoder.decode(body)
    except (RecursionError, UnicodeDecodeError) as exc:
        raise _undecodable(exc) from None


def decode_order(raw: bytes | msgspec.Raw) -> TradeOrder:
    """Decode one TradeOrder. Raises ``msgspec.DecodeError`` (or ``ValidationError``)."""
    try:
        return _order_decoder.decode(raw)
    except (RecursionError, UnicodeDecodeError) as exc:
        raise _undecodable(exc) from None


def decode_order_list(raw: bytes | msgspec.Raw) -> list[TradeOrder]:
    """Decode a list of TradeOrders. Raises ``msgspec.DecodeError``."""
    try:
        return _order_list_decoder.decode(raw)
    except (RecursionError, UnicodeDecodeError) as exc:
        raise _undecodable(exc) from None


def decode_order_event(data: bytes | msgspec.Raw) -> TradeOrder | None:
    """The order carried by a channel publication, or ``None`` for other events.

    Accepts both event shapes of the API: ``data`` is a TradeOrder, or a status
    change ``{"order", "previousStatus", "newStatus"}``; a publication without
    metadata is read by its shape alone. Raises ``msgspec.DecodeError`` (a
    ``ValueError``) when an order-update event carries malformed data: a
    waiter is never resolved from bad data.
    """
    # Fast path: the usual event (data is a TradeOrder) in one pass, no copy.
    # Anything else (a status change, null data, bad input) takes the general
    # path, which decides and raises exactly as it always has.
    try:
        event = _fast_event_decoder.decode(data)
    except _FAST_PATH_MISSES:
        pass
    else:
        order = event.data
        if order is not None:
            meta = event.metadata
            if meta is not None and meta.event_type not in (None, ORDER_UPDATED):
                return None
            return order
    try:
        return _decode_order_event_general(data)
    except (RecursionError, UnicodeDecodeError) as exc:
        raise _undecodable(exc) from None


def _decode_order_event_general(data: bytes | msgspec.Raw) -> TradeOrder | None:
    event = _event_decoder.decode(data)
    meta = event.metadata
    if meta is not None and meta.event_type is not None and meta.event_type != ORDER_UPDATED:
        return None
    payload = bytes(event.data)
    if payload == b"null":
        if meta is None:
            return None
        raise msgspec.ValidationError("order event without data")
    if b'"order"' in payload:
        fields = _order_or_change_decoder.decode(payload)
        if "order" in fields and "tradeOrderId" not in fields:
            change = _status_change_decoder.decode(payload)
            order = change.order
            if change.new_status and change.new_status != order.status:
                order = msgspec.structs.replace(order, status=change.new_status)
            return order
    return _order_decoder.decode(payload)


# ``gc=False``: a result holds only an order and scalars, so it can be in no
# reference cycle; untracked, the thousands a bulk returns cost the cyclic
# collector nothing (see benchmarks/PROFILE.md).
class CancelResult(msgspec.Struct, frozen=True, gc=False):
    """What ``cancel_and_confirm`` proved about an order.

    ``order`` is the final :class:`TradeOrder`; ``cancelled`` is True when its
    final status is CANCELLED (also when it was already cancelled before the
    call); ``source`` names what proved the terminal state (``"ws"`` event,
    ``"http"`` reply, or ``"rest"`` look-up); ``latency`` is seconds from the
    call to confirmation and ``acked_after`` seconds to the cancel's own reply
    (``None`` when the confirmation came first or no reply came).
    """

    order: TradeOrder
    cancelled: bool
    source: Literal["ws", "http", "rest"]
    latency: float
    acked_after: float | None = None

    @property
    def order_id(self) -> str:
        return self.order.trade_order_id

    @property
    def status(self) -> str:
        return self.order.status


class NewOrder(msgspec.Struct, rename="camel", omit_defaults=True, frozen=True):
    """An order to place: the body of ``POST /api/v3/tradeOrder/submit`` (camelCase on the wire).

    Quantities and prices are decimal strings (pass ``str`` or
    :class:`~decimal.Decimal`, never float). ``client_order_id`` is the
    idempotency key of the submit: the same id sent twice places one order.
    ``trading_account_id`` None means the client's default account.
    """

    instrument_id: str
    order_side: str
    order_type: str
    quantity: str
    limit_price: str | None = None
    stop_price: str | None = None
    time_in_force: str | None = None
    client_order_id: str | None = None
    trading_account_id: str | None = None


class SubmitResult(msgspec.Struct, frozen=True, gc=False):  # (as CancelResult)
    """What ``submit_and_confirm`` proved about a new order.

    ``order`` is the :class:`TradeOrder` that proved it; ``accepted`` is True
    once the exchange holds the order (ACCEPTED, OPEN, PARTIALLY_FILLED,
    FILLED; also a final order that traded first) and False when it refused
    or dropped it before accepting it (REJECTED, with ``order.reject_reason``;
    EXPIRED or CANCELLED without a fill). ``source`` names what proved it
    (``"ws"`` event, ``"http"`` reply to the submit, ``"rest"`` look-up);
    ``latency`` is seconds from the call to the proof and ``acked_after``
    seconds to the submit's own reply (``None`` when the proof came first or
    no reply came). ``client_order_id`` is the idempotency key the submit
    was sent with (generated when the caller gave none).
    """

    order: TradeOrder
    accepted: bool
    source: Literal["ws", "http", "rest"]
    latency: float
    acked_after: float | None
    client_order_id: str

    @property
    def order_id(self) -> str:
        return self.order.trade_order_id

    @property
    def status(self) -> str:
        return self.order.status

    @property
    def reject_reason(self) -> str | None:
        return self.order.reject_reason


#: Why ``ReplaceResult.submit`` is what it is.
ReplaceOutcome = Literal["submitted", "old_filled", "old_not_final", "no_time_left"]


class ReplaceResult(msgspec.Struct, frozen=True):
    """What ``replace_and_confirm`` did: the old order proven final, then the new one placed.

    ``cancel`` is the old order's :class:`CancelResult`, or ``None`` when it
    could not be proven final (``cancel_error`` says why: a
    ``ConfirmationTimeout`` with its last known state, a not-found, ...).
    ``submit`` is the new order's :class:`SubmitResult`, or ``None`` when
    nothing was sent. ``outcome`` says which case it is:

    ==================  ==================================================
    ``"submitted"``     the old order is final, the new one was placed and
                        proven (``submit.accepted`` may still be False: a
                        rejection)
    ``"old_filled"``    the old order filled; ``place_if_filled`` was False
    ``"old_not_final"`` the old order was not proven final: nothing placed
    ``"no_time_left"``  the old order is final, but the deadline left no
                        time to place the new one: nothing placed
    ==================  ==================================================
    """

    cancel: CancelResult | None
    submit: SubmitResult | None
    outcome: ReplaceOutcome
    cancel_error: CadenzaError | None = None

    @property
    def replaced(self) -> bool:
        """True when the new order was placed and accepted by the exchange."""
        return self.submit is not None and self.submit.accepted


def to_builtins(obj: Any) -> Any:
    """Wire-shaped builtins (camelCase keys) for JSON output."""
    return msgspec.to_builtins(obj)
