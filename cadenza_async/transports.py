"""The two ways a cancel or a submit goes out: an HTTP request or a Centrifugo RPC, behind one interface.

Each transport sends one cancel (or one submit), bounded by the caller's
deadline (event-loop time), and returns the order from its reply or raises
the SDK error of the same meaning, translated here, at its own boundary,
through the one table in :mod:`cadenza_async.errors`. None keeps state about
orders: the orchestration (:mod:`cadenza_async.cancels`,
:mod:`cadenza_async.placing`) picks one per send.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, Protocol

import msgspec

from .errors import TransportError, UnexpectedResponseError, error_for_rpc
from .models import NewOrder, TradeOrder, decode_rpc_result, encoder

if TYPE_CHECKING:
    from ._ratelimit import RateGate
    from .engine import ListOrders
    from .http import HttpApi, OrderPage
    from .stream import OrderStream

__all__ = [
    "RPC_CANCEL",
    "RPC_SUBMIT",
    "CancelTransport",
    "HttpCancel",
    "HttpSubmit",
    "RpcCancel",
    "RpcSubmit",
    "SubmitTransport",
    "http_list_orders",
    "http_look_up",
    "rpc_submit_params",
]

RPC_CANCEL: Final = "command.trade_order.cancel"
RPC_SUBMIT: Final = "command.trade_order.submit"


class CancelTransport(Protocol):
    """Sends one cancel; awaiting it gives the order as the reply shows it."""

    def cancel(
        self, order_id: str, account_id: str, /, *, deadline: float
    ) -> Awaitable[TradeOrder]:
        """Raise the SDK's errors (``ApiError`` subclasses, ``TransportError``)."""
        ...


class HttpCancel:
    """``POST /api/v3/tradeOrder/cancel``: paced, retried and translated by :class:`HttpApi`."""

    __slots__ = ("cancel",)

    def __init__(self, http: HttpApi) -> None:
        # The request itself (HttpApi.cancel_order), not a call around it: every
        # cancel runs through here.
        self.cancel = http.cancel_order


def http_look_up(http: HttpApi) -> Callable[[str, str | None, float | None], Awaitable[TradeOrder]]:
    """The REST look-up of one order, in the shape the orchestration takes."""

    async def look_up(order_id: str, account_id: str | None, deadline: float | None) -> TradeOrder:
        return await http.get_order(order_id, trading_account_id=account_id, deadline=deadline)

    return look_up


def http_list_orders(http: HttpApi) -> ListOrders:
    """One page of an account's orders by REST, in the shape the proof engine lists with.

    ``since`` (Unix ms): orders created since then, newest first; None: all of them.
    """

    async def list_orders(
        account_id: str,
        since: int | None,
        limit: int,
        offset: int | None,
        cursor: str | None,
        deadline: float,
    ) -> OrderPage:
        return await http.list_orders(
            trading_account_id=account_id,
            start_time=since,
            ascending=None if since is None else False,
            limit=limit,
            offset=offset,
            cursor=cursor,
            deadline=deadline,
        )

    return list_orders


def _order_from_rpc(raw: msgspec.Raw, what: str, account_id: str) -> TradeOrder:
    """The order of an RPC result (either generation), or the SDK error its ``error`` means."""
    try:
        order, error = decode_rpc_result(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise UnexpectedResponseError(f"malformed reply to the {what} RPC") from None
    if error is not None:
        raise error_for_rpc(
            error.code, error.message, status=error.status, temporary=bool(error.temporary)
        )
    if order is None:
        raise UnexpectedResponseError(f"the {what} RPC replied without an order")
    if not order.trading_account_id:
        order.trading_account_id = account_id  # (optional in the current RPC models)
    return order


class _RpcSubmitParams(msgspec.Struct, rename="camel", omit_defaults=True):
    """``command.trade_order.submit``'s params in the current models (``RpcSubmitTradeOrderParams``)."""

    trade_order: NewOrder
    trading_account_id: str
    idempotency_key: str | None = None


def rpc_submit_params(order: NewOrder, *, nested: bool = True) -> bytes:
    """The submit RPC's params for ``order`` (its ``trading_account_id`` set).

    ``nested`` (the current models): ``{"tradeOrder": {...}, "tradingAccountId",
    "idempotencyKey"}``, the idempotency key being the ``clientOrderId``;
    otherwise (the legacy servers) the REST body, flat.
    """
    account = order.trading_account_id
    if account is None:
        raise ValueError("an RPC submit needs the order's trading account")
    if not nested:
        return encoder.encode(order)
    inner = msgspec.structs.replace(order, trading_account_id=None)
    return encoder.encode(_RpcSubmitParams(inner, account, order.client_order_id))


class RpcCancel:
    """The cancel as a Centrifugo RPC on the open WebSocket; needs the order's account."""

    __slots__ = ("_gate", "_request_timeout", "_stream")

    def __init__(self, stream: OrderStream, gate: RateGate, request_timeout: float) -> None:
        self._stream = stream
        self._gate = gate
        self._request_timeout = request_timeout

    async def cancel(self, order_id: str, account_id: str, /, *, deadline: float) -> TradeOrder:
        loop = asyncio.get_running_loop()
        await self._gate.acquire(deadline - loop.time())
        timeout = min(self._request_timeout, deadline - loop.time())
        if timeout <= 0:
            raise TransportError(
                "the deadline passed before the cancel could be sent", maybe_sent=False
            )
        payload = encoder.encode({"tradingAccountId": account_id, "tradeOrderId": order_id})
        raw = await self._stream.rpc(RPC_CANCEL, payload, timeout=timeout)
        return _order_from_rpc(raw, "cancel", account_id)


class SubmitTransport(Protocol):
    """Sends one submit (``order.trading_account_id`` set) and returns the order its reply shows."""

    async def submit(self, order: NewOrder, deadline: float) -> TradeOrder:
        """Raise the SDK's errors (``ApiError`` subclasses, ``TransportError``); never retried."""
        ...


class HttpSubmit:
    """``POST /api/v3/tradeOrder/submit``: translated by :class:`HttpApi`, never retried there."""

    __slots__ = ("_http",)

    def __init__(self, http: HttpApi) -> None:
        self._http = http

    async def submit(self, order: NewOrder, deadline: float) -> TradeOrder:
        account = order.trading_account_id
        if account is None:
            raise ValueError("a submit needs the order's trading account")
        return await self._http.submit_order(
            trading_account_id=account,
            instrument_id=order.instrument_id,
            order_side=order.order_side,
            order_type=order.order_type,
            quantity=order.quantity,
            limit_price=order.limit_price,
            stop_price=order.stop_price,
            time_in_force=order.time_in_force,
            client_order_id=order.client_order_id,
            deadline=deadline,
            quote_id=order.quote_id,
        )


class RpcSubmit:
    """The submit as a Centrifugo RPC (``command.trade_order.submit``) on the open WebSocket.

    Its params nest the order under ``tradeOrder`` (the current models;
    ``nested=False``: the REST body, flat, for legacy servers); its reply is
    read like the cancel RPC's.
    """

    __slots__ = ("_gate", "_nested", "_request_timeout", "_stream")

    def __init__(
        self, stream: OrderStream, gate: RateGate, request_timeout: float, *, nested: bool = True
    ) -> None:
        self._stream = stream
        self._gate = gate
        self._request_timeout = request_timeout
        self._nested = nested

    async def submit(self, order: NewOrder, deadline: float) -> TradeOrder:
        if order.trading_account_id is None:
            raise ValueError("an RPC submit needs the order's trading account")
        loop = asyncio.get_running_loop()
        if self._gate.paused_until > 0.0:
            await self._gate.wait_unpaused(deadline - loop.time())
        timeout = min(self._request_timeout, deadline - loop.time())
        if timeout <= 0:
            raise TransportError(
                "the deadline passed before the submit could be sent", maybe_sent=False
            )
        params = rpc_submit_params(order, nested=self._nested)
        raw = await self._stream.rpc(RPC_SUBMIT, params, timeout=timeout)
        return _order_from_rpc(raw, "submit", order.trading_account_id)
