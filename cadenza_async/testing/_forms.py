"""How the simulated exchange writes orders, events and RPC results in each wire generation.

Two generations (``spec/cadenza-api.md``, "two wire generations"):

==================  ==========================================  ==========================================
what                ``"legacy"``                                ``"current"`` (the default)
==================  ==========================================  ==========================================
REST order          integer ms times, ``cancelledAt``           integer ms times plus the ``*DateTime``
                                                                companions (ISO 8601), ``canceledAt``,
                                                                the fields the current model requires
REST errno          the seed's style (``-111001``)              "AABBB" (``11001``)
REST cancel body    ``tradeOrderId`` (``tradingAccountId``       ``tradeOrderId`` and ``tradingAccountId``,
                    optional)                                   both required (400 without)
order event         ``{"metadata": {...eventType...},           ``{"data": RpcTradeOrder}``: no metadata,
                    "data": order}`` or the status-change       RFC 3339 times
                    shape
RPC result          ``{"data": order}`` / ``{"error": {...}}``  ``{"data": RpcTradeOrder, "error": null}``
                                                                / ``{"data": null, "error": RpcError}``
RPC error           ``code`` (errno), ``message``, ``status``   ``code`` ("AABBB"), ``message``,
                    (HTTP), ``temporary``                       ``temporary``
RPC submit params   the REST body, flat                         ``{"tradeOrder": {...}, "tradingAccountId",
                                                                "idempotencyKey"}``; flat is refused
==================  ==========================================  ==========================================

RFC 3339 times are written as Go's ``time.RFC3339Nano`` writes them (the
server is Go): UTC with ``Z``, the fraction's trailing zeros trimmed and no
fraction at all on a whole second, so clients meet every spelling.

The order itself is kept as the SDK's :class:`~cadenza_async.models.TradeOrder`
(its camelCase names); this module decides the form each time it is written.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any, Final, Literal

import msgspec

from ..models import TradeOrder
from ._engine import ERRNO_INVALID_REQUEST, ApiFailure

__all__ = ["WIRE_FORMS", "WireForm", "WireName", "rfc3339"]

WireName = Literal["current", "legacy"]
WIRE_FORMS: Final = ("current", "legacy")

_encode = msgspec.json.Encoder().encode
_EPOCH: Final = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)

#: The time fields of an order and their ``*DateTime`` companions in the current REST model.
_REST_TIMES: Final = (
    ("createdAt", "createdAtDateTime"),
    ("updatedAt", "updatedAtDateTime"),
    ("expireAt", "expireAtDateTime"),
    ("canceledAt", "canceledAtDateTime"),
)
_RPC_TIMES: Final = ("createdAt", "updatedAt", "expireAt", "lastExecutionAt", "canceledAt")


def rfc3339(ms: int) -> str:
    """``ms`` (Unix milliseconds) as Go's RFC3339Nano writes it in UTC."""
    moment = _EPOCH + datetime.timedelta(milliseconds=ms)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{moment.microsecond // 1000:03d}".rstrip("0")
    return f"{text}.{fraction}Z" if fraction else f"{text}Z"


def _iso_now() -> str:
    return rfc3339(int(datetime.datetime.now(datetime.timezone.utc).timestamp() * 1000))


def _legacy_dict(order: TradeOrder) -> dict[str, Any]:
    return msgspec.to_builtins(order)  # type: ignore[no-any-return]


def _current_rest_dict(order: TradeOrder) -> dict[str, Any]:
    """The order as the current REST model writes it (``TradeOrder``, 3.5.4)."""
    fields = _legacy_dict(order)
    cancelled = fields.pop("cancelledAt", None)
    if cancelled is not None and "canceledAt" not in fields:
        fields["canceledAt"] = cancelled
    for name, companion in _REST_TIMES:
        value = fields.get(name)
        if isinstance(value, int):
            fields[companion] = rfc3339(value)
    # Fields the current model requires, with the values an exchange would show.
    fields.setdefault("orderQuantityType", "BASE")
    fields.setdefault("executedPrice", "0")
    fields.setdefault("executedQuantity", "0")
    fields.setdefault("executedCost", "0")
    fields.setdefault("fees", [])
    return fields


def _current_rpc_dict(order: TradeOrder) -> dict[str, Any]:
    """The order as the current RPC and event model writes it (``RpcTradeOrder``)."""
    fields = _legacy_dict(order)
    cancelled = fields.pop("cancelledAt", None)
    if cancelled is not None and "canceledAt" not in fields:
        fields["canceledAt"] = cancelled
    for name in _RPC_TIMES:
        value = fields.get(name)
        if isinstance(value, int):
            fields[name] = rfc3339(value)
    fields.setdefault("quantityType", "BASE")
    if "clientOrderId" in fields:
        fields.setdefault("idempotencyKey", fields["clientOrderId"])
    return fields


class WireForm:
    """One generation of the wire, as the simulator writes it (and reads the RPC submit)."""

    __slots__ = ("event_shape", "name")

    def __init__(self, name: str = "current", event_shape: str = "order") -> None:
        if name not in WIRE_FORMS:
            raise ValueError(f"wire must be one of {WIRE_FORMS}, not {name!r}")
        if event_shape not in ("order", "status_change"):
            raise ValueError("event_shape must be 'order' or 'status_change'")
        if event_shape == "status_change" and name != "legacy":
            raise ValueError("the status-change event shape is a legacy form: pass wire='legacy'")
        self.name: WireName = "current" if name == "current" else "legacy"
        self.event_shape = event_shape

    @property
    def current(self) -> bool:
        return self.name == "current"

    # ---- REST -----------------------------------------------------------------------

    def rest_order(self, order: TradeOrder) -> bytes:
        """One order in a REST answer's ``data``."""
        if self.current:
            return _encode(_current_rest_dict(order))
        return _encode(order)

    def rest_orders(self, orders: list[TradeOrder]) -> bytes:
        if self.current:
            return _encode([_current_rest_dict(order) for order in orders])
        return _encode(orders)

    def errno(self, errno: int) -> int:
        """An error's ``errno`` in this generation's style."""
        return abs(errno) % 100_000 if self.current else errno

    def cancel_account(self, body: dict[str, Any]) -> object | None:
        """The REST cancel body's ``tradingAccountId``; the current API requires it (400)."""
        account = body.get("tradingAccountId")
        if account is None and self.current:
            raise ApiFailure(
                400,
                ERRNO_INVALID_REQUEST,
                "Invalid request: tradeOrderId and tradingAccountId are required",
            )
        return account

    # ---- the WebSocket --------------------------------------------------------------

    def event(self, order: TradeOrder, previous: str | None) -> bytes:
        """The publication of one change of ``order`` on its account's channel."""
        if self.current:
            return b'{"data":' + _encode(_current_rpc_dict(order)) + b"}"
        order_bytes = _encode(order)
        if self.event_shape == "status_change":
            body = (
                b'{"order":'
                + order_bytes
                + (b',"previousStatus":' + _encode(previous) if previous else b"")
                + b',"newStatus":'
                + _encode(order.status)
                + b"}"
            )
        else:
            body = order_bytes
        return (
            b'{"metadata":{"eventId":"'
            + uuid.uuid4().hex.encode()
            + b'","eventType":"event.trade_order.updated","timestamp":"'
            + _iso_now().encode()
            + b'"},"data":'
            + body
            + b"}"
        )

    def rpc_order(self, order: TradeOrder) -> bytes:
        """An order RPC's result (the ``data`` of the Centrifugo reply)."""
        if self.current:
            return b'{"data":' + _encode(_current_rpc_dict(order)) + b',"error":null}'
        return b'{"data":' + _encode(order) + b"}"

    def rpc_error(self, failure: ApiFailure) -> bytes:
        """An order RPC's error result."""
        error: dict[str, Any] = {"code": self.errno(failure.errno), "message": failure.message}
        if not self.current:
            error["status"] = failure.status
        if failure.status >= 500:
            error["temporary"] = True
        if self.current:
            return b'{"data":null,"error":' + _encode(error) + b"}"
        return _encode({"error": error})

    def submit_body(self, params: object) -> dict[str, Any]:
        """The RPC submit's params as the REST body the order engine takes; ApiFailure (400) if not.

        Current: ``{"tradeOrder": {...}, "tradingAccountId", "idempotencyKey"?}``
        (flat params are refused, as the official schema would); the
        idempotency key stands in for a missing ``clientOrderId``. Legacy: flat.
        """
        if not isinstance(params, dict):
            raise ApiFailure(400, ERRNO_INVALID_REQUEST, "Invalid request")
        if not self.current:
            return params
        nested = params.get("tradeOrder")
        account = params.get("tradingAccountId")
        if not isinstance(nested, dict) or account is None:
            raise ApiFailure(
                400,
                ERRNO_INVALID_REQUEST,
                "Invalid request: tradeOrder and tradingAccountId are required",
            )
        body = dict(nested)
        body["tradingAccountId"] = account
        key = params.get("idempotencyKey")
        if body.get("clientOrderId") is None and key is not None:
            body["clientOrderId"] = key
        return body
