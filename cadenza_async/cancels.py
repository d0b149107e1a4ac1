"""Cancel orchestration: turns a cancel request into exactly one proven outcome, on time.

This is the asyncio side of :class:`~cadenza_async.protocol.confirm.ConfirmationRegistry`.
The registry decides *whether* evidence proves a terminal state; this module
sends the cancels, feeds the registry with what the cancel's reply, the order
stream and REST look-ups say, and wakes the callers waiting on each order.

Two principles (DESIGN.md) shape it:

* **A deadline is a deadline.** Each call's ``timeout`` becomes one deadline
  (event-loop time) at the call. Every wait inside is bounded by it: the rate
  gate and a 429 pause, the request, the RPC, subscribing, each look-up, and
  the final look-up, which starts a reserved slice (:func:`final_slice`)
  before the deadline. The call returns or raises by the deadline plus the
  loop's scheduling slack (see the README: tens of milliseconds).
* **A cancel is a safety operation.** The request goes out first; nothing
  optional (subscribing the account, the stream being down) delays it. When
  the stream cannot prove the outcome, REST polling does (``source="rest"``).

How one order's cancel runs:

1. The waiter is registered before the request is sent (the event can beat the reply).
2. One *job* per order id, driven by one task the canceller owns, sends the
   cancel and proves its outcome; every caller of that order (concurrent calls,
   a ``cancel_nowait`` and a ``cancel_and_confirm``) shares the job and waits
   on a future of its own. The job is bounded by the latest deadline of the
   callers still waiting; it stops when the last caller leaves. So there is
   one request at a time per order, a caller leaving never restarts or
   duplicates it, and an acknowledged cancel is never sent again.
3. Proof from any source (event, reply, look-up) wakes every caller at once,
   whatever is still in flight; a request left behind finishes in its task.
   A bulk (:meth:`Canceller.confirm_many`) is the exception to "a task per
   job": its workers drive each new job in their own task, so the next
   order's request starts in the step that read the last reply (no task, and
   the garbage of one request freed where the next one is made). The order's
   outcome is still recorded the moment proof comes, and a task takes the
   job over for any other caller when the worker stops driving it first.
4. "Cannot cancel": the order's own state decides (a look-up).
5. A send that fails: if it provably never reached the API (refused, DNS,
   TLS, every answer a 5xx or 429) and the transport's retries are spent, that
   error is raised at once. If it may have reached it (a timeout, a reset
   after sending, a 504), the order is looked up and the cancel sent again
   with backoff while the deadline allows; a timeout then names the last send
   error as its ``__cause__``.
6. After the reply, the account's channel is subscribed (bounded by the
   deadline) and a gap look-up closes the window in which an event could be
   missed. While the channel is not live (stream down, closed for good, or
   the channel refused), the order is polled by REST with backoff.
7. A stream gap reconciles every pending waiter of the account by REST; a
   channel refused with 103 fails the account's pending cancels with
   :class:`~cadenza_async.errors.PermissionDeniedError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal

from ._alarm import Alarm
from ._callers import Callers, sleep_until
from ._tasks import TaskOwner
from ._validate import check_account_id, check_order_id, check_timeout
from .errors import (
    AuthenticationError,
    CadenzaError,
    ClientClosedError,
    ConfirmationTimeout,
    OrderNotCancellableError,
    OrderNotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    StreamRpcError,
    TransportError,
)
from .models import CancelResult, OrderStatus, TradeOrder
from .protocol.confirm import ConfirmationRegistry, Waiter
from .stream import account_of, channel_for
from .transports import CancelTransport, RpcCancel

if TYPE_CHECKING:
    from ._ratelimit import RateGate
    from .http import OrderPage
    from .stream import OrderStream

#: ``look_up(order_id, account_id, deadline)``: the order's current state by REST.
LookUp = Callable[[str, "str | None", "float | None"], Awaitable[TradeOrder]]
#: ``list_page(account_id, limit, offset, deadline)``: one page of the account's orders.
ListPage = Callable[[str, int, int, float], Awaitable["OrderPage"]]

__all__ = ["CancelHandle", "Canceller", "final_slice"]

log = logging.getLogger("cadenza_async.cancels")

_PERMISSION_DENIED: Final = 103
#: REST polling while the stream cannot prove: first look-up after this, doubling up to the cap.
POLL_FIRST: Final = 0.1
POLL_MAX: Final = 2.0
#: How long a stream that just lost its connection gets to come back (and recover the
#: events it missed) before the jobs it leaves without proof start polling REST.
RECONNECT_GRACE: Final = 0.5
#: Reconciliation by listing: an account with at least BATCH_MIN pending waiters is
#: listed (PAGE_SIZE orders a page, at most RECONCILE_PAGES pages) instead of
#: looked up order by order.
BATCH_MIN: Final = 4
RECONCILE_CONCURRENCY: Final = 32
PAGE_SIZE: Final = 500
RECONCILE_PAGES: Final = 20
#: Backoff between sends of a cancel that may have reached the API.
RESEND_FIRST: Final = 0.1
RESEND_MAX: Final = 1.0
#: Errors that answer the question for good: no retry, no timeout.
_DEFINITE: Final = (OrderNotFoundError, AuthenticationError, PermissionDeniedError)


def final_slice(timeout: float) -> float:
    """The part of a ``timeout`` reserved for the final REST look-up.

    A quarter of it, at least 0.25 s (half of a shorter timeout), at most 1 s.
    Starting the look-up early costs nothing but the request: proof from any
    source still ends the wait up to the deadline itself.
    """
    return min(1.0, max(0.25 * timeout, min(0.25, timeout / 2)))


class _Job(Callers):
    """One order's cancel: its callers' wake-up futures, its driver, what happened so far.

    Each caller waits on a future of its own, so cancelling one caller never
    disturbs the others sharing the job.
    """

    __slots__ = (
        "acked_at",
        "asked",
        "deadline",
        "driver",
        "gap_closed",
        "inline",
        "maybe_sent",
        "polled_at",
        "send_error",
        "sent_at",
    )

    def __init__(self, deadline: float) -> None:
        super().__init__()
        self.deadline = deadline  # the latest deadline among the callers still waiting
        self.acked_at: float | None = None  # when the cancel's own reply came
        self.send_error: CadenzaError | None = None  # the last failed send (a timeout's cause)
        self.maybe_sent = False  # a send may have reached the API
        self.sent_at = 0.0  # when the cancel last went out
        self.asked = False  # the account's channel was asked for (once per job)
        self.gap_closed = False  # the look-up after a late subscription was done
        self.polled_at = 0.0  # when REST was last asked about this order
        self.driver: asyncio.Task[None] | None = None
        # Set while a bulk worker drives the job in its own task (see Canceller.confirm_many).
        self.inline: _Inline | None = None

    def wake(self) -> None:
        """Wake every caller; a bulk driving the job records the outcome or error now."""
        if self.futures:  # (a bulk's job usually has no caller asleep: no call then)
            Callers.wake(self)
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
                self.record(inline.order_id, _naming(error, inline.order_id))
            else:
                self.crash(error)

    def crash(self, exc: BaseException) -> None:
        """A bug (not a :class:`CadenzaError`): the bulk raises it."""
        if not self.finished.done():
            self.finished.set_exception(exc)

    def close_out(self, error: ClientClosedError) -> None:
        """The client closed under the bulk: every order without an outcome gets ``error``."""
        for order_id in list(self.pending):
            self.record(order_id, _naming(ClientClosedError(str(error)), order_id))


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


def _out_of_time(job: _Job) -> None:
    """The job's deadline came before its next send: raise if nothing was ever sent.

    (The job's task started too late: a loop stalled past the deadline.) A
    caller then learns that the cancel never went out, not "may have been sent".
    """
    if not job.sent_at:
        raise TransportError(
            "the deadline passed before the cancel could be sent", maybe_sent=False
        )


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


class Canceller:
    """Sends cancels over HTTP or the stream and waits for their proof; owns jobs and their tasks.

    Owned by :class:`~cadenza_async.CadenzaClient`, which gives it the
    transports (the HTTP cancel and the REST look-up; :meth:`attach_stream`
    adds the RPC cancel), the rate gate and the registry, and routes the
    stream's decoded order events to :meth:`observe_event`. Tests give it
    fakes of the same shape.
    """

    def __init__(
        self,
        *,
        http_cancel: CancelTransport,
        look_up_order: LookUp,
        gate: RateGate,
        list_page: ListPage | None = None,
        registry: ConfirmationRegistry,
        cancel_via: Literal["http", "ws"],
        confirm_timeout: float,
        request_timeout: float,
        default_account: str | None = None,
    ) -> None:
        self._get_order = look_up_order
        self._gate = gate
        self._registry = registry
        self._http_cancel = http_cancel
        self._rpc_cancel: CancelTransport | None = None
        self._stream: OrderStream | None = None
        self._cancel_via = cancel_via
        self._confirm_timeout = confirm_timeout
        self._default_slice = final_slice(confirm_timeout)
        self._request_timeout = request_timeout
        self._default_account = default_account
        self._closed: ClientClosedError | None = None
        self._tasks = TaskOwner(log)
        self._alarm = Alarm()  # one loop timer for every wait
        self._degraded = False
        self._down_since: float | None = None  # when the stream last lost its connection
        self._list_page = list_page
        self._listings: dict[str, asyncio.Task[set[str] | None]] = {}
        self._listed_at: dict[str, float] = {}  # when the last listing of an account started
        # Reconciliation and polling share this many REST requests at once, so a
        # reconnect with thousands of pending cancels queues here, not in the pool.
        self._rest_slots = asyncio.Semaphore(RECONCILE_CONCURRENCY)
        self._idle_after: float | None = None
        self._pinned: Callable[[str], bool] = lambda _account: True
        self._last_used: dict[str, float] = {}  # account -> when its last cancel ended
        self._sweeper: asyncio.Task[None] | None = None
        self._ever_up = False
        self.rest_polls = 0
        self._loop: asyncio.AbstractEventLoop | None = None  # (see _running_loop)

    # -- life ------------------------------------------------------------------

    async def aclose(self) -> None:
        """The client is closing: every caller still waiting gets ``ClientClosedError`` at once.

        Requests and look-ups still running are stopped.
        """
        if self._closed is None:
            self._closed = ClientClosedError(
                "the client was closed before the cancel was confirmed"
            )
        for waiter in list(self._registry.pending()):
            _job(waiter).wake()
        await self._tasks.aclose()
        self._alarm.close()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        """The client's event loop (the running one), looked up once.

        On Python 3.11 every ``asyncio.get_running_loop()`` makes a getpid()
        system call, and a cancel reads the clock several times.
        """
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Start a task the canceller owns (cancelled and awaited by :meth:`aclose`)."""
        return self._tasks.spawn(coro, name)

    def _start_driver(self, waiter: Waiter, job: _Job) -> asyncio.Task[None]:
        """Start the task that drives a job (one per cancel: no done callback, see :meth:`_drive`)."""
        return self._tasks.spawn(
            self._drive(waiter, job), f"cancel {waiter.order_id}", watched=False
        )

    # -- the stream side -------------------------------------------------------

    def attach_stream(self, stream: OrderStream) -> None:
        """Use ``stream`` for events, subscriptions and (``cancel_via="ws"``) RPC cancels."""
        self._stream = stream
        self._rpc_cancel = RpcCancel(stream, self._gate, self._request_timeout)

    @property
    def degraded(self) -> bool:
        """True while the stream cannot prove cancels (down or closed for good): REST polls."""
        return self._degraded

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

    def stream_state(self, state: str) -> None:
        """The stream's state changed: note entering and leaving degraded mode, once each."""
        now = self._running_loop().time()
        if state == "connected":
            self._ever_up = True
            self._down_since = None
        elif self._down_since is None and (state != "connecting" or not self._ever_up):
            self._down_since = now
        if state == "connecting" or self._closed is not None:
            return
        down = state != "connected"
        if down == self._degraded:
            return
        self._degraded = down
        if down:
            self._resume()
            log.warning(
                "order stream %s: cancels are proven by REST polling until it is back", state
            )
        else:
            log.info("order stream connected: cancels are proven by its events again")

    def stream_failed(self, exc: CadenzaError) -> None:
        """The stream stopped for good: cancels go on, proven by REST from now on."""
        log.error("order stream stopped for good (%s): cancels are proven by REST", exc)
        self.stream_state("closed")

    def observe_event(self, order: TradeOrder, account: str | None) -> None:
        """An order update from the stream; wakes the callers of the waiter it resolves."""
        now = self._running_loop().time()
        waiter = self._registry.observe(order, "ws", now, channel_account=account)
        if waiter is not None:
            job = waiter.handle  # (as _job(waiter), inlined: once per event)
            assert isinstance(job, _Job)
            job.wake()

    def channel_gap(self, channel: str) -> None:
        """Continuity on ``channel`` was lost: reconcile its account's pending waiters by REST."""
        if self._closed is None:
            account = account_of(channel)
            self._spawn(self.reconcile_pending(account), f"reconcile {channel}")
            self._resume(account)  # a channel dropped for good leaves its jobs to REST

    def channel_refused(self, channel: str, error: StreamRpcError) -> None:
        """The server refused ``channel``; 103 fails its account's pending cancels."""
        account = account_of(channel)
        if account is None:
            return
        if error.errno != _PERMISSION_DENIED:
            self._resume(account)  # the jobs see the channel is not live and poll by REST
            return
        for waiter in self._registry.pending_for_account(account):
            failure = PermissionDeniedError(
                f"no access to trading account {account}: {error.message}", errno=error.errno
            )
            failure.order_id = waiter.order_id
            _job(waiter).fail(failure)

    def _resume(self, account: str | None = None) -> None:
        """Start proving again for the acknowledged jobs (of one account) no task drives now."""
        if self._closed is not None:
            return
        pending = (
            self._registry.pending()
            if account is None
            else self._registry.pending_for_account(account)
        )
        for waiter in list(pending):
            job = waiter.handle
            if not isinstance(job, _Job) or job.acked_at is None or job.error is not None:
                continue
            driver = job.driver
            if driver is None or driver.done():
                job.driver = self._start_driver(waiter, job)

    # -- look-ups ----------------------------------------------------------------

    async def look_up(self, waiter: Waiter, deadline: float | None = None) -> None:
        """One REST look-up of a waiter's order; wakes its callers if the answer is terminal.

        Raises what the look-up raises (``TransportError``, ``OrderNotFoundError``, ...).
        """
        order = await self._get_order(waiter.order_id, waiter.account_id, deadline)
        if waiter.done:
            return
        now = self._running_loop().time()
        if self._registry.resolve_from_rest(order, now) is not None:
            _job(waiter).wake()

    async def reconcile_pending(
        self, account_id: str | None = None, *, concurrency: int = 16
    ) -> int:
        """Reconcile every pending waiter (of one account, or all) by REST; returns how many.

        Per account: the account's orders are listed page by page (at most
        :data:`RECONCILE_PAGES` pages of :data:`PAGE_SIZE`, stopping once every
        pending waiter of the account was seen), and only the waiters the
        pages did not cover are looked up one by one (``concurrency`` at a
        time). Failures are logged and left to the jobs, which poll while the
        stream cannot prove.
        """
        if account_id is None:
            waiters = list(self._registry.pending())
        else:
            waiters = list(self._registry.pending_for_account(account_id))
            waiters += [w for w in self._registry.pending() if w.account_id is None]
        if not waiters:
            return 0
        by_account: dict[str | None, list[Waiter]] = {}
        for waiter in waiters:
            by_account.setdefault(waiter.account_id, []).append(waiter)
        limit = asyncio.Semaphore(concurrency)
        leftovers: list[Waiter] = []

        async def account(acc: str | None, group: list[Waiter]) -> None:
            if acc is None or self._list_page is None or len(group) < BATCH_MIN:
                leftovers.extend(group)
                return
            missed = await self._list_account(acc, group)
            leftovers.extend(group if missed is None else missed)

        await asyncio.gather(*(account(acc, group) for acc, group in by_account.items()))

        async def one(waiter: Waiter) -> None:
            async with limit, self._rest_slots:
                if waiter.done:
                    return
                try:
                    await self.look_up(waiter, _job(waiter).deadline)
                except CadenzaError as exc:
                    log.warning(
                        "reconciling order %s failed: %s", waiter.order_id, type(exc).__name__
                    )

        await asyncio.gather(*(one(w) for w in leftovers))
        return len(waiters)

    async def _list_account(
        self, account: str, waiters: list[Waiter], deadline: float | None = None
    ) -> list[Waiter] | None:
        """List ``account``'s orders to settle ``waiters``; returns the ones the pages missed.

        ``None`` when the listing failed or did not end by ``deadline``.
        Shared: a listing of the account already under way is joined, not
        repeated. ``deadline`` bounds this caller's wait (the listing goes on).
        """
        running = self._listings.get(account)
        if running is None:
            self._listed_at[account] = self._running_loop().time()
            running = self._spawn(self._list_pages(account), f"list {account}")
            self._listings[account] = running
            running.add_done_callback(lambda _t: self._listings.pop(account, None))
        timeout = None if deadline is None else deadline - self._running_loop().time()
        await asyncio.wait((running,), timeout=timeout)
        if not running.done() or running.cancelled():
            return None
        seen = running.result()
        if seen is None:
            return None
        return [w for w in waiters if not w.done and w.order_id not in seen]

    async def _list_pages(self, account: str) -> set[str] | None:
        """The account's orders, page by page, fed to the registry; the ids the pages held.

        ``None`` when the listing failed (logged; the jobs poll again later).
        """
        try:
            return await self._list_pages_of(account)
        except CadenzaError as exc:
            log.warning("listing the orders of %s failed: %s", account, type(exc).__name__)
            return None

    async def _list_pages_of(self, account: str) -> set[str]:
        list_page = self._list_page
        assert list_page is not None
        loop = self._running_loop()
        wanted = {w.order_id for w in self._registry.pending_for_account(account)}
        deadline = loop.time() + self._request_timeout
        seen: set[str] = set()
        offset = 0
        for _ in range(RECONCILE_PAGES):
            async with self._rest_slots:
                page = await list_page(account, PAGE_SIZE, offset, deadline)
            now = loop.time()
            for order in page.orders:
                seen.add(order.trade_order_id)
                waiter = self._registry.resolve_from_rest(order, now)
                if waiter is not None:
                    _job(waiter).wake()
            more = page.pagination.has_next if page.pagination is not None else None
            if not page.orders or wanted <= seen or more is False:
                break
            if more is None and len(page.orders) < PAGE_SIZE:
                break
            offset += len(page.orders)
        return seen

    # -- sending -----------------------------------------------------------------

    def send_cancel(
        self,
        order_id: str,
        account_id: str | None,
        *,
        via: Literal["http", "ws"] | None = None,
        deadline: float | None = None,
    ) -> Awaitable[TradeOrder]:
        """Send one cancel (paced by the rate gate); await it for the order from its reply.

        ``via="ws"`` uses the RPC when the stream is connected and the order's
        account is known (the default account is tried when none is given,
        and HTTP when the order is not on it); otherwise the cancel goes over
        HTTP. ``deadline`` (event-loop time) bounds the whole send. A plain
        function: the HTTP cancel, the usual one, costs no coroutine of its own.
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
            rpc_account = account_id or self._default_account
            if rpc_account is not None:
                return self._send_rpc(order_id, account_id, rpc_account, deadline)
        return self._http_cancel.cancel(order_id, account_id, deadline=deadline)

    async def _send_rpc(
        self, order_id: str, account_id: str | None, rpc_account: str, deadline: float
    ) -> TradeOrder:
        rpc = self._rpc_cancel
        assert rpc is not None
        try:
            return await rpc.cancel(order_id, rpc_account, deadline=deadline)
        except (OrderNotFoundError, PermissionDeniedError):
            if account_id is not None:
                raise
        # The default account was a guess and the order is not on it:
        # the HTTP cancel needs no account, and its reply names it.
        return await self._http_cancel.cancel(order_id, account_id, deadline=deadline)

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
            named = _naming(exc, order_id)
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
    ) -> None:
        """Cancel and confirm each of ``order_ids`` (valid and unique), ``concurrency`` at a time.

        ``record(order_id, outcome)`` is called once per order, as soon as its
        outcome (a :class:`CancelResult` or its error) is known; this returns
        once every order has one. Each order keeps the rules of
        :meth:`cancel_and_confirm` and its own ``timeout`` from when its turn
        comes. ``accounts`` maps an order to its account (default
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
            job = self._bulk_job(waiter, created, started, bulk)
            if job is None:
                return  # recorded already
            driver = job.driver
            if driver is None or driver.done():
                # The worker drives the job in its own task (the drive inlined
                # here: no coroutine layer of its own on the bulk's hot path).
                until = deadline - bulk.slice
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
            bulk.record(order_id, await self._bulk_wait(waiter, job, started, deadline, bulk))
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

    def _bulk_job(self, waiter: Waiter, created: bool, started: float, bulk: _Bulk) -> _Job | None:
        """The job of a bulk's order; ``None`` when its outcome is known before any send."""
        order_id = waiter.order_id
        if waiter.done:
            bulk.record(order_id, self._result(waiter, started))
            return None
        still_open = bulk.still_open
        if self._closed is not None or (still_open is not None and not still_open()):
            bulk.record(order_id, _naming(ClientClosedError("the client is closed"), order_id))
            return None
        if not created:
            return _job(waiter)
        job = waiter.handle = _Job(started + bulk.timeout)
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
            job.maybe_sent = True
            try:
                await self.look_up(waiter, job.deadline)
            except _RETRIABLE:
                pass
            except Exception as exc:  # a definite answer: every caller learns it now
                job.fail(exc)
                return
            loop = self._running_loop()
            last = waiter.last_known
            if waiter.outcome is not None or (
                last is not None and last.status == OrderStatus.PENDING_CANCEL
            ):
                job.acked_at = loop.time()  # it got through
            else:  # still open: send again after the backoff, as after a failed send
                await sleep_until(job, self._alarm, min(job.deadline, loop.time() + RESEND_FIRST))
        await self._drive(waiter, job, owned=False)

    async def _bulk_wait(
        self, waiter: Waiter, job: _Job, started: float, deadline: float, bulk: _Bulk
    ) -> CancelResult | CadenzaError:
        """A bulk order's wait for proof after its drive (as :meth:`cancel_and_confirm`'s)."""
        await self._wait(waiter, job, deadline - bulk.slice)
        if not waiter.done and job.error is None and self._closed is None:
            await self._final_wait(waiter, job, deadline)
        if waiter.outcome is not None:
            return self._result(waiter, started)
        error = self._unproven(waiter, job, bulk.timeout)
        if not isinstance(error, CadenzaError):
            raise error  # a bug: the bulk raises it
        return _naming(error, waiter.order_id)

    def _check_call(self, order_id: str, account_id: str | None, timeout: float | None) -> float:
        """Refuse a malformed call before anything happens; the call's timeout."""
        check_order_id(order_id)
        if account_id is not None:
            check_account_id(account_id)
        return self._check_timeout(timeout)

    def _check_timeout(self, timeout: float | None) -> float:
        """The call's timeout (the default for ``None``); refused when the client is closed."""
        seconds = check_timeout(timeout)
        timeout = self._confirm_timeout if seconds is None else seconds
        if self._closed is not None:
            raise ClientClosedError("the client is closed")
        return timeout

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

    def _final_slice(self, timeout: float) -> float:
        """:func:`final_slice` of ``timeout`` (computed once for the default timeout)."""
        if timeout == self._confirm_timeout:
            return self._default_slice
        return final_slice(timeout)

    async def _final_wait(self, waiter: Waiter, job: _Job, deadline: float) -> None:
        """The last slice of a call: the final look-up runs, proof from any source ends it.

        Rule 6: the final look-up runs inside the deadline; proof from any
        source still ends the wait, up to the deadline itself.
        """
        final = self._spawn(self._final_look_up(waiter, deadline), f"look up {waiter.order_id}")
        try:
            await self._wait(waiter, job, deadline)
        finally:
            final.cancel()

    def _unproven(self, waiter: Waiter, job: _Job, timeout: float) -> BaseException:
        """What a caller without proof raises: the job's error, a close, or a timeout."""
        if job.error is not None:
            return job.error
        if self._closed is not None:
            return ClientClosedError(
                f"the client was closed before the cancel of {waiter.order_id} was confirmed"
            )
        cause = job.send_error
        if cause is None and job.acked_at is None and job.sent_at:
            cause = TransportError("the cancel got no answer before the deadline")
        error = ConfirmationTimeout(waiter.order_id, waiter.last_known, timeout)
        error.__cause__ = cause
        return error

    async def _wait(self, waiter: Waiter, job: _Job, until: float) -> None:
        """Return when the waiter is proven, the job failed, the client closed, or at ``until``."""
        loop = self._running_loop()
        while not waiter.done and job.error is None and self._closed is None:
            if loop.time() >= until:
                return
            await sleep_until(job, self._alarm, until)

    async def _final_look_up(self, waiter: Waiter, deadline: float) -> None:
        try:
            await self.look_up(waiter, deadline)
        except CadenzaError as exc:
            log.debug("final look-up of %s failed: %s", waiter.order_id, type(exc).__name__)

    # -- the job -------------------------------------------------------------------

    async def _drive(self, waiter: Waiter, job: _Job, owned: bool = True) -> None:
        """Send the cancel until acknowledged, then prove its outcome; for every caller.

        ``owned``: run as a task of its own, started unwatched (it forgets
        itself as it ends); ``False`` when a bulk worker or a take-over runs it.
        """
        try:
            if job.acked_at is None:
                await self._send(waiter, job)
            if not waiter.done and job.error is None:
                since = self._live_since(waiter)
                if since is None or since > job.sent_at:
                    # (the usual case, a channel live before the send, needs no _prove
                    # coroutine: the event will prove it)
                    await self._prove(waiter, job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a definite answer (or a bug): every caller learns it now
            job.fail(exc)
        finally:
            if owned:
                # started unwatched: forget itself
                self._tasks.discard(asyncio.current_task(self._running_loop()))

    async def _send(self, waiter: Waiter, job: _Job) -> None:
        """Send until a reply acknowledges the cancel (or proves the order final).

        Raises a definite error: never sent (refused, rate limited past the
        deadline, every answer a 5xx) or refused by the API.
        """
        loop = self._running_loop()
        delay = RESEND_FIRST
        while not waiter.done:
            now = loop.time()
            if now >= job.deadline:
                _out_of_time(job)  # (raises if nothing was ever sent)
                return
            job.sent_at = now
            try:
                order = await self.send_cancel(
                    waiter.order_id, waiter.account_id, deadline=job.deadline
                )
            except OrderNotCancellableError:
                # Rule 3: already final (or racing a fill): the order's own state decides.
                job.acked_at = loop.time()
                with contextlib.suppress(*_RETRIABLE):
                    await self.look_up(waiter, job.deadline)
                return
            except (TransportError, ServerError, RateLimitError) as exc:
                if loop.time() >= job.deadline and job.maybe_sent:
                    job.send_error = exc
                    return  # the deadline, not this error, ends it: a timeout with its cause
                job.maybe_sent = job.maybe_sent or exc.maybe_sent
                job.send_error = exc
                if not job.maybe_sent:
                    raise  # provably never reached the API, retries spent: say so now
                # Rule 4: it may have been applied. Look, then send again if still open.
                with contextlib.suppress(*_RETRIABLE):
                    await self.look_up(waiter, job.deadline)
                last = waiter.last_known
                proven = waiter.outcome is not None
                if proven or (last is not None and last.status == OrderStatus.PENDING_CANCEL):
                    job.acked_at = loop.time()  # an earlier attempt got through
                    return
                await sleep_until(job, self._alarm, min(job.deadline, loop.time() + delay))
                delay = min(delay * 2, RESEND_MAX)
                continue
            if waiter.outcome is not None:
                return  # proven while the reply travelled: nothing to add
            now = loop.time()
            job.acked_at = now
            if self._registry.resolve_from_http(order, now) is not None:
                job.wake()
            elif waiter.account_id is None:
                self._registry.learn_account(waiter, order.trading_account_id)
            return

    async def _prove(self, waiter: Waiter, job: _Job) -> None:
        """Prove the outcome: leave it to the stream's events while the channel is live, else poll.

        Nothing here waits on the stream: the account's channel is asked for
        (:meth:`OrderStream.want`) and used once live. A channel that became
        live after the cancel went out may have missed its event: one gap
        look-up closes that window. While the channel is live this returns
        (the event wakes the callers); when the stream goes down, the
        canceller starts it again for every pending job (:meth:`_resume`).
        """
        loop = self._running_loop()
        stream = self._stream
        channel = None if waiter.account_id is None else channel_for(waiter.account_id)
        delay = POLL_FIRST
        next_poll: float | None = None
        while not waiter.done and job.error is None and loop.time() < job.deadline:
            since = self._live_since(waiter)
            if since is not None:
                if since <= job.sent_at or job.gap_closed:
                    return  # live: the event proves it
                job.gap_closed = True  # the event may have come before the subscription
                await self._poll(waiter, job)
                continue
            self._ask_for(job, stream, channel)
            if next_poll is None:
                next_poll = self._next_poll(loop.time() + delay, stream)
            if loop.time() < next_poll:
                changed = None if stream is None else stream.changed()
                await sleep_until(job, self._alarm, min(job.deadline, next_poll), changed)
                continue
            self.rest_polls += 1
            job.gap_closed = True
            await self._poll(waiter, job)
            delay, next_poll = min(delay * 2, POLL_MAX), None

    def _live_since(self, waiter: Waiter) -> float | None:
        """Since when the waiter's account channel is live (loop time); ``None``: not live."""
        stream = self._stream
        account = waiter.account_id
        if stream is None or account is None:
            return None
        return stream.live_since(channel_for(account))

    @staticmethod
    def _ask_for(job: _Job, stream: OrderStream | None, channel: str | None) -> None:
        """Ask the stream for the job's channel, once per job (a refused one is not asked again)."""
        if job.asked or stream is None or channel is None:
            return
        job.asked = True
        with contextlib.suppress(CadenzaError):
            stream.want(channel)  # subscribed now, or when the stream is back

    def _next_poll(self, at: float, stream: OrderStream | None) -> float:
        """When to poll next: ``at``, or later while a stream that just dropped may come back."""
        down_since = self._down_since
        if down_since is not None and stream is not None and stream.failure is None:
            return max(at, down_since + RECONNECT_GRACE)  # time to reconnect and recover
        return at

    async def _poll(self, waiter: Waiter, job: _Job) -> None:
        """One look-up for the job; a definite answer (not found, auth) fails it.

        When many jobs of one account poll (the stream down, a gap), they
        share one listing of the account instead of one look-up each.
        """
        account = waiter.account_id
        polled_before = max(job.polled_at, job.sent_at)
        job.polled_at = self._running_loop().time()
        if (
            account is not None
            and self._list_page is not None
            and self._registry.pending_count_for_account(account) >= BATCH_MIN
        ):
            if self._listed_at.get(account, -math.inf) > polled_before:
                return  # a listing that started since this job's last look covered it
            missed = await self._list_account(account, [waiter], job.deadline)
            if missed is None or not missed:
                return  # listed (or the listing failed: no storm of look-ups; next poll)
        try:
            async with self._rest_slots:
                await self.look_up(waiter, job.deadline)
        except _RETRIABLE as exc:
            log.debug("look-up of %s failed: %s", waiter.order_id, type(exc).__name__)

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


#: Look-up failures that leave the question open (the job polls or resends).
_RETRIABLE: Final = (TransportError, ServerError, RateLimitError)


def _naming(exc: CadenzaError, order_id: str) -> CadenzaError:
    """``exc`` naming ``order_id``: one error can reach many callers (a dropped link
    fails every RPC at once), and each caller's error names its own order."""
    if exc.order_id is None:
        exc.order_id = order_id
        return exc
    if exc.order_id != order_id:
        return _for_order(exc, order_id)
    return exc


def _for_order(exc: CadenzaError, order_id: str) -> CadenzaError:
    """A copy of ``exc`` (same type, message and attributes) that names ``order_id``."""
    clone = type(exc).__new__(type(exc))
    clone.args = exc.args
    clone.__dict__.update(exc.__dict__)
    clone.order_id = order_id
    return clone
