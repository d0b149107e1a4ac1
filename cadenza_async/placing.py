"""Placing with proof: a submit turned into one proven outcome, on time, and never into two orders.

This is the asyncio side of :class:`~cadenza_async.protocol.placement.PlacementRegistry`.
The registry decides *whether* evidence proves the exchange accepted (or
refused) a new order; this module sends the submits, feeds the registry with
what the submit's reply, the order stream and REST look-ups say, and wakes
the callers waiting on each submit. It follows the cancels' two principles
(:mod:`cadenza_async.cancels`): one deadline per call, bounding every wait,
the final look-up included (in the reserved :func:`~cadenza_async.cancels.final_slice`);
and a stream that cannot help never stops a submit: REST proves it then.

How one submit runs:

1. Its ``clientOrderId`` (the API's idempotency key; a uuid4 when the caller
   gives none) is chosen and the placement registered *before* the submit is
   sent: the event can beat the reply, and is matched by ``clientOrderId``
   until an answer names the ``tradeOrderId``.
2. One *job* per account and ``clientOrderId``, driven by one task the placer
   owns, sends the submit and proves its outcome; concurrent callers with the
   same ``clientOrderId`` share it (one submit at a time), each waiting on a
   future of its own. The job stops when its last caller leaves.
3. Proof from any source (event, reply, look-up) wakes every caller at once.
4. A send that fails is only ever sent again with the same ``clientOrderId``:

   * it provably never reached the API (refused, DNS, TLS, a 429): sent
     again with backoff while ``retry.attempts`` and the deadline allow,
     then that error is raised at once;
   * it may have reached it (a timeout, a reset after sending, any 5xx):
     the account's recent orders are listed and matched by
     ``clientOrderId`` *before* anything is sent again. Found, it is the
     order (nothing is resent); not found, the submit goes again, with the
     same key, so the API places one order at most. The deadline ends the
     loop, with the last send error as the timeout's ``__cause__``.

   A definite answer (400, 401, 403) is raised at once.
5. After the reply, the stream proves the outcome while the account's channel
   is live; a channel that became live after the submit went out, or lost
   continuity, gets one look-up for the events it may have missed. While it is
   not live (stream down, closed for good, refused), REST polls with backoff.
6. At the deadline: :class:`SubmitConfirmationTimeout` with ``last_known``
   (SUBMITTED, say) and the ``client_order_id`` to find the order by later.

``replace_and_confirm`` cancels the old order with the canceller's
``cancel_and_confirm`` and sends the new one only once the old one is proven
final: never two live orders. One deadline bounds both halves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, Literal

import msgspec

from ._alarm import Alarm
from ._callers import Callers, sleep_until
from ._tasks import TaskOwner
from ._validate import (
    check_account_id,
    check_bool,
    check_count,
    check_order,
    check_order_id,
    check_orders,
    check_timeout,
)
from .bulk import run_pool
from .cancels import final_slice
from .errors import (
    CadenzaError,
    ClientClosedError,
    ConfirmationTimeout,
    RateLimitError,
    ServerError,
    StreamRpcError,
    TransportError,
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
from .stream import channel_for
from .transports import ListRecent, RpcSubmit, SubmitTransport

if TYPE_CHECKING:
    from ._ratelimit import RateGate
    from .http import OrderPage
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

#: REST polling while the stream cannot prove: first look-up after this, doubling up to the cap.
POLL_FIRST: Final = 0.1
POLL_MAX: Final = 2.0
#: Backoff between sends of a submit that failed.
RESEND_FIRST: Final = 0.05
RESEND_MAX: Final = 1.0
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
    )


class _Job(Callers):
    """One submit: its callers' wake-up futures, its driver, what happened so far."""

    __slots__ = (
        "acked_at",
        "asked",
        "deadline",
        "driver",
        "first_sent_at",
        "maybe_sent",
        "not_sent",
        "order",
        "seen_since",
        "send_error",
        "sent_at",
        "sent_wall_ms",
    )

    def __init__(self, order: NewOrder, deadline: float) -> None:
        self.order = order
        super().__init__()
        self.deadline = deadline  # the latest deadline among the callers still waiting
        self.acked_at: float | None = None  # when a reply (or a listing) showed the order
        self.send_error: CadenzaError | None = None  # the last failed send (a timeout's cause)
        self.maybe_sent = False  # a send may have reached the API
        self.not_sent = 0  # sends that provably never reached it
        self.sent_at = 0.0  # when the submit last went out (event-loop time)
        self.first_sent_at: float | None = None  # when it first went out (event-loop time)
        self.sent_wall_ms: int | None = None  # when it first went out (Unix ms, for listing)
        self.asked = False  # the account's channel was asked for (once per job)
        self.seen_since: float | None = None  # the channel's live_since the job last saw
        self.driver: asyncio.Task[None] | None = None


def _job(placement: Placement) -> _Job:
    handle = placement.handle
    assert isinstance(handle, _Job)
    return handle


#: Failures of a look-up or a listing that leave the question open (poll again, or resend).
_RETRIABLE: Final = (TransportError, ServerError, RateLimitError)

CancelAndConfirm = Callable[..., Awaitable[CancelResult]]


class Placer:
    """Sends submits over HTTP or the stream and waits for their proof; owns jobs and their tasks.

    Owned by :class:`~cadenza_async.CadenzaClient`, which gives it the HTTP
    submit, the REST look-up and listing, the rate gate and the registry,
    adds the stream with :meth:`attach_stream` and routes the stream's
    decoded order events to :meth:`observe_event`. Tests give it fakes.
    """

    def __init__(
        self,
        *,
        http_submit: SubmitTransport,
        look_up_order: LookUp,
        list_recent: ListRecent,
        gate: RateGate,
        registry: PlacementRegistry,
        submit_via: Literal["http", "ws"],
        confirm_timeout: float,
        request_timeout: float,
        send_attempts: int = 3,
        default_account: str | None = None,
    ) -> None:
        self._http_submit = http_submit
        self._rpc_submit: SubmitTransport | None = None
        self._get_order = look_up_order
        self._list_recent = list_recent
        self._gate = gate
        self._registry = registry
        self._submit_via = submit_via
        self._confirm_timeout = confirm_timeout
        self._request_timeout = request_timeout
        self._send_attempts = max(1, send_attempts)
        self._default_account = default_account
        self._stream: OrderStream | None = None
        self._closed: ClientClosedError | None = None
        self._tasks = TaskOwner(log)
        self._alarm = Alarm()
        self.rest_polls = 0

    # -- life ------------------------------------------------------------------

    async def aclose(self) -> None:
        """Every caller still waiting gets ``ClientClosedError`` at once; running sends stop."""
        if self._closed is None:
            self._closed = ClientClosedError(
                "the client was closed before the submit was confirmed"
            )
        for placement in self._registry.pending():
            handle = placement.handle
            if isinstance(handle, _Job):
                handle.wake()
        await self._tasks.aclose()
        self._alarm.close()

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        return self._tasks.spawn(coro, name)

    def attach_stream(self, stream: OrderStream) -> None:
        """Use ``stream`` for events, subscriptions and (``submit_via="ws"``) RPC submits."""
        self._stream = stream
        self._rpc_submit = RpcSubmit(stream, self._gate, self._request_timeout)

    def observe_event(self, order: TradeOrder, account: str | None) -> None:
        """An order update from the stream; wakes the callers of the submit it proves."""
        registry = self._registry
        if not registry.pending_count:
            return
        now = asyncio.get_running_loop().time()
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
        return prepared, self._timeout(timeout)

    def _timeout(self, timeout: float | None) -> float:
        seconds = check_timeout(timeout)
        return self._confirm_timeout if seconds is None else seconds

    async def submit_and_confirm(
        self, order: NewOrder, *, timeout: float | None = None
    ) -> SubmitResult:
        """Submit and wait until the exchange proved it accepted or refused the order.

        See ``CadenzaClient.submit_and_confirm``.
        """
        timeout = self._timeout(timeout)
        order = self.prepare(order)
        if self._closed is not None:
            raise ClientClosedError("the client is closed")
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
        never raises. Cancelling the caller cancels the submits in flight.
        """
        prepared, seconds = self.check_many(orders, concurrency, timeout)
        return await self.submit_checked(prepared, concurrency=concurrency, timeout=seconds)

    async def submit_checked(
        self, prepared: list[NewOrder], *, concurrency: int, timeout: float
    ) -> list[SubmitOutcome]:
        """:meth:`submit_many` of orders :meth:`check_many` has checked and prepared."""
        outcomes: list[SubmitOutcome | None] = [None] * len(prepared)

        async def work(index: int) -> None:
            try:
                outcomes[index] = await self.submit_and_confirm(prepared[index], timeout=timeout)
            except CadenzaError as exc:
                outcomes[index] = exc

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
        timeout = self._timeout(timeout)
        order = self.prepare(order)
        if self._closed is not None:
            raise ClientClosedError("the client is closed")
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
        self, order: NewOrder, started: float, deadline: float, timeout: float
    ) -> SubmitResult:
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
            await self._prove_by(placement, job, deadline, timeout)
            if placement.outcome is not None:
                return self._result(placement, started)
            raise self._unproven(placement, job, timeout)
        finally:
            registry.release(placement)
            if placement.refs == 0 and not placement.done and job is not None and job.driver:
                job.driver.cancel()  # every caller gave up: stop working for nobody
            if not len(registry):
                self._hear_events(False)

    def _hear_events(self, on: bool) -> None:
        """Take the stream's order events while a submit is held, only then (each event
        calls every listener: a cancel's event costs no call here)."""
        stream = self._stream
        if stream is not None:
            if on:
                stream.listen(self.observe_event)
            else:
                stream.unlisten(self.observe_event)

    @staticmethod
    def _join(placement: Placement, created: bool, order: NewOrder, deadline: float) -> _Job:
        """The submit's job: new, or shared and extended to ``deadline``."""
        if created:
            job = _Job(order, deadline)
            placement.handle = job
            return job
        job = _job(placement)
        job.deadline = max(job.deadline, deadline)
        return job

    async def _prove_by(
        self, placement: Placement, job: _Job, deadline: float, timeout: float
    ) -> None:
        """Wait for proof until ``deadline``; the final look-up starts in the last slice.

        (_wait starts the job's task, and starts it again when the stream changes.)
        """
        await self._wait(placement, job, deadline - final_slice(timeout))
        if placement.done or job.error is not None or self._closed is not None:
            return
        # The final look-up, inside the deadline; proof from any source ends the wait.
        final = self._spawn(
            self._final_look_up(placement, deadline), f"find {placement.client_order_id}"
        )
        try:
            await self._wait(placement, job, deadline)
        finally:
            final.cancel()

    def _unproven(self, placement: Placement, job: _Job, timeout: float) -> BaseException:
        """What a caller without proof raises: the job's error, a close, or a timeout."""
        if job.error is not None:
            return job.error
        client_id = placement.client_order_id
        if self._closed is not None:
            return ClientClosedError(
                f"the client was closed before the submit {client_id} was confirmed"
            )
        cause = job.send_error
        if cause is None and job.acked_at is None and job.sent_at:
            cause = TransportError("the submit got no answer before the deadline")
        error = SubmitConfirmationTimeout(
            client_id, placement.order_id, placement.last_known, timeout
        )
        error.__cause__ = cause
        return error

    async def _wait(self, placement: Placement, job: _Job, until: float) -> None:
        """Return when the submit is proven, the job failed, the client closed, or at ``until``.

        The job's task ends while the stream can prove the submit; a change of
        the stream's state wakes the callers, and one of them starts it again
        (to look up what a gap may have hidden, or to poll while it is down).
        """
        loop = asyncio.get_running_loop()
        stream = self._stream
        start = True  # (re)start the job's task now: first, and after each change of the stream
        while not placement.done and job.error is None and self._closed is None:
            now = loop.time()
            if now >= until:
                return
            driver = job.driver
            if start and (driver is None or driver.done()) and now < job.deadline:
                start = False
                job.driver = self._spawn(
                    self._drive(placement, job), f"submit {placement.client_order_id}"
                )
                continue  # (an eager task may have proven it already)
            changed = None if stream is None else stream.changed()
            await self._sleep(job, until, changed)
            start = changed is not None and changed.done()

    async def _sleep(
        self, job: _Job, until: float, also: asyncio.Future[Any] | None = None
    ) -> None:
        """Sleep until ``until``; woken early by the job (proof, failure, close) or ``also``."""
        await sleep_until(job, self._alarm, until, also)

    async def _final_look_up(self, placement: Placement, deadline: float) -> None:
        try:
            await self._look_up(placement, deadline)
        except CadenzaError as exc:
            log.debug(
                "final look-up of submit %s failed: %s",
                placement.client_order_id,
                type(exc).__name__,
            )

    # -- the job -------------------------------------------------------------------

    async def _drive(self, placement: Placement, job: _Job) -> None:
        """Send the submit until acknowledged, then prove its outcome; for every caller."""
        try:
            if job.acked_at is None:
                await self._send(placement, job)
            if not placement.done and job.error is None:
                await self._prove(placement, job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a definite answer (or a bug): every caller learns it now
            job.fail(exc)

    async def send_submit(self, order: NewOrder, deadline: float) -> TradeOrder:
        """Send one submit; the order from its reply.

        ``submit_via="ws"`` uses the RPC while the stream is connected (HTTP
        otherwise, and when the server has no such RPC).
        """
        stream = self._stream
        rpc = self._rpc_submit
        if self._submit_via == "ws" and rpc is not None and stream is not None and stream.connected:
            try:
                return await rpc.submit(order, deadline)
            except StreamRpcError as exc:
                if exc.errno != _RPC_METHOD_NOT_FOUND:
                    raise
                log.warning("the server has no submit RPC: submits go over HTTP")
                self._submit_via = "http"
        return await self._http_submit.submit(order, deadline)

    async def _send(self, placement: Placement, job: _Job) -> None:
        """Send until a reply (or a listing) shows the order; always with the same clientOrderId.

        Raises a definite error: refused by the API, or provably never sent
        with the retries spent.
        """
        loop = asyncio.get_running_loop()
        delay = RESEND_FIRST
        while not placement.done and loop.time() < job.deadline:
            job.sent_at = loop.time()
            if job.first_sent_at is None:
                job.first_sent_at = job.sent_at
                job.sent_wall_ms = time.time_ns() // 1_000_000
            try:
                reply = await self.send_submit(job.order, job.deadline)
            except (*_RETRIABLE, StreamRpcError) as exc:
                if await self._after_failed_send(placement, job, exc):
                    return
                await self._sleep(job, min(job.deadline, loop.time() + delay))
                delay = min(delay * 2, RESEND_MAX)
                continue
            now = loop.time()
            job.acked_at = now
            if (
                placement.outcome is None
                and self._registry.resolve_from_reply(placement, reply, now) is not None
            ):
                job.wake()
            return

    async def _after_failed_send(self, placement: Placement, job: _Job, exc: CadenzaError) -> bool:
        """A send failed: True when the job is done sending (found, or the deadline).

        Raises ``exc`` when it is definite: the RPC refused for good, or the
        submit provably never reached the API with the retries spent.
        """
        if isinstance(exc, StreamRpcError) and not exc.temporary:
            raise exc  # the server refused the RPC for good: nothing was placed
        job.send_error = exc
        # A 5xx (or a temporary RPC error) may come after the order was placed:
        # only a listing can tell.
        job.maybe_sent = (
            job.maybe_sent or exc.maybe_sent or isinstance(exc, (ServerError, StreamRpcError))
        )
        loop = asyncio.get_running_loop()
        if loop.time() >= job.deadline:
            if job.maybe_sent:
                return True  # the deadline, not this error, ends it: a timeout with its cause
            raise exc
        if job.maybe_sent:
            # Before any resend: did an earlier attempt place it?
            with contextlib.suppress(*_RETRIABLE):
                await self._find(placement, job.deadline)
            if placement.order_id is not None or placement.done:
                job.acked_at = loop.time()
                return True
            return False
        job.not_sent += 1
        if job.not_sent >= self._send_attempts:
            raise exc  # provably never reached the API, retries spent: say so now
        return False

    async def _prove(self, placement: Placement, job: _Job) -> None:
        """Prove the outcome: the stream's events while the channel is live, else REST polling.

        A channel that became live after the submit went out (or came back
        without continuity) may have missed the event: one look-up closes
        that window. While the channel is live this returns (the event wakes
        the callers; a change of the stream wakes them too, and they start
        this again, see :meth:`_wait`); while it is not, it polls.
        """
        loop = asyncio.get_running_loop()
        stream = self._stream
        channel = channel_for(placement.account_id)
        delay = POLL_FIRST
        next_poll: float | None = None
        while not placement.done and job.error is None:
            now = loop.time()
            if now >= job.deadline:
                return
            since = None if stream is None else stream.live_since(channel)
            if since is not None:
                seen = job.seen_since
                if since == seen:
                    return  # live, and nothing missed: the event proves it
                first = job.first_sent_at
                job.seen_since = since
                if seen is not None or first is None or since > first:
                    await self._poll(placement, job)  # the event may have come before
                continue
            job.seen_since = None
            changed = None if stream is None else stream.changed()
            if not job.asked and stream is not None:
                job.asked = True  # once per job: a channel the server refuses is not asked again
                with contextlib.suppress(CadenzaError):
                    stream.want(channel)
            if next_poll is None:
                next_poll = now + delay
            if now < next_poll:
                await self._sleep(job, min(job.deadline, next_poll), changed)
                continue
            self.rest_polls += 1
            await self._poll(placement, job)
            delay, next_poll = min(delay * 2, POLL_MAX), None

    async def _poll(self, placement: Placement, job: _Job) -> None:
        """One look-up for the job; a definite answer (auth, forbidden) fails it."""
        try:
            await self._look_up(placement, job.deadline)
        except _RETRIABLE as exc:
            log.debug(
                "look-up of submit %s failed: %s", placement.client_order_id, type(exc).__name__
            )

    # -- look-ups ----------------------------------------------------------------

    async def _look_up(self, placement: Placement, deadline: float) -> None:
        """The order's state by REST: by ``tradeOrderId`` once known, else found by ``clientOrderId``."""
        order_id = placement.order_id
        if order_id is None:
            await self._find(placement, deadline)
            return
        order = await self._get_order(order_id, placement.account_id, deadline)
        if placement.done:
            return
        now = asyncio.get_running_loop().time()
        if self._registry.resolve_from_rest(order, now) is not None:
            _job(placement).wake()

    async def _find(self, placement: Placement, deadline: float) -> bool:
        """List the account's recent orders and match ``clientOrderId``; True when found.

        A match binds the placement to its ``tradeOrderId`` (and proves it when
        its status does). Raises what the listing raises.
        """
        handle = placement.handle
        first_ms = handle.sent_wall_ms if isinstance(handle, _Job) else None
        if first_ms is None:
            first_ms = time.time_ns() // 1_000_000
        since = max(0, first_ms - LIST_SKEW_MS)
        client_id = placement.client_order_id
        offset = 0
        cursor: str | None = None
        for _ in range(LIST_MAX_PAGES):
            page = await self._list_recent(
                placement.account_id,
                since,
                LIST_PAGE,
                None if cursor is not None else offset,
                cursor,
                deadline,
            )
            match = next((o for o in page.orders if o.client_order_id == client_id), None)
            if match is not None:
                self._found(placement, match)
                return True
            go_on, cursor = _next_page(page, cursor)
            if not go_on:
                return False
            offset += len(page.orders)
        return False

    def _found(self, placement: Placement, order: TradeOrder) -> None:
        """A listing found the submit's order: feed it to the registry (it may prove it)."""
        if placement.done:
            return
        now = asyncio.get_running_loop().time()
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


def _next_page(page: OrderPage, cursor: str | None) -> tuple[bool, str | None]:
    """Whether a listing goes on after ``page``, and with which cursor (a stuck one stops it)."""
    pagination = page.pagination
    more = pagination.has_next if pagination is not None else None
    if not page.orders or more is False or (more is None and len(page.orders) < LIST_PAGE):
        return False, cursor
    if pagination is not None and pagination.cursor:
        if pagination.cursor == cursor:
            return False, cursor
        return True, pagination.cursor
    return True, cursor
