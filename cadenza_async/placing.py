"""Placing: the submit policy of the proof engine; submit, submit many, replace, never two orders.

The rules are the engine's (:mod:`cadenza_async.engine`, over the sans-I/O
:mod:`cadenza_async.protocol.proof`); what proves a submit (accepted or
refused) is the :class:`~cadenza_async.protocol.placement.PlacementRegistry`'s.
This module says how a submit goes out and what its answers mean:

* Its ``clientOrderId`` (the API's idempotency key; a uuid4 when the caller
  gives none) is chosen, and the placement registered, before it is sent:
  the event can beat the reply, and is matched by ``clientOrderId`` until an
  answer names the ``tradeOrderId``. Callers with the same ``clientOrderId``
  share one job: one submit at a time.
* A submit is only ever sent again with the same ``clientOrderId``, and one
  that may have been placed (a timeout, a reset after sending, any 5xx) only
  after a listing of the account's recent orders completed without finding
  it (a failed listing is listed again, never resent). A submit that
  provably never reached the API is sent again while the deadline allows.
* ``submit_via="ws"`` sends it as a Centrifugo RPC while the stream is
  connected (HTTP when the server has no such RPC).
* At the deadline: :class:`SubmitConfirmationTimeout` with ``last_known``
  (SUBMITTED, say) and the ``client_order_id`` to find the order by later.

``replace_and_confirm`` cancels the old order with the canceller's
``cancel_and_confirm`` and sends the new one only once the old one is proven
final: never two live orders. One deadline bounds both halves.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, Literal

import msgspec

from ._validate import (
    check_account_id,
    check_bool,
    check_count,
    check_order,
    check_order_id,
    check_orders,
)
from .bulk import run_pool
from .engine import MIN_TURN, RETRIABLE, Job, ListOrders, ProofEngine, naming, no_time_left
from .errors import (
    CadenzaError,
    ClientClosedError,
    ConfirmationTimeout,
    StreamRpcError,
)
from .models import (
    CancelResult,
    NewOrder,
    OrderStatus,
    ReplaceResult,
    SubmitResult,
    TradeOrder,
)
from .protocol.placement import Placement, PlacementRegistry
from .protocol.proof import SUBMIT_RULES, Pager, final_slice
from .transports import RpcSubmit, SubmitTransport

if TYPE_CHECKING:
    from ._ratelimit import RateGate
    from .stream import OrderStream

__all__ = [
    "Placer",
    "SubmitConfirmationTimeout",
    "SubmitOutcome",
    "new_order",
]

log = logging.getLogger("cadenza_async.placing")

#: ``look_up(order_id, account_id, deadline)``: the order's current state by REST.
LookUp = Callable[[str, "str | None", "float | None"], Awaitable[TradeOrder]]

#: One outcome of ``submit_many``: the proven result, or that order's error.
SubmitOutcome = SubmitResult | CadenzaError

#: Finding a submit by clientOrderId: orders created since the first send, less this
#: margin for the skew between our clock and the server's (ms), newest first.
LIST_SKEW_MS: Final = 300_000
LIST_PAGE: Final = 200
LIST_MAX_PAGES: Final = 10
_RPC_METHOD_NOT_FOUND: Final = 104


class SubmitConfirmationTimeout(ConfirmationTimeout):
    """No verdict on a submit (accepted or refused) was proven before the deadline.

    The order may exist or appear later: ``client_order_id`` finds it (it is
    the idempotency key the submit went with), ``order_id`` is its
    ``tradeOrderId`` when an answer named it (else the ``clientOrderId``),
    ``last_known`` the freshest state seen (e.g. SUBMITTED), or None.
    """

    def __init__(
        self,
        client_order_id: str,
        order_id: str | None,
        last_known: TradeOrder | None,
        timeout: float,
    ) -> None:
        super().__init__(order_id or client_order_id, last_known, timeout)
        self.client_order_id = client_order_id
        status = last_known.status if last_known is not None else "unknown"
        named = f"order {order_id}" if order_id else "the order"
        self.args = (
            f"submit {client_order_id}: {named} was not proven accepted or refused within "
            f"{timeout:g}s (last known status: {status})",
        )


def new_order(
    *,
    instrument_id: str,
    order_side: str,
    order_type: str,
    quantity: str | Decimal | int,
    limit_price: str | Decimal | int | None = None,
    stop_price: str | Decimal | int | None = None,
    time_in_force: str | None = None,
    client_order_id: str | None = None,
    trading_account_id: str | None = None,
    quote_id: str | None = None,
) -> NewOrder:
    """A :class:`NewOrder` from keyword arguments, checked as a whole before any I/O.

    Raises ``TypeError``/``ValueError`` naming the field and the rule it
    breaks, :class:`~cadenza_async.errors.InvalidOrderIdError` for a
    malformed ``client_order_id`` or account id (see :mod:`cadenza_async._validate`).
    """
    return check_order(
        instrument_id=instrument_id,
        order_side=order_side,
        order_type=order_type,
        quantity=quantity,
        limit_price=limit_price,
        stop_price=stop_price,
        time_in_force=time_in_force,
        client_order_id=client_order_id,
        trading_account_id=trading_account_id,
        quote_id=quote_id,
    )


class _Job(Job):
    """One submit: the engine's job, the order it sends, and when it first went out."""

    __slots__ = ("order", "sent_wall_ms")

    def __init__(self, order: NewOrder, deadline: float) -> None:
        super().__init__(deadline, SUBMIT_RULES)
        self.order = order
        self.sent_wall_ms: int | None = None  # when it first went out (Unix ms, for listing)


def _job(placement: Placement) -> _Job:
    handle = placement.handle
    assert isinstance(handle, _Job)
    return handle


CancelAndConfirm = Callable[..., Awaitable[CancelResult]]


class Placer(ProofEngine[Placement, _Job]):
    """The submit policy of the proof engine; owns submit jobs and their tasks.

    Owned by :class:`~cadenza_async.CadenzaClient`, which gives it the HTTP
    submit, the REST look-up and listing, the rate gate and the registry,
    adds the stream with :meth:`attach_stream` and routes the stream's
    decoded order events to :meth:`observe_event`. Tests give it fakes.
    """

    kind = "submit"
    announces = False  # (the canceller's log says it once for the client)

    def __init__(
        self,
        *,
        http_submit: SubmitTransport,
        look_up_order: LookUp,
        list_recent: ListOrders,
        gate: RateGate,
        registry: PlacementRegistry,
        submit_via: Literal["http", "ws"],
        confirm_timeout: float,
        request_timeout: float,
        default_account: str | None = None,
        wire: Literal["current", "legacy"] = "current",
    ) -> None:
        super().__init__(
            registry=registry,
            list_orders=list_recent,
            confirm_timeout=confirm_timeout,
            request_timeout=request_timeout,
            log=log,
        )
        self._registry: PlacementRegistry = registry
        self._http_submit = http_submit
        self._rpc_submit: SubmitTransport | None = None
        self._get_order = look_up_order
        self._list_recent = list_recent
        self._gate = gate
        self._submit_via = submit_via
        self._default_account = default_account
        self._wire = wire

    def attach_stream(self, stream: OrderStream) -> None:
        """Use ``stream`` for events, subscriptions and (``submit_via="ws"``) RPC submits."""
        super().attach_stream(stream)
        self._rpc_submit = RpcSubmit(
            stream, self._gate, self._request_timeout, nested=self._wire == "current"
        )

    def observe_event(self, order: TradeOrder, account: str | None) -> None:
        """An order update from the stream; wakes the callers of the submit it proves."""
        registry = self._registry
        if not registry.pending_count:
            return
        now = self._running_loop().time()
        placement = registry.resolve_from_event(order, now, channel_account=account)
        if placement is not None:
            _job(placement).wake()

    @property
    def pending(self) -> int:
        """Submits waiting for their proof."""
        return self._registry.pending_count

    def pending_on(self, account_id: str) -> bool:
        """True while a submit on ``account_id`` waits for its proof (keep its channel)."""
        return bool(self._registry.pending_for_account(account_id))

    # -- the calls -------------------------------------------------------------

    def prepare(self, order: NewOrder) -> NewOrder:
        """``order`` with its account (the default one) and a ``clientOrderId`` (generated).

        Raises ``ValueError`` when no account is known.
        """
        account = order.trading_account_id or self._default_account
        if account is None:
            raise ValueError("a submit needs trading_account_id (none configured)")
        account = check_account_id(account)
        client_id = order.client_order_id or str(uuid.uuid4())
        if account == order.trading_account_id and client_id == order.client_order_id:
            return order
        return msgspec.structs.replace(order, trading_account_id=account, client_order_id=client_id)

    def check_many(
        self,
        orders: Iterable[NewOrder | Mapping[str, Any]],
        concurrency: int,
        timeout: float | None,
    ) -> tuple[list[NewOrder], float]:
        """The orders of a bulk submit, prepared, and each one's timeout: all checked, or raises.

        Raises ``TypeError``/``ValueError`` naming the bad order's index.
        """
        check_count(concurrency, "concurrency")
        prepared = [self.prepare(order) for order in check_orders(orders)]
        return prepared, self._check_timeout(timeout)

    async def submit_and_confirm(
        self, order: NewOrder, *, timeout: float | None = None
    ) -> SubmitResult:
        """Submit and wait until the exchange proved it accepted or refused the order.

        See ``CadenzaClient.submit_and_confirm``.
        """
        timeout = self._check_timeout(timeout)
        order = self.prepare(order)
        started = asyncio.get_running_loop().time()
        return await self._submit(order, started, started + timeout, timeout)

    async def submit_many(
        self,
        orders: Iterable[NewOrder | Mapping[str, Any]],
        *,
        concurrency: int = 16,
        timeout: float | None = None,
    ) -> list[SubmitOutcome]:
        """Submit many orders, at most ``concurrency`` at once; one outcome per input, in order.

        Every order is checked (and given its ``clientOrderId``) before
        anything is sent: a malformed one raises ``TypeError``/``ValueError``
        naming its index, and nothing goes out. Then each item is a
        :class:`SubmitResult` or that order's error; a single order's failure
        never raises. ``timeout`` (default ``timeouts.confirm``) bounds each
        order's call and the whole bulk: an order whose turn comes too close
        to it is not sent (:class:`~cadenza_async.errors.TransportError`,
        ``maybe_sent`` False). A worker takes the next order once its submit's
        request is over too (its proof can come first), so no more than
        ``concurrency`` submits are ever in flight. Cancelling the caller
        cancels the submits in flight.
        """
        prepared, seconds = self.check_many(orders, concurrency, timeout)
        return await self.submit_checked(prepared, concurrency=concurrency, timeout=seconds)

    async def submit_checked(
        self, prepared: list[NewOrder], *, concurrency: int, timeout: float
    ) -> list[SubmitOutcome]:
        """:meth:`submit_many` of orders :meth:`check_many` has checked and prepared."""
        end = self._running_loop().time() + timeout
        outcomes: list[SubmitOutcome | None] = [None] * len(prepared)

        async def work(index: int) -> None:
            order = prepared[index]
            started = self._running_loop().time()
            deadline, budget = started + timeout, timeout
            if deadline > end + MIN_TURN:  # the bulk's own deadline comes first
                deadline, budget = end, end - started
                if budget < MIN_TURN:
                    outcomes[index] = naming(no_time_left(self.kind), order.client_order_id or "")
                    return
            jobs: list[_Job] = []
            try:
                outcomes[index] = await self._submit(order, started, deadline, budget, jobs)
            except CadenzaError as exc:
                outcomes[index] = exc
            # The proof can come before the submit's reply: the worker's slot is free only
            # once its request is over too, so no more than ``concurrency`` are in flight.
            drivers = [job.driver for job in jobs if job.driver is not None]
            if drivers:
                await asyncio.wait(drivers)

        await run_pool(range(len(prepared)), work, concurrency=concurrency)
        done: list[SubmitOutcome] = []
        for outcome in outcomes:
            assert outcome is not None  # every worker ended: every index has its outcome
            done.append(outcome)
        return done

    async def replace_and_confirm(
        self,
        old_order_id: str,
        order: NewOrder,
        *,
        cancel_and_confirm: CancelAndConfirm,
        place_if_filled: bool = False,
        timeout: float | None = None,
    ) -> ReplaceResult:
        """Cancel ``old_order_id`` until proven final, then submit ``order``; one deadline.

        See ``CadenzaClient.replace_and_confirm``.
        """
        old_order_id = check_order_id(old_order_id)
        check_bool(place_if_filled, "place_if_filled")
        timeout = self._check_timeout(timeout)
        order = self.prepare(order)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            cancel = await cancel_and_confirm(
                old_order_id, trading_account_id=order.trading_account_id, timeout=timeout
            )
        except ClientClosedError:
            raise
        except CadenzaError as exc:
            # Not proven final: the old order may still be live, so nothing is sent.
            return ReplaceResult(
                cancel=None, submit=None, outcome="old_not_final", cancel_error=exc
            )
        if cancel.order.status == OrderStatus.FILLED and not place_if_filled:
            return ReplaceResult(cancel=cancel, submit=None, outcome="old_filled")
        started = loop.time()
        remaining = deadline - started
        if remaining <= final_slice(timeout):
            # What is left would be the final look-up's slice alone: a submit sent
            # now would most likely end unproven, an order the caller cannot see.
            return ReplaceResult(cancel=cancel, submit=None, outcome="no_time_left")
        submit = await self._submit(order, started, deadline, remaining)
        return ReplaceResult(cancel=cancel, submit=submit, outcome="submitted")

    # -- one submit, for every caller of its clientOrderId -----------------------

    async def _submit(
        self,
        order: NewOrder,
        started: float,
        deadline: float,
        timeout: float,
        jobs: list[_Job] | None = None,
    ) -> SubmitResult:
        """One submit for one caller; ``jobs`` (when given) gets the job it joined."""
        client_id = order.client_order_id
        account = order.trading_account_id
        assert client_id is not None
        assert account is not None
        registry = self._registry
        placement, created = registry.register(client_id, account, started)
        job: _Job | None = None
        try:
            if created and len(registry) == 1:
                self._hear_events(True)  # the first submit held: its proof may come as an event
            if placement.done:
                return self._result(placement, started)
            job = self._join(placement, created, order, deadline)
            if jobs is not None:
                jobs.append(job)
            return await self._proven(placement, job, started, deadline, timeout)
        finally:
            registry.release(placement)
            if placement.refs == 0 and not placement.done and job is not None and job.driver:
                job.driver.cancel()  # every caller gave up: stop working for nobody
            if not len(registry):
                self._hear_events(False)

    async def _proven(
        self, placement: Placement, job: _Job, started: float, deadline: float, timeout: float
    ) -> SubmitResult:
        """A caller's wait for the proof, the final look-up in its last slice; or its error."""
        await self._wait(placement, job, deadline - self._final_slice(timeout))
        if not placement.done and job.error is None and self._closed is None:
            await self._final_wait(placement, job, deadline)
        if placement.outcome is not None:
            return self._result(placement, started)
        raise self._unproven(placement, job, timeout)

    def _hear_events(self, on: bool) -> None:
        """Take the stream's order events while a submit is held, only then (each event
        calls every listener: a cancel's event costs no call here)."""
        stream = self._stream
        if stream is not None:
            if on:
                stream.listen(self.observe_event)
            else:
                stream.unlisten(self.observe_event)

    def _join(self, placement: Placement, created: bool, order: NewOrder, deadline: float) -> _Job:
        """The submit's job (new, or shared and extended to ``deadline``), with a task driving it."""
        if created:
            job = _Job(order, deadline)
            placement.handle = job
        else:
            job = _job(placement)
            job.extend(deadline)
        driver = job.driver
        if driver is None or driver.done():
            job.driver = self._start_driver(placement, job)
        return job

    # -- the policy ------------------------------------------------------------------

    async def send_submit(self, order: NewOrder, deadline: float) -> TradeOrder:
        """Send one submit; the order from its reply.

        ``submit_via="ws"`` uses the RPC while the stream is connected (HTTP
        otherwise, and when the server has no such RPC).
        """
        stream = self._stream
        rpc = self._rpc_submit
        # (the RPC's order model has no quoteId: a quote's execution goes over HTTP)
        if (
            self._submit_via == "ws"
            and rpc is not None
            and stream is not None
            and stream.connected
            and order.quote_id is None
        ):
            try:
                return await rpc.submit(order, deadline)
            except StreamRpcError as exc:
                if exc.errno != _RPC_METHOD_NOT_FOUND:
                    raise
                log.warning("the server has no submit RPC: submits go over HTTP")
                self._submit_via = "http"
        return await self._http_submit.submit(order, deadline)

    def _send_once(self, placement: Placement, job: _Job) -> Awaitable[TradeOrder | None]:
        if job.sent_wall_ms is None:
            job.sent_wall_ms = time.time_ns() // 1_000_000
        return self.send_submit(job.order, job.deadline)

    def _replied(
        self, placement: Placement, job: _Job, order: TradeOrder | None, now: float
    ) -> None:
        job.replied(now)
        if order is not None and self._registry.resolve_from_reply(placement, order, now):
            job.wake()

    async def _presence(self, placement: Placement, job: _Job) -> bool | None:
        """Did an earlier send place the order? Only a completed listing says no."""
        try:
            return await self._find(placement, job.deadline)
        except RETRIABLE:
            return None

    async def _look_up(self, placement: Placement, deadline: float) -> None:
        """The order's state by REST: by ``tradeOrderId`` once known, else found by ``clientOrderId``."""
        order_id = placement.order_id
        if order_id is None:
            await self._find(placement, deadline)
            return
        order = await self._get_order(order_id, placement.account_id, deadline)
        if placement.done:
            return
        now = self._running_loop().time()
        if self._registry.resolve_from_rest(order, now) is not None:
            _job(placement).wake()

    def _key(self, placement: Placement) -> str:
        return placement.client_order_id

    def _listed_key(self, order: TradeOrder) -> str | None:
        return order.client_order_id

    def _timeout(self, placement: Placement, job: _Job, timeout: float) -> CadenzaError:
        return SubmitConfirmationTimeout(
            placement.client_order_id, placement.order_id, placement.last_known, timeout
        )

    def _listing_since(self, account: str) -> int | None:
        """The account's pending submits' earliest first send, less the clock skew margin."""
        firsts = [
            job.sent_wall_ms
            for placement in self._registry.pending_for_account(account)
            if isinstance(job := placement.handle, _Job) and job.sent_wall_ms is not None
        ]
        return max(0, min(firsts, default=time.time_ns() // 1_000_000) - LIST_SKEW_MS)

    async def _find(self, placement: Placement, deadline: float) -> bool:
        """List the account's recent orders and match ``clientOrderId``; True when found.

        A match binds the placement to its ``tradeOrderId`` (and proves it when
        its status does). False only when the listing completed without it.
        Raises what the listing raises.
        """
        handle = placement.handle
        first_ms = handle.sent_wall_ms if isinstance(handle, _Job) else None
        if first_ms is None:
            first_ms = time.time_ns() // 1_000_000
        since = max(0, first_ms - LIST_SKEW_MS)
        client_id = placement.client_order_id
        pager = Pager(LIST_PAGE, LIST_MAX_PAGES)
        while (request := pager.request()) is not None:
            offset, cursor = request
            page = await self._list_recent(
                placement.account_id, since, LIST_PAGE, offset, cursor, deadline
            )
            match = next((o for o in page.orders if o.client_order_id == client_id), None)
            if match is not None:
                self._found(placement, match)
                return True
            pagination = page.pagination
            pager.take(
                (o.trade_order_id for o in page.orders),
                len(page.orders),
                None if pagination is None else pagination.has_next,
                None if pagination is None else pagination.cursor,
            )
        return False

    def _found(self, placement: Placement, order: TradeOrder) -> None:
        """A listing found the submit's order: feed it to the registry (it may prove it)."""
        if placement.done:
            return
        now = self._running_loop().time()
        if self._registry.resolve_from_rest(order, now) is not None:
            _job(placement).wake()

    @staticmethod
    def _result(placement: Placement, started: float) -> SubmitResult:
        order = placement.outcome
        assert order is not None
        assert placement.source is not None
        assert placement.accepted is not None
        resolved_at = placement.resolved_at if placement.resolved_at is not None else started
        handle = placement.handle
        acked_at = handle.acked_at if isinstance(handle, _Job) else None
        return SubmitResult(
            order=order,
            accepted=placement.accepted,
            source=placement.source,
            latency=max(0.0, resolved_at - started),
            acked_after=None
            if acked_at is None or acked_at > resolved_at
            else max(0.0, acked_at - started),
            client_order_id=placement.client_order_id,
        )
