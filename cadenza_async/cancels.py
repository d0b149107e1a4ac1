"""Cancels: the cancel policy of the proof engine, its bulk, and the fire-and-forget handle.

The rules are the engine's (:mod:`cadenza_async.engine`, over the sans-I/O
:mod:`cadenza_async.protocol.proof`); what proves a cancel is the
:class:`~cadenza_async.protocol.confirm.ConfirmationRegistry`'s. This module
says how a cancel goes out and what its answers mean:

* The account: the request always names it (the current API requires it):
  the caller's, the one learnt for the order, else the client's default
  account, a guess: a 404 or 403 on it makes the order looked up by its id
  and the cancel sent again on the order's own account. With no account at
  all, the order is looked up first. All of it within the call's deadline.
* ``cancel_via="ws"`` sends it as a Centrifugo RPC while the stream is
  connected, else over HTTP.
* "Cannot cancel" (the order is final already, or a fill raced the cancel):
  the order's own state decides (a look-up).
* A reply, an event or a look-up showing a terminal status proves the cancel
  (CANCELLED, FILLED, REJECTED, EXPIRED, REVOKED, REPLACED); PENDING_CANCEL
  acknowledges it.
* A cancel is idempotent: one that may have been applied is sent again once
  a look-up shows the order still open, even when a look-up failed.

The bulk (:meth:`Canceller.confirm_many`) is this module's own: its workers
drive each new job in their own task instead of starting one per order, so
the next order's request starts in the step that read the last one's reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Generator, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

from ._validate import check_account_id, check_order_id
from .engine import MIN_TURN, RETRIABLE, Job, ListOrders, ProofEngine, naming, no_time_left
from .errors import (
    CadenzaError,
    ClientClosedError,
    ConfirmationTimeout,
    OrderNotCancellableError,
    OrderNotFoundError,
    PermissionDeniedError,
    TransportError,
    UnexpectedResponseError,
)
from .models import CancelResult, OrderStatus, TradeOrder, is_terminal
from .protocol.confirm import ConfirmationRegistry, Waiter
from .protocol.proof import (
    BATCH_MIN,
    CANCEL_RULES,
    POLL_FIRST,
    POLL_MAX,
    RECONNECT_GRACE,
    RESEND_FIRST,
    RESEND_MAX,
    Rules,
    final_slice,
)
from .stream import channel_for
from .transports import CancelTransport, RpcCancel

if TYPE_CHECKING:
    from ._ratelimit import RateGate
    from .stream import OrderStream

#: ``look_up(order_id, account_id, deadline)``: the order's current state by REST.
LookUp = Callable[[str, "str | None", "float | None"], Awaitable[TradeOrder]]

__all__ = [
    "BATCH_MIN",
    "POLL_FIRST",
    "POLL_MAX",
    "RECONNECT_GRACE",
    "RESEND_FIRST",
    "RESEND_MAX",
    "CancelHandle",
    "Canceller",
    "final_slice",
]

log = logging.getLogger("cadenza_async.cancels")


class _Job(Job):
    """One order's cancel: the engine's job, and the bulk worker driving it, if one does.

    Each caller waits on a future of its own, so cancelling one caller never
    disturbs the others sharing the job.
    """

    __slots__ = ("guessed", "inline")

    def __init__(self, deadline: float, rules: Rules = CANCEL_RULES) -> None:
        super().__init__(deadline, rules)
        self.guessed = False  # the request went to the default account, a guess
        # Set while a bulk worker drives the job in its own task (see Canceller.confirm_many).
        self.inline: _Inline | None = None

    def wake(self) -> None:
        """Wake every caller; a bulk driving the job records the outcome or error now."""
        if self.futures:  # (a bulk's job usually has no caller asleep: no call then)
            Job.wake(self)
        inline = self.inline
        if inline is not None:
            inline.bulk.settled(inline, self)

    def extend(self, deadline: float) -> None:
        """A caller joins with ``deadline``: the job works for the latest one.

        While a bulk worker drives the job, the worker keeps to its own deadline
        and a task takes over after it for the later one (:func:`_drive_here`).
        """
        inline = self.inline
        if inline is not None:
            inline.wanted = max(inline.wanted, deadline)
        elif deadline > self.deadline:
            self.deadline = deadline


class _Inline:
    """A job a bulk worker drives in its own task: whose outcome it is, for how long."""

    __slots__ = ("bulk", "held", "order_id", "started", "waiter", "wanted")

    def __init__(self, bulk: _Bulk, order_id: str, waiter: Waiter, started: float) -> None:
        self.bulk = bulk
        self.order_id = order_id
        self.waiter = waiter
        self.started = started
        self.wanted = 0.0  # the latest deadline of the callers that joined meanwhile
        self.held = True  # the worker's hold on the waiter (let go once proven)


#: ``record(order_id, outcome)``: one order's outcome in a bulk, as soon as it is known.
Record = Callable[[str, "CancelResult | CadenzaError"], None]


class _Bulk:
    """One :meth:`Canceller.confirm_many`: the orders without an outcome yet, and its end."""

    __slots__ = (
        "_record",
        "accounts",
        "default_account",
        "driving",
        "end",
        "finished",
        "let_go",
        "pending",
        "slice",
        "still_open",
        "stopped",
        "timeout",
    )

    def __init__(
        self,
        order_ids: list[str],
        record: Record,
        timeout: float,
        final: float,
        account: str | None,
        accounts: Mapping[str, str] | None,
    ) -> None:
        self.pending = set(order_ids)
        self._record = record
        self.timeout = timeout
        self.slice = final
        self.default_account = account
        self.accounts = accounts
        self.end = math.inf  # the whole bulk's deadline (event-loop time), when it has one
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.still_open: Callable[[], bool] | None = None
        self.stopped = False  # the caller left: no order starts any more
        # The job each worker drives right now (to spare the shared ones when the caller leaves).
        self.driving: dict[asyncio.Task[Any] | None, _Inline] = {}
        # Ends a worker's hold on a waiter (Canceller._let_go).
        self.let_go: Callable[[Waiter], None] = _ignore

    def record(self, order_id: str, outcome: CancelResult | CadenzaError) -> None:
        """The order's outcome (the first one counts); the bulk ends with the last."""
        pending = self.pending
        if order_id not in pending:
            return
        pending.remove(order_id)
        self._record(order_id, outcome)
        if not pending and not self.finished.done():
            self.finished.set_result(None)

    def settled(self, inline: _Inline, job: _Job) -> None:
        """A job a worker drives was woken: record its proof or its definite error now."""
        waiter = inline.waiter
        if waiter.outcome is not None:
            self.record(inline.order_id, Canceller._result(waiter, inline.started))
            if inline.held:
                # The order's call is over; the worker drives on only to read the
                # reply still in flight, like a job's task, which holds no waiter.
                inline.held = False
                self.let_go(waiter)
        elif job.error is not None:
            error = job.error
            if isinstance(error, CadenzaError):
                self.record(inline.order_id, naming(error, inline.order_id))
            else:
                self.crash(error)

    def crash(self, exc: BaseException) -> None:
        """A bug (not a :class:`CadenzaError`): the bulk raises it."""
        if not self.finished.done():
            self.finished.set_exception(exc)

    def close_out(self, error: ClientClosedError) -> None:
        """The client closed under the bulk: every order without an outcome gets ``error``."""
        for order_id in list(self.pending):
            self.record(order_id, naming(ClientClosedError(str(error)), order_id))


def _drive_here(job: _Job, inline: _Inline, until: float, worker: asyncio.Task[Any]) -> None:
    """A bulk ``worker`` starts driving ``job`` in its own task, until ``until`` (its final slice).

    The final look-up's slice is the worker's own (as a caller's is in
    :meth:`Canceller.cancel_and_confirm`); :meth:`Canceller._driven` ends the drive.
    """
    inline.wanted = job.deadline  # an earlier caller may still wait (and may not)
    job.deadline = until
    job.driver = worker
    job.inline = inline
    inline.bulk.driving[worker] = inline


def _shared(inline: _Inline | None) -> bool:
    """Whether a job a bulk worker drives has callers besides the worker, still waiting."""
    if inline is None:
        return False
    waiter = inline.waiter
    return not waiter.done and waiter.refs > (1 if inline.held else 0)


def _ignore(_waiter: Waiter) -> None:
    return None


def _job(waiter: Waiter) -> _Job:
    handle = waiter.handle
    assert isinstance(handle, _Job)
    return handle


class CancelHandle:
    """A fire-and-forget cancel: awaitable, and inspectable without awaiting.

    ``await handle`` gives the :class:`CancelResult` or raises the cancel's
    error. The client keeps a strong reference to the task behind it, so the
    cancel runs to its end even if this handle is dropped.
    """

    __slots__ = ("_observed", "_task", "order_id")

    def __init__(self, order_id: str, task: asyncio.Task[CancelResult]) -> None:
        self.order_id = order_id
        self._task = task
        self._observed = False

    def __repr__(self) -> str:
        state = "done" if self._task.done() else "pending"
        return f"<CancelHandle {self.order_id} {state}>"

    def __await__(self) -> Generator[Any, None, CancelResult]:
        self._observed = True
        return self._task.__await__()

    def done(self) -> bool:
        """True once the cancel has an outcome (a result or an error)."""
        return self._task.done()

    def result(self) -> CancelResult:
        """The outcome; raises the cancel's error, or ``asyncio.InvalidStateError`` if not done."""
        self._observed = True
        return self._task.result()

    def exception(self) -> BaseException | None:
        """The cancel's error, ``None`` on success; ``asyncio.InvalidStateError`` if not done."""
        self._observed = True
        return self._task.exception()

    def add_done_callback(self, fn: Callable[[CancelHandle], object]) -> None:
        """Call ``fn(handle)`` when the cancel has its outcome (at once if it already has)."""
        self._observed = True
        self._task.add_done_callback(lambda _task: fn(self))

    @property
    def observed(self) -> bool:
        """True once someone awaited the handle or asked for its outcome."""
        return self._observed


class Canceller(ProofEngine[Waiter, _Job]):
    """The cancel policy of the proof engine; owns cancel jobs and their tasks.

    Owned by :class:`~cadenza_async.CadenzaClient`, which gives it the
    transports (the HTTP cancel, the REST look-up and listing;
    :meth:`attach_stream` adds the RPC cancel), the rate gate and the
    registry, and routes the stream's decoded order events to
    :meth:`observe_event`. Tests give it fakes of the same shape.
    """

    kind = "cancel"

    def __init__(
        self,
        *,
        http_cancel: CancelTransport,
        look_up_order: LookUp,
        gate: RateGate,
        list_page: ListOrders | None = None,
        registry: ConfirmationRegistry,
        cancel_via: Literal["http", "ws"],
        confirm_timeout: float,
        request_timeout: float,
        default_account: str | None = None,
    ) -> None:
        super().__init__(
            registry=registry,
            list_orders=list_page,
            confirm_timeout=confirm_timeout,
            request_timeout=request_timeout,
            log=log,
        )
        self._registry: ConfirmationRegistry = registry
        self._get_order = look_up_order
        self._gate = gate
        self._http_cancel = http_cancel
        self._rpc_cancel: CancelTransport | None = None
        self._cancel_via = cancel_via
        self._default_account = default_account
        self._idle_after: float | None = None
        self._pinned: Callable[[str], bool] = lambda _account: True
        self._last_used: dict[str, float] = {}  # account -> when its last cancel ended
        self._sweeper: asyncio.Task[None] | None = None

    def attach_stream(self, stream: OrderStream) -> None:
        """Use ``stream`` for events, subscriptions and (``cancel_via="ws"``) RPC cancels."""
        super().attach_stream(stream)
        self._rpc_cancel = RpcCancel(stream, self._gate, self._request_timeout)

    # -- idle channels -------------------------------------------------------------

    def release_idle_after(self, seconds: float | None, pinned: Callable[[str], bool]) -> None:
        """Release an account's channel ``seconds`` after its last cancel ended.

        Not while a cancel on it is pending, nor when ``pinned(account)`` (the
        configured account, one the caller subscribed, readers of
        ``order_updates()``). ``None`` keeps every channel for good.
        """
        self._idle_after = None if seconds is None or math.isinf(seconds) else seconds
        self._pinned = pinned

    def _used(self, account: str) -> None:
        if self._idle_after is None or self._closed is not None or self._pinned(account):
            return
        self._last_used[account] = self._running_loop().time()
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = self._spawn(self._sweep_idle(self._idle_after), "idle channels")

    async def _sweep_idle(self, idle: float) -> None:
        """Every ``idle / 2`` seconds, release the channels idle for ``idle`` seconds.

        Ends once no account is left to watch (the next cancel on one starts it again).
        """
        loop = self._running_loop()
        while self._last_used:
            await asyncio.sleep(idle / 2)
            self.release_idle(loop.time() - idle)

    def release_idle(self, used_before: float) -> int:
        """Release the channels of accounts last used before ``used_before``; how many."""
        stream = self._stream
        if stream is None:
            return 0
        released = 0
        for account, used in list(self._last_used.items()):
            if used >= used_before or self._registry.pending_count_for_account(account):
                continue
            if self._pinned(account):
                continue
            if stream.release(channel_for(account)):
                del self._last_used[account]
                released += 1
        if released:
            log.info("released %d idle account channel(s)", released)
        return released

    def observe_event(self, order: TradeOrder, account: str | None) -> None:
        """An order update from the stream; wakes the callers of the waiter it resolves."""
        now = self._running_loop().time()
        waiter = self._registry.observe(order, "ws", now, channel_account=account)
        if waiter is not None:
            job = waiter.handle  # (as _job(waiter), inlined: once per event)
            assert isinstance(job, _Job)
            job.wake()

    # -- look-ups ----------------------------------------------------------------

    async def look_up(self, waiter: Waiter, deadline: float | None = None) -> TradeOrder:
        """One REST look-up of a waiter's order, fed to the registry (it may prove it).

        Raises what the look-up raises (``TransportError``, ``OrderNotFoundError``, ...).
        """
        order = await self._get_order(waiter.order_id, waiter.account_id, deadline)
        if not waiter.done:
            now = self._running_loop().time()
            if self._registry.resolve_from_rest(order, now) is not None:
                _job(waiter).wake()
        return order

    # -- sending -----------------------------------------------------------------

    def send_cancel(
        self,
        order_id: str,
        account_id: str,
        *,
        via: Literal["http", "ws"] | None = None,
        deadline: float | None = None,
    ) -> Awaitable[TradeOrder]:
        """Send one cancel of an order on ``account_id`` (paced); await it for the order from its reply.

        The request always names the account (the current API requires it).
        ``via="ws"`` uses the RPC when the stream is connected; otherwise the
        cancel goes over HTTP. ``deadline`` (event-loop time) bounds the whole
        send. A plain function: the HTTP cancel, the usual one, costs no
        coroutine of its own.
        """
        if deadline is None:
            deadline = self._running_loop().time() + self._request_timeout
        stream = self._stream
        if (
            (via or self._cancel_via) == "ws"
            and self._rpc_cancel is not None
            and stream is not None
            and stream.connected
        ):
            return self._rpc_cancel.cancel(order_id, account_id, deadline=deadline)
        return self._http_cancel.cancel(order_id, account_id, deadline=deadline)

    async def cancel_once(
        self, order_id: str, account_id: str | None, *, deadline: float | None = None
    ) -> TradeOrder:
        """One cancel request, unconfirmed (``CadenzaClient.cancel``): the order from its reply.

        The account is the caller's; else the default account is tried and,
        when the order is not on it (404 or 403), the order is looked up by
        its id and the cancel sent on its own account; with neither, the
        order is looked up first. Everything runs within ``deadline``.
        """
        loop = self._running_loop()
        if deadline is None:
            deadline = loop.time() + self._request_timeout
        account = account_id or self._default_account
        if account is None:
            account = _account_named_by(await self._get_order(order_id, None, deadline))
        try:
            return await self.send_cancel(order_id, account, deadline=deadline)
        except (OrderNotFoundError, PermissionDeniedError):
            if account_id is not None or account != self._default_account:
                raise
        order = await self._get_order(order_id, None, deadline)  # the default was a guess
        return await self.send_cancel(order_id, _account_named_by(order), deadline=deadline)

    # -- the policy ------------------------------------------------------------------

    def _send_once(self, waiter: Waiter, job: _Job) -> Awaitable[TradeOrder | None]:
        account = waiter.account_id
        if account is not None:  # (the usual case: no coroutine of its own)
            return self._sent(
                waiter, job, self.send_cancel(waiter.order_id, account, deadline=job.deadline)
            )
        account = self._default_account
        if account is None:
            return self._send_after_look_up(waiter, job)
        job.guessed = True
        return self._sent(
            waiter, job, self.send_cancel(waiter.order_id, account, deadline=job.deadline)
        )

    async def _sent(
        self, waiter: Waiter, job: _Job, send: Awaitable[TradeOrder]
    ) -> TradeOrder | None:
        """The reply of ``send``; the refusals this policy answers itself are handled here.

        "Cannot cancel": the order's own state decides (a look-up); a 404 or
        403 on the guessed default account: the order's own account, found by
        a look-up, and the cancel sent on it.
        """
        try:
            return await send
        except OrderNotCancellableError:
            with contextlib.suppress(*RETRIABLE):
                await self.look_up(waiter, job.deadline)
            return None  # acknowledged: the look-up (or what follows) proves it
        except (OrderNotFoundError, PermissionDeniedError):
            if not job.guessed or waiter.account_id is not None:
                raise
        return await self._send_after_look_up(waiter, job)

    async def _send_after_look_up(self, waiter: Waiter, job: _Job) -> TradeOrder | None:
        """The order looked up by its id first (its account unknown); then the cancel on it."""
        job.guessed = False
        order = await self._get_order(waiter.order_id, None, job.deadline)
        now = self._running_loop().time()
        if self._registry.resolve_from_rest(order, now) is not None:
            job.wake()
        if waiter.done:
            return None  # the look-up proved it: nothing to cancel
        account = _account_named_by(order)
        self._registry.learn_account(waiter, account)
        return await self._sent(
            waiter, job, self.send_cancel(waiter.order_id, account, deadline=job.deadline)
        )

    def _replied(self, waiter: Waiter, job: _Job, order: TradeOrder | None, now: float) -> None:
        job.replied(now)
        if order is None:
            return
        if self._registry.resolve_from_http(order, now) is not None:
            job.wake()
        elif waiter.account_id is None:
            self._registry.learn_account(waiter, order.trading_account_id)

    async def _presence(self, waiter: Waiter, job: _Job) -> bool | None:
        try:
            order = await self.look_up(waiter, job.deadline)
        except RETRIABLE:
            return None
        # the exchange has the cancel once the order is final or pending its cancel
        return (
            waiter.done or is_terminal(order.status) or order.status == OrderStatus.PENDING_CANCEL
        )

    async def _look_up(self, waiter: Waiter, deadline: float) -> None:
        await self.look_up(waiter, deadline)

    def _key(self, waiter: Waiter) -> str:
        return waiter.order_id

    def _listed_key(self, order: TradeOrder) -> str | None:
        return order.trade_order_id

    def _timeout(self, waiter: Waiter, job: _Job, timeout: float) -> CadenzaError:
        return ConfirmationTimeout(waiter.order_id, waiter.last_known, timeout)

    # -- the call ------------------------------------------------------------------

    async def cancel_and_confirm(
        self,
        order_id: str,
        *,
        trading_account_id: str | None = None,
        timeout: float | None = None,
    ) -> CancelResult:
        """Cancel and wait until a terminal state is proven; see ``CadenzaClient``."""
        timeout = self._check_call(order_id, trading_account_id, timeout)
        started = self._running_loop().time()
        deadline = started + timeout
        registry = self._registry
        waiter, created = registry.register(order_id, started, account_id=trading_account_id)
        job: _Job | None = None
        try:
            if waiter.done:
                return self._result(waiter, started)
            job = self._join(waiter, created, deadline)
            # Rule 6: wait for proof until the final look-up's slice (the usual end:
            # proof comes first), then through the final look-up to the deadline.
            await self._wait(waiter, job, deadline - self._final_slice(timeout))
            if not waiter.done and job.error is None and self._closed is None:
                await self._final_wait(waiter, job, deadline)
            if waiter.outcome is not None:  # (not ``done``: mypy keeps its pre-await narrowing)
                return self._result(waiter, started)
            raise self._unproven(waiter, job, timeout)
        except CadenzaError as exc:
            named = naming(exc, order_id)
            if named is exc:
                raise
            raise named from exc
        finally:
            registry.release(waiter)
            if waiter.account_id is not None:
                self._used(waiter.account_id)
            if waiter.refs == 0 and not waiter.done and job is not None and job.driver:
                # Every caller gave up (deadline or cancelled): stop working for nobody.
                job.driver.cancel()

    # -- the bulk -------------------------------------------------------------------

    async def confirm_many(
        self,
        order_ids: list[str],
        record: Record,
        *,
        concurrency: int,
        timeout: float | None = None,
        trading_account_id: str | None = None,
        accounts: Mapping[str, str] | None = None,
        still_open: Callable[[], bool] | None = None,
        deadline: float | None = None,
    ) -> None:
        """Cancel and confirm each of ``order_ids`` (valid and unique), ``concurrency`` at a time.

        ``record(order_id, outcome)`` is called once per order, as soon as its
        outcome (a :class:`CancelResult` or its error) is known; this returns
        once every order has one. Each order keeps the rules of
        :meth:`cancel_and_confirm` and its own ``timeout`` from when its turn
        comes, and the whole bulk ends by ``deadline`` (event-loop time) when
        given: an order whose turn comes too close to it is not sent
        (:class:`~cadenza_async.errors.TransportError`, ``maybe_sent``
        False). ``accounts`` maps an order to its account (default
        ``trading_account_id``). An order whose turn comes once ``still_open()``
        is false (the client is closing) gets :class:`ClientClosedError`, unsent.

        A worker of the bulk drives each new job in its own task instead of
        starting one per order: the request goes out in the worker's step, and
        the next order's starts in the step that reads the last one's reply.
        Proof or a definite error is recorded the moment it comes, even while
        the worker still waits for that order's reply; the worker finishes that
        request (in the background once the bulk is over: the canceller owns
        it). A caller who joins an order a worker drives keeps its own
        deadline: a task takes the job over if the worker stops first.
        Cancelling the caller stops the workers and waits until each has ended.
        """
        timeout = self._check_timeout(timeout)
        if not order_ids:
            return
        bulk = _Bulk(
            order_ids, record, timeout, self._final_slice(timeout), trading_account_id, accounts
        )
        bulk.still_open = still_open
        bulk.let_go = self._let_go
        if deadline is not None:
            bulk.end = deadline
        ids = iter(order_ids)
        workers = [
            self._spawn(self._bulk_worker(ids, bulk), "cancel_many")
            for _ in range(min(concurrency, len(order_ids)))
        ]
        try:
            await bulk.finished
        except BaseException:
            bulk.stopped = True
            # A worker driving a job that other callers share finishes that
            # request for them (and then ends): a caller leaving never cuts a
            # shared request short. The others stop now.
            stopping = [w for w in workers if not _shared(bulk.driving.get(w))]
            for worker in stopping:
                worker.cancel()
            await asyncio.gather(*stopping, return_exceptions=True)
            raise

    async def _bulk_worker(self, ids: Iterator[str], bulk: _Bulk) -> None:
        worker = asyncio.current_task(self._running_loop())
        assert worker is not None
        try:
            for order_id in ids:
                if bulk.stopped:
                    return
                await self._bulk_confirm(order_id, bulk, worker)
        except asyncio.CancelledError:
            if self._closed is not None:
                bulk.close_out(self._closed)  # stopped by the client's close
            raise
        except BaseException as exc:  # a bug: the bulk raises it
            bulk.crash(exc)

    async def _bulk_confirm(self, order_id: str, bulk: _Bulk, worker: asyncio.Task[Any]) -> None:
        """One order of a bulk: :meth:`cancel_and_confirm`, a new job driven right here (``worker``)."""
        loop = self._running_loop()
        started = loop.time()
        deadline = started + bulk.timeout
        final = bulk.slice
        if deadline > bulk.end + MIN_TURN:  # the bulk's own deadline comes first
            deadline = bulk.end
            if deadline - started < MIN_TURN:
                bulk.record(order_id, naming(no_time_left(self.kind), order_id))
                return
            final = final_slice(deadline - started)
        registry = self._registry
        accounts = bulk.accounts  # (the order's account, as _Bulk.account, inlined)
        account = (
            bulk.default_account
            if accounts is None
            else accounts.get(order_id, bulk.default_account)
        )
        waiter, created = registry.register(order_id, started, account_id=account)
        job: _Job | None = None
        inline: _Inline | None = None
        try:
            job = self._bulk_job(waiter, created, started, deadline, bulk)
            if job is None:
                return  # recorded already
            driver = job.driver
            if driver is None or driver.done():
                # The worker drives the job in its own task (the drive inlined
                # here: no coroutine layer of its own on the bulk's hot path).
                until = deadline - final
                inline = _Inline(bulk, order_id, waiter, started)
                _drive_here(job, inline, until, worker)
                stopped = True
                try:
                    await self._drive(waiter, job, owned=False)
                    stopped = loop.time() >= until
                finally:
                    self._driven(waiter, job, inline, until, stopped, worker)
                if order_id not in bulk.pending or bulk.stopped:
                    return  # proven (or failed) during the drive: recorded then
            else:
                job.extend(deadline)
            outcome = await self._bulk_wait(waiter, job, started, deadline, final)
            bulk.record(order_id, outcome)
        finally:
            if inline is None or inline.held:
                self._let_go(waiter)
            if waiter.refs == 0 and not waiter.done and job is not None and job.driver:
                job.driver.cancel()  # a take-over nobody waits for any more

    def _let_go(self, waiter: Waiter) -> None:
        """A call on ``waiter`` is over: release it, and note when its account was used."""
        self._registry.release(waiter)
        if waiter.account_id is not None:
            self._used(waiter.account_id)

    def _bulk_job(
        self, waiter: Waiter, created: bool, started: float, deadline: float, bulk: _Bulk
    ) -> _Job | None:
        """The job of a bulk's order; ``None`` when its outcome is known before any send."""
        order_id = waiter.order_id
        if waiter.done:
            bulk.record(order_id, self._result(waiter, started))
            return None
        still_open = bulk.still_open
        if self._closed is not None or (still_open is not None and not still_open()):
            bulk.record(order_id, naming(ClientClosedError("the client is closed"), order_id))
            return None
        if not created:
            return _job(waiter)
        job = waiter.handle = _Job(deadline, CANCEL_RULES)
        return job

    def _driven(
        self,
        waiter: Waiter,
        job: _Job,
        inline: _Inline,
        until: float,
        stopped: bool,
        worker: asyncio.Task[Any],
    ) -> None:
        """``worker``'s drive of ``job`` ended (``stopped``: cut short, or ``until`` reached).

        If callers who joined still wait then, a task takes the job over for them.
        """
        del inline.bulk.driving[worker]
        job.driver = None
        job.inline = None
        job.deadline = max(until, inline.wanted)  # the job works for every caller again
        if stopped and _shared(inline) and job.error is None:
            self._take_over(waiter, job)

    def _take_over(self, waiter: Waiter, job: _Job) -> None:
        """A task drives on a job a bulk worker stopped driving, for the callers still waiting."""
        if self._closed is not None or job.deadline <= self._running_loop().time():
            return
        job.driver = self._spawn(self._resume_job(waiter, job), f"cancel {waiter.order_id}")

    async def _resume_job(self, waiter: Waiter, job: _Job) -> None:
        """:meth:`_drive`, after a look: the request cut short may have reached the API."""
        if job.acked_at is None and job.sent_at:
            cut = TransportError("the cancel was cut short by the bulk that sent it")
            try:
                step = job.send_failed(cut, self._running_loop().time())
                await self._after_failure(waiter, job, cut, step)
            except Exception as exc:  # a definite answer: every caller learns it now
                job.fail(exc)
                return
        await self._drive(waiter, job, owned=False)

    async def _bulk_wait(
        self, waiter: Waiter, job: _Job, started: float, deadline: float, final: float
    ) -> CancelResult | CadenzaError:
        """A bulk order's wait for proof after its drive (as :meth:`cancel_and_confirm`'s)."""
        await self._wait(waiter, job, deadline - final)
        if not waiter.done and job.error is None and self._closed is None:
            await self._final_wait(waiter, job, deadline)
        if waiter.outcome is not None:
            return self._result(waiter, started)
        error = self._unproven(waiter, job, deadline - started)
        if not isinstance(error, CadenzaError):
            raise error  # a bug: the bulk raises it
        return naming(error, waiter.order_id)

    def _check_call(self, order_id: str, account_id: str | None, timeout: float | None) -> float:
        """Refuse a malformed call before anything happens; the call's timeout."""
        check_order_id(order_id)
        if account_id is not None:
            check_account_id(account_id)
        return self._check_timeout(timeout)

    def _join(self, waiter: Waiter, created: bool, deadline: float) -> _Job:
        """The order's job (new, or shared and extended to ``deadline``), with a task driving it."""
        if created:
            job = _Job(deadline)
            waiter.handle = job
        else:
            job = _job(waiter)
            job.extend(deadline)
        driver = job.driver
        if driver is None or driver.done():
            job.driver = self._start_driver(waiter, job)
        return job

    @staticmethod
    def _result(waiter: Waiter, started: float) -> CancelResult:
        order = waiter.outcome
        source = waiter.source
        assert order is not None
        assert source is not None
        resolved_at = waiter.resolved_at
        if resolved_at is None:
            resolved_at = started
        # (comparisons, not max(): this runs once per cancel)
        latency = resolved_at - started if resolved_at > started else 0.0
        handle = waiter.handle
        acked_at = handle.acked_at if isinstance(handle, _Job) else None
        acked_after = None
        if acked_at is not None and acked_at <= resolved_at:
            acked_after = acked_at - started if acked_at > started else 0.0
        # (positional: CancelResult(order, cancelled, source, latency, acked_after))
        return CancelResult(
            order, order.status == OrderStatus.CANCELLED, source, latency, acked_after
        )


def _account_named_by(order: TradeOrder) -> str:
    """The account a looked-up order names; raises when it names none."""
    account = order.trading_account_id
    if not account:
        raise UnexpectedResponseError(
            f"the look-up of order {order.trade_order_id} did not name its trading account; "
            "pass trading_account_id="
        )
    return account
