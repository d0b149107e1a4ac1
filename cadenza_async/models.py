"""Typed wire models: TradeOrder, the REST envelope, order events, NewOrder, and the call results.

Models follow the wire: camelCase on the wire, snake_case in Python (msgspec
``rename="camel"``). Inbound models ignore unknown fields, and an unknown
order status decodes as its plain string, so a newer server never breaks an
older SDK. Decimal quantities and prices stay the exact strings the server
sent; the ``*_decimal`` accessors give :class:`decimal.Decimal`, never float.
Decoders and encoders are built once, at import.

This module is the one place the wire is read. It reads both generations of
the API's payloads (``docs/guides/wire.md``; ``spec/cadenza-api.md``, "two
wire generations"):

* **Times are integer Unix milliseconds** on every model, whatever the wire
  carried: an integer (the REST form), an RFC 3339 / ISO 8601 string with or
  without a fraction, ``Z`` or an offset (the RPC and event form; a string
  without an offset is UTC), or only the ``*DateTime`` companion of a field.
  ``cancelled_at`` and ``canceled_at`` keep the spelling the server used
  (:attr:`TradeOrder.cancellation_time` reads either).
* A ``status`` may be null on an event: it is no terminal state.
* Channel publications come as ``{metadata, data}``, as the status-change
  shape, as ``{data}`` without metadata, or as the bare payload
  (:func:`decode_channel_event`).
* RPC results are ``{"data": ..., "error": ...}`` with either null
  (:func:`decode_rpc_result`).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

import msgspec

if TYPE_CHECKING:
    from .errors import CadenzaError

__all__ = [
    "TERMINAL_STATUSES",
    "AccountEvent",
    "CancelResult",
    "Envelope",
    "Fee",
    "NewOrder",
    "OrderEvent",
    "OrderStatus",
    "Pagination",
    "ReplaceResult",
    "RpcError",
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
    def is_terminal(status: str | None) -> bool:
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


if TYPE_CHECKING:
    _Ms = int
else:
    # A time on the wire: integer ms, or an RFC 3339 string msgspec parses (in C) into
    # a datetime; the models' __post_init__ leaves integer ms, so their fields are ints.
    _Ms = int | datetime

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_MS: Final = timedelta(milliseconds=1)


def datetime_to_ms(value: datetime) -> int:
    """Unix milliseconds of ``value`` (a naive datetime is taken as UTC), exactly."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return (value - _EPOCH) // _ONE_MS


def parse_time(value: object) -> int | None:
    """Unix milliseconds from a wire time: integer ms, a digit string, RFC 3339 text or a datetime.

    ``None`` for anything else (a companion field the SDK cannot read is no
    reason to refuse the payload that carries it).
    """
    if value.__class__ is int:
        return value
    if isinstance(value, datetime):
        return datetime_to_ms(value)
    if isinstance(value, str):
        if value.isdigit():
            return int(value)
        try:
            return datetime_to_ms(msgspec.convert(value, datetime))
        except msgspec.ValidationError:
            return None
    return None


# ``gc=False`` on the decoded models: they hold strings, numbers and (an order)
# a list of fees, so no reference cycle can run through them. Every cancel
# decodes an order from its reply and one from its event, and a bulk keeps one
# per result: untracked, none of them counts towards the cyclic collector's
# thresholds (a bulk of 10,000 ran about 20 collections fewer; see
# benchmarks/PROFILE.md).
class Fee(msgspec.Struct, rename="camel", omit_defaults=True, gc=False):
    """One fee charged on an order (REST: ``security``/``asset``/``venue``; RPC: ``asset``)."""

    asset: str | None = None
    quantity: str | None = None
    security: str | None = None
    venue: str | None = None
    symbol: str | None = None

    @property
    def quantity_decimal(self) -> Decimal | None:
        return _decimal(self.quantity)


class TradeOrder(msgspec.Struct, rename="camel", omit_defaults=True, gc=False):
    """A trade order as the API shows it (REST reply, event or RPC result).

    Every time is integer Unix milliseconds (see the module docstring for the
    forms read). ``status`` is ``None`` when an event carried a null status
    (never terminal). ``trading_account_id`` is filled from the channel or
    the request when a payload omits it (the RPC models make it optional).
    The ``*_date_time`` fields are the ISO 8601 companions the current REST
    models add, as sent.
    """

    trade_order_id: str
    trading_account_id: str = ""
    status: str | None = None
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
    created_at: _Ms | None = None
    updated_at: _Ms | None = None
    cancelled_at: _Ms | None = None
    canceled_at: _Ms | None = None
    expire_at: _Ms | None = None
    last_execution_at: _Ms | None = None
    created_at_date_time: str | None = None
    updated_at_date_time: str | None = None
    canceled_at_date_time: str | None = None
    expire_at_date_time: str | None = None
    original_client_order_id: str | None = None
    external_order_id: str | None = None
    idempotency_key: str | None = None
    quote_id: str | None = None
    external_symbol: str | None = None
    quantity_type: str | None = None
    quote_currency_quantity: str | None = None
    executed_percentage: str | None = None

    def __post_init__(self) -> None:
        # Times to integer ms. The usual REST and legacy payloads carry ints and no
        # companion without its field: one check each, nothing converted.
        # A hot path, allowed above CC 15 (tests/test_complexity.py): every decoded order
        # runs this, so it is written out field by field; the usual REST and legacy
        # payloads carry ints and no companion without its field, and pay one or two
        # comparisons a field (a helper called per field cost 0.3 us an event).
        value = self.updated_at
        if value is None:
            if self.updated_at_date_time is not None:
                self.updated_at = parse_time(self.updated_at_date_time)
        elif value.__class__ is not int:
            self.updated_at = datetime_to_ms(value)  # type: ignore[arg-type]
        value = self.created_at
        if value is None:
            if self.created_at_date_time is not None:
                self.created_at = parse_time(self.created_at_date_time)
        elif value.__class__ is not int:
            self.created_at = datetime_to_ms(value)  # type: ignore[arg-type]
        value = self.canceled_at
        if value is None:
            if self.canceled_at_date_time is not None:
                self.canceled_at = parse_time(self.canceled_at_date_time)
        elif value.__class__ is not int:
            self.canceled_at = datetime_to_ms(value)  # type: ignore[arg-type]
        value = self.expire_at
        if value is None:
            if self.expire_at_date_time is not None:
                self.expire_at = parse_time(self.expire_at_date_time)
        elif value.__class__ is not int:
            self.expire_at = datetime_to_ms(value)  # type: ignore[arg-type]
        value = self.cancelled_at
        if value is not None and value.__class__ is not int:
            self.cancelled_at = datetime_to_ms(value)  # type: ignore[arg-type]
        value = self.last_execution_at
        if value is not None and value.__class__ is not int:
            self.last_execution_at = datetime_to_ms(value)  # type: ignore[arg-type]

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
    timestamp: str | int | None = None


class StatusChange(msgspec.Struct, rename="camel", omit_defaults=True, gc=False):
    """The status-change event shape: ``{"order", "previousStatus", "newStatus"}``."""

    order: TradeOrder
    previous_status: str | None = None
    new_status: str | None = None


class OrderEvent(msgspec.Struct, rename="camel", omit_defaults=True, gc=False):
    """A publication on ``tradingAccount:{id}``: metadata plus a raw payload."""

    metadata: EventMetadata | None = None
    data: msgspec.Raw = msgspec.Raw(b"null")


class AccountEvent(msgspec.Struct, frozen=True, gc=False):
    """A publication on ``tradingAccount:{id}`` that is not an order update.

    ``event_type`` is ``metadata.eventType`` when the publication had one;
    ``kind`` names the payload: the event type's resource (``"portfolio"``,
    ``"trading_account"``, ...) or, without metadata, what its shape shows
    (``"portfolio"``, ``"trading_account"``, else ``"unknown"``). ``data`` is
    the payload itself, undecoded.
    """

    event_type: str | None
    kind: str
    data: msgspec.Raw


class _OrderEventFast(msgspec.Struct, rename="camel", gc=False):
    """The common event shapes (``data`` is an order) decoded in one pass."""

    metadata: EventMetadata | None = None
    data: TradeOrder | None = None


ORDER_UPDATED: Final = "event.trade_order.updated"
#: Event types of order updates: ``event.trade_order.updated`` and its siblings.
ORDER_EVENT_PREFIX: Final = "event.trade_order."

_envelope_decoder: Final = msgspec.json.Decoder(Envelope)
_order_decoder: Final = msgspec.json.Decoder(TradeOrder)
_order_list_decoder: Final = msgspec.json.Decoder(list[TradeOrder])
_fast_event_decoder: Final = msgspec.json.Decoder(_OrderEventFast)
_FAST_PATH_MISSES: Final = (
    msgspec.DecodeError,
    msgspec.ValidationError,
    RecursionError,
    UnicodeDecodeError,
)
_object_decoder: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])
_metadata_decoder: Final = msgspec.json.Decoder(EventMetadata)
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


def decode_channel_event(data: bytes | msgspec.Raw) -> TradeOrder | AccountEvent:
    """What a publication on ``tradingAccount:{id}`` carries: an order update, or another event.

    Every documented form is read: ``{metadata, data}`` (the legacy envelope),
    the status-change shape ``{"order", "previousStatus", "newStatus"}`` (in
    an envelope or bare), ``{data}`` without metadata (the current models) and
    a bare payload. A publication is an order update by its ``eventType``
    when it has one (``event.trade_order.*``), else by its payload's shape (a
    ``tradeOrderId``, or the status-change shape). Anything else is an
    :class:`AccountEvent` (a portfolio, a trading account, ...), never an
    error. Raises ``msgspec.DecodeError`` (a ``ValueError``; ``ValidationError``
    is one) when the data is not JSON or an order update does not decode: a
    waiter is never resolved from bad data. The error's text names the field
    and the type it saw, never a value.
    """
    # Fast path: the usual event (data is an order, with or without metadata) in one
    # pass, no copy. Anything else (a status change, a bare payload, another event,
    # bad input) takes the general path, which decides and raises on its own.
    try:
        event = _fast_event_decoder.decode(data)
    except _FAST_PATH_MISSES:
        pass
    else:
        order = event.data
        if order is not None:
            meta = event.metadata
            if meta is None:
                return order
            kind = meta.event_type
            if kind is None or kind.startswith(ORDER_EVENT_PREFIX):
                return order
    try:
        return _decode_channel_event_general(data)
    except (RecursionError, UnicodeDecodeError) as exc:
        raise _undecodable(exc) from None


def decode_order_event(data: bytes | msgspec.Raw) -> TradeOrder | None:
    """The order a channel publication carries, or ``None`` for any other event.

    :func:`decode_channel_event` without the other events; raises as it does.
    """
    event = decode_channel_event(data)
    return event if isinstance(event, TradeOrder) else None


_NULL: Final = msgspec.Raw(b"null")
_T = TypeVar("_T")


def _decode_channel_event_general(data: bytes | msgspec.Raw) -> TradeOrder | AccountEvent:
    raw = data if isinstance(data, msgspec.Raw) else msgspec.Raw(data)
    try:
        top = _object_decoder.decode(raw)
    except msgspec.ValidationError:  # JSON, but not an object (an array, a string, null)
        return AccountEvent(None, "unknown", raw)
    meta, payload, form = _unwrap(top, raw)
    event_type = meta.event_type if meta is not None else None
    if event_type is not None and not event_type.startswith(ORDER_EVENT_PREFIX):
        return AccountEvent(event_type, _kind_of_type(event_type), payload)
    try:
        fields = _object_decoder.decode(payload)
    except msgspec.ValidationError:  # null, a list, ...: no order in it
        if event_type is None:
            return AccountEvent(None, "unknown", payload)
        raise msgspec.ValidationError(f"order event ({form}): data is not an object") from None
    if "order" in fields and "tradeOrderId" not in fields:
        change = _decode_part(_status_change_decoder, payload, form)
        order = change.order
        if change.new_status and change.new_status != order.status:
            order = msgspec.structs.replace(order, status=change.new_status)
        return order
    if "tradeOrderId" in fields or event_type is not None:
        return _decode_part(_order_decoder, payload, form)
    return AccountEvent(None, _kind_of_shape(fields), payload)


def _unwrap(
    top: dict[str, msgspec.Raw], raw: msgspec.Raw
) -> tuple[EventMetadata | None, msgspec.Raw, str]:
    """A publication's metadata, its payload and the name of its form (for error texts)."""
    if "tradeOrderId" in top or "order" in top or not ("metadata" in top or "data" in top):
        return None, raw, "bare"
    meta_raw = top.get("metadata")
    meta = None if meta_raw is None else _decode_part(_metadata_decoder, meta_raw, "metadata")
    form = "{metadata, data}" if "metadata" in top else "{data}"
    return meta, top.get("data", _NULL), form


def _decode_part(decoder: msgspec.json.Decoder[_T], raw: msgspec.Raw, where: str) -> _T:
    """``decoder.decode(raw)``; a ValidationError's text says which part of the event failed."""
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise msgspec.ValidationError(f"{where}: {exc}") from None


def _kind_of_type(event_type: str) -> str:
    """``event.portfolio.updated`` -> ``"portfolio"`` (the resource between category and action)."""
    parts = event_type.split(".")
    return ".".join(parts[1:-1]) if len(parts) >= 3 else "unknown"


#: Keys only a portfolio payload has, and keys of a trading account's (without an order id).
_PORTFOLIO_KEYS: Final = frozenset({"balances", "positions", "summary", "updateMode"})
_ACCOUNT_KEYS: Final = frozenset(
    {"nickname", "accountType", "externalAccountId", "externalTradingAccountId", "credentials"}
)


def _kind_of_shape(fields: dict[str, msgspec.Raw]) -> str:
    if not _PORTFOLIO_KEYS.isdisjoint(fields):
        return "portfolio"
    if not _ACCOUNT_KEYS.isdisjoint(fields):
        return "trading_account"
    return "unknown"


if TYPE_CHECKING:
    _Code = int
else:
    _Code = int | str  # (a digit string is read as its integer by __post_init__)


class RpcError(msgspec.Struct, rename="camel", omit_defaults=True, gc=False):
    """An RPC's ``error`` (``RpcError``): ``code`` (an integer, "AABBB"), ``message``, ``temporary``.

    ``status`` is the HTTP status of the same error when the server says it.
    A code sent as a digit string is read as its integer.
    """

    code: _Code = 0
    message: str = ""
    temporary: bool | None = None
    status: int = 0

    def __post_init__(self) -> None:
        code: object = self.code
        if isinstance(code, str):
            text = code.strip()
            self.code = int(text) if text.lstrip("-").isdigit() else 0


class _RpcResult(msgspec.Struct, omit_defaults=True, gc=False):
    data: TradeOrder | None = None
    error: RpcError | None = None


_rpc_result_decoder: Final = msgspec.json.Decoder(_RpcResult)


def decode_rpc_result(raw: bytes | msgspec.Raw) -> tuple[TradeOrder | None, RpcError | None]:
    """An order RPC's result ``{"data": order, "error": RpcError}``, either null or absent.

    Raises ``msgspec.DecodeError`` (or ``ValidationError``) when it is not that shape.
    """
    try:
        result = _rpc_result_decoder.decode(raw)
    except (RecursionError, UnicodeDecodeError) as exc:
        raise _undecodable(exc) from None
    error = result.error
    if error is not None and not error.code and not error.message:
        error = None  # {"error": {}} or a zero code: no error (the current models' "non-zero")
    return result.data, error


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
        """The proven order's status (a proof always has one)."""
        return self.order.status or OrderStatus.UNKNOWN


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
    #: An RFQ quote this order executes (``orderType`` QUOTED; see ``execute_quote``).
    quote_id: str | None = None


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
        """The proven order's status (a proof always has one)."""
        return self.order.status or OrderStatus.UNKNOWN

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


#: The two generations of the API's wire (``spec/cadenza-api.md``).
WireGeneration = Literal["current", "legacy"]


def wire_of_event(data: bytes | msgspec.Raw) -> WireGeneration | None:
    """Which generation a publication on ``tradingAccount:{id}`` is written in; None: cannot tell.

    ``{metadata, data}`` (or the status-change shape) is the legacy
    envelope; ``{data}`` without metadata, or RFC 3339 times, the current
    models. Raises nothing: an undecodable publication says nothing.
    """
    try:
        top = _object_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, UnicodeDecodeError):
        return None
    if "metadata" in top:
        return "legacy"
    payload = top.get("data")
    if payload is None:
        return None
    try:
        fields = _object_decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, UnicodeDecodeError):
        return None
    if "order" in fields:
        return "legacy"
    updated = fields.get("updatedAt") or fields.get("createdAt")
    if updated is None:
        return "current"  # {data} without metadata
    return "current" if bytes(updated).startswith(b'"') else "legacy"


def wire_of_rpc_result(raw: bytes | msgspec.Raw) -> WireGeneration | None:
    """Which generation an order RPC's result is written in: ``{data, error}`` both present is
    the current models', one of them alone the legacy form; None: cannot tell."""
    try:
        top = _object_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, UnicodeDecodeError):
        return None
    if "data" in top and "error" in top:
        return "current"
    if "data" in top or "error" in top:
        return "legacy"
    return None
