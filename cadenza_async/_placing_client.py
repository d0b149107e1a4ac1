"""The placing methods of :class:`~cadenza_async.CadenzaClient`: submit, with proof, many, replace.

A mixin: the client owns the placer, the canceller, the HTTP layer, the
market's cache and the stream; these methods check their input whole
before anything is sent (:mod:`cadenza_async._validate`), then hand the
order to the proof engine's submit policy (:mod:`cadenza_async.placing`).
Every order field is a :class:`~cadenza_async.models.NewOrder` from the
first check on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import msgspec

from ._validate import check_bool, check_order_id, check_timeout
from .models import NewOrder, ReplaceResult, SubmitResult, TradeOrder
from .placing import SubmitOutcome, new_order

if TYPE_CHECKING:
    from .cancels import Canceller
    from .config import ClientConfig
    from .http import HttpApi
    from .market._client import Market
    from .placing import Placer

__all__ = ["PlacingMethods"]


class PlacingMethods:
    """Placing methods of :class:`~cadenza_async.CadenzaClient` (see ``docs/guides/placing.md``)."""

    config: ClientConfig
    _placer: Placer
    _canceller: Canceller
    _http: HttpApi
    _market: Market

    def _check_open(self) -> None:  # provided by the client
        raise NotImplementedError

    def _start_stream(self) -> Any:  # provided by the client
        raise NotImplementedError

    async def submit_order(
        self,
        *,
        instrument_id: str,
        order_side: str,
        order_type: str,
        quantity: str | Decimal,
        limit_price: str | Decimal | None = None,
        stop_price: str | Decimal | None = None,
        time_in_force: str | None = None,
        client_order_id: str | None = None,
        trading_account_id: str | None = None,
    ) -> TradeOrder:
        """Place an order on ``trading_account_id`` (default: the configured account).

        Never retried on transport errors or 5xx: a
        :class:`~cadenza_async.errors.TransportError` means the order may or
        may not exist. Raises ``ValueError`` when no account is known.
        """
        self._check_open()
        order = new_order(
            instrument_id=instrument_id,
            order_side=order_side,
            order_type=order_type,
            quantity=quantity,
            limit_price=limit_price,
            stop_price=stop_price,
            time_in_force=time_in_force,
            client_order_id=client_order_id,
            trading_account_id=trading_account_id,
        )
        account = order.trading_account_id or self.config.trading_account_id
        if account is None:
            raise ValueError("submit_order needs trading_account_id (none configured)")
        return await self._http.submit_order(
            msgspec.structs.replace(order, trading_account_id=account)
        )

    async def submit_and_confirm(
        self,
        *,
        instrument_id: str,
        order_side: str,
        order_type: str,
        quantity: str | Decimal,
        limit_price: str | Decimal | None = None,
        stop_price: str | Decimal | None = None,
        time_in_force: str | None = None,
        client_order_id: str | None = None,
        trading_account_id: str | None = None,
        timeout: float | None = None,
    ) -> SubmitResult:
        """Place an order and return once the exchange has proven it accepted or refused it.

        Returns a :class:`SubmitResult`: ``accepted`` is True once the order
        is held (ACCEPTED, OPEN, PARTIALLY_FILLED, FILLED) and False for a
        refusal (REJECTED, with ``order.reject_reason``; EXPIRED or CANCELLED
        before it was accepted). CREATED, PENDING and SUBMITTED prove nothing:
        the call waits on. ``client_order_id`` is the submit's idempotency key
        (a uuid4 when None): a submit is only ever sent again with it, after
        the account's orders were searched for it, so a retry never places a
        second order. ``timeout`` (default ``timeouts.confirm``) bounds the
        whole call, as for :meth:`cancel_and_confirm`; ``submit_via="ws"``
        sends it as an RPC on the open WebSocket.

        Raises ``ValueError``/``TypeError`` for malformed fields or no
        account (nothing is sent), the :class:`~cadenza_async.errors.ApiError`
        subclasses for a submit the API refused (400, 401, 403),
        :class:`~cadenza_async.errors.TransportError` at once when the submit
        provably never reached the API and retries are spent,
        :class:`~cadenza_async.errors.ClientClosedError`, and
        :class:`~cadenza_async.placing.SubmitConfirmationTimeout` (a
        :class:`~cadenza_async.errors.ConfirmationTimeout` with ``last_known``
        and ``client_order_id``) when nothing was proven in time: the order
        may then exist, findable by its ``clientOrderId``.
        """
        self._check_open()
        order = new_order(
            instrument_id=instrument_id,
            order_side=order_side,
            order_type=order_type,
            quantity=quantity,
            limit_price=limit_price,
            stop_price=stop_price,
            time_in_force=time_in_force,
            client_order_id=client_order_id,
            trading_account_id=trading_account_id,
        )
        order = self._placer.prepare(order)
        check_timeout(timeout)
        self._market.check_new_order(order)  # the instrument's rules, if it is cached
        self._start_stream()
        return await self._placer.submit_and_confirm(order, timeout=timeout)

    async def replace_and_confirm(
        self,
        old_order_id: str,
        *,
        instrument_id: str,
        order_side: str,
        order_type: str,
        quantity: str | Decimal,
        limit_price: str | Decimal | None = None,
        stop_price: str | Decimal | None = None,
        time_in_force: str | None = None,
        client_order_id: str | None = None,
        trading_account_id: str | None = None,
        place_if_filled: bool = False,
        timeout: float | None = None,
    ) -> ReplaceResult:
        """Cancel ``old_order_id`` and, once it is proven final, place the new order.

        The new order is never sent while the old one may still be live: a
        quote is pulled before the next one goes out, so there are never two.
        Both orders are on ``trading_account_id`` (default: the configured
        account). ``timeout`` bounds the whole call: the cancel may use all of
        it; the submit gets what the cancel left.

        Returns a :class:`ReplaceResult` (``outcome`` says which case):
        ``submit`` is the new order's :class:`SubmitResult` once placed
        (``"submitted"``), None when the old order filled and
        ``place_if_filled`` is False (``"old_filled"``), when the old order
        could not be proven final (``"old_not_final"``: ``cancel`` is None
        and ``cancel_error`` holds the cancel's error, e.g. a
        ``ConfirmationTimeout``), or when the cancel left too little of the
        deadline to place the new order (``"no_time_left"``). Raises what
        :meth:`submit_and_confirm` raises for the new order, ``ValueError``
        for malformed input and ``ClientClosedError``.
        """
        self._check_open()
        order = new_order(
            instrument_id=instrument_id,
            order_side=order_side,
            order_type=order_type,
            quantity=quantity,
            limit_price=limit_price,
            stop_price=stop_price,
            time_in_force=time_in_force,
            client_order_id=client_order_id,
            trading_account_id=trading_account_id,
        )
        # The new order is checked whole before the old one is touched.
        order = self._placer.prepare(order)
        old_order_id = check_order_id(old_order_id)
        check_bool(place_if_filled, "place_if_filled")
        check_timeout(timeout)
        self._market.check_new_order(order)  # the instrument's rules, if it is cached
        self._start_stream()
        return await self._placer.replace_and_confirm(
            old_order_id,
            order,
            cancel_and_confirm=self._canceller.cancel_and_confirm,
            place_if_filled=place_if_filled,
            timeout=timeout,
        )

    async def submit_many(
        self,
        orders: Iterable[NewOrder | Mapping[str, Any]],
        *,
        concurrency: int = 16,
        timeout: float | None = None,
    ) -> list[SubmitOutcome]:
        """Place many orders with proof, at most ``concurrency`` at once; outcomes in input order.

        Each order is a :class:`NewOrder` or a mapping of its fields
        (``instrument_id``, ``order_side``, ...). All are checked first: a
        malformed one raises ``TypeError``/``ValueError`` naming its index and
        nothing is sent. Each outcome is a :class:`SubmitResult` or that
        order's error; a single order's failure never raises. ``timeout``
        bounds each order's call (as for :meth:`submit_and_confirm`).
        """
        self._check_open()
        prepared, seconds = self._placer.check_many(orders, concurrency, timeout)
        self._market.check_orders(prepared)  # the instruments' rules, for those cached
        self._start_stream()
        return await self._placer.submit_checked(prepared, concurrency=concurrency, timeout=seconds)
