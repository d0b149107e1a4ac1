"""ProofEngine: the one asyncio driver of the proof job, shared by cancels and submits.

The rules are sans-I/O (:mod:`cadenza_async.protocol.proof`: when to send,
send again, look up, poll, give up); what proves an outcome is a registry's
(:mod:`~cadenza_async.protocol.confirm` for cancels,
:mod:`~cadenza_async.protocol.placement` for submits). This module does the
I/O between them, once, for both kinds of work:

* one *job* per key (an order's cancel, a submit's ``clientOrderId``), every
  caller of the key sharing it, each waiting on a future of its own
  (:class:`~cadenza_async._callers.CallersMixin`), the job bounded by the latest
  deadline of its callers;
* one task drives a job: it sends until acknowledged (:meth:`ProofEngine._send`,
  retrying what never reached the API while the deadline allows, looking
  before sending again what may have), then proves the outcome
  (:meth:`ProofEngine._prove`): the stream's event while the account's
  channel is live, else REST polls, one listing of the account shared by its
  jobs when several poll;
* the stream's view, for every job: degraded mode (a stream down or closed
  for good), the reconnect grace, gaps and 112 (the account reconciled by
  REST at once), bad events (likewise), 103 (the account's jobs fail with
  :class:`~cadenza_async.errors.PermissionDeniedError`);
* the final look-up in the reserved slice before a caller's deadline, and
  what a caller without proof raises.

A subclass is a *policy*: how one request goes out (:meth:`ProofEngine._send_once`),
what its reply proves (:meth:`ProofEngine._replied`), whether the API has
a request that may have been applied (:meth:`ProofEngine._presence`), how one
look-up feeds the registry (:meth:`ProofEngine._look_up`), the key of an
entry and of a listed order, and the timeout it raises
(:class:`~cadenza_async.cancels.Canceller`, :class:`~cadenza_async.placing.Placer`).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic, Protocol, TypeVar

from ._alarm import Alarm
from ._callers import CallersMixin, sleep_until
from ._tasks import TaskOwner
from ._validate import check_timeout
from .errors import (
    CadenzaError,
    ClientClosedError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    StreamRpcError,
    TransportError,
)
from .models import TradeOrder
from .protocol.proof import (
    BATCH_MIN,
    CANCEL_RULES,
    Action,
    Pager,
    ProofJob,
    Rules,
    Step,
    final_slice,
)
from .stream import account_of, channel_for

if TYPE_CHECKING:
    from .http import OrderPage
    from .stream import OrderStream

__all__ = ["MIN_TURN", "RETRIABLE", "Job", "ListOrders", "ProofEngine", "naming", "no_time_left"]

#: ``list_orders(account, since_ms, limit, offset, cursor, deadline)``: one page of an
#: account's orders (created since ``since_ms`` and newest first, when given).
ListOrders = Callable[
    [str, "int | None", int, "int | None", "str | None", float], Awaitable["OrderPage"]
]

#: A reconciliation or a poll lists this many orders a page, at most this many pages.
PAGE_SIZE: Final = 500
RECONCILE_PAGES: Final = 20
#: Reconciliation and polling share this many REST requests at once, so a reconnect
#: with thousands of pending jobs queues here, not in the connection pool.
REST_CONCURRENCY: Final = 32
_PERMISSION_DENIED: Final = 103

#: An order of a bulk whose turn comes with less than this left of the bulk's deadline is
#: not sent: no request could be made and answered in that time.
MIN_TURN: Final = 0.01

#: Look-up failures that leave the question open (the job polls again, or looks again).
RETRIABLE: Final = (TransportError, ServerError, RateLimitError)


class Entry(Protocol):
    """What a registry keeps for one key (a cancel's ``Waiter``, a submit's ``Placement``)."""

    done: bool
    outcome: TradeOrder | None
    last_known: TradeOrder | None
    handle: object | None
    refs: int

    @property
    def account_id(self) -> str | None: ...


E = TypeVar("E", bound=Entry)
J = TypeVar("J", bound="Job")


class Registry(Protocol[E]):
    """The registry calls the engine makes (both registries have them)."""

    def pending(self) -> Iterator[E]: ...

    def pending_for_account(self, account_id: str) -> list[E]: ...

    def pending_count_for_account(self, account_id: str) -> int: ...

    def resolve_from_rest(self, order: TradeOrder, now: float) -> E | None: ...


class Job(ProofJob, CallersMixin):
    """One job: its rules' state (:class:`~cadenza_async.protocol.proof.ProofJob`), its
    callers' futures, the task driving it, and whether its channel was asked for."""

    __slots__ = ("asked", "driver", "error", "futures")

    def __init__(self, deadline: float, rules: Rules = CANCEL_RULES) -> None:
        ProofJob.__init__(self, deadline, rules)
        CallersMixin.__init__(self)
        self.asked = False  # the account's channel was asked for (once per job)
        self.driver: asyncio.Task[None] | None = None


def no_time_left(kind: str) -> TransportError:
    """What a bulk's order whose turn came too late learns: it was never sent."""
    return TransportError(
        f"the bulk's deadline passed before this {kind} could be sent", maybe_sent=False
    )


def naming(exc: CadenzaError, key: str) -> CadenzaError:
    """``exc`` naming ``key`` as its ``order_id``: one error can reach many callers (a
    dropped link fails every RPC at once), and each caller's names its own order."""
    if exc.order_id is None:
        exc.order_id = key
        return exc
    if exc.order_id != key:
        clone = type(exc).__new__(type(exc))
        clone.args = exc.args
        clone.__dict__.update(exc.__dict__)
        clone.order_id = key
        return clone
    return exc


class ProofEngine(abc.ABC, Generic[E, J]):
    """The driver of one kind of work's jobs (see the module docstring); a subclass is its policy."""

    #: What the work is called in messages ("cancel", "submit").
    kind: ClassVar[str] = "request"
    #: Whether entering and leaving degraded mode is logged by this engine (once per
    #: client: the canceller's, on the ``cadenza_async.cancels`` logger).
    announces: ClassVar[bool] = True

    def __init__(
        self,
        *,
        registry: Registry[E],
        list_orders: ListOrders | None,
        confirm_timeout: float,
        request_timeout: float,
        log: logging.Logger,
    ) -> None:
        self._registry = registry
        self._list_orders = list_orders
        self._confirm_timeout = confirm_timeout
        self._default_slice = final_slice(confirm_timeout)
        self._request_timeout = request_timeout
        self._log = log
        self._stream: OrderStream | None = None
        self._closed: ClientClosedError | None = None
        self._tasks = TaskOwner(log)
        self._alarm = Alarm()  # one loop timer for every wait
        self._degraded = False
        self._down_since: float | None = None  # when the stream last lost its connection
        self._ever_up = False
        self._up = False
        self._listings: dict[str, asyncio.Task[set[str] | None]] = {}
        self._listed_at: dict[str, float] = {}  # when the last listing of an account started
        self._rest_slots = asyncio.Semaphore(REST_CONCURRENCY)
        # accounts being reconciled after a bad event -> one more run asked meanwhile
        self._bad_event_runs: dict[str, bool] = {}
        self.rest_polls = 0  # REST requests made to prove (look-ups and listing pages)
        self._loop: asyncio.AbstractEventLoop | None = None  # (see _running_loop)

    # -- the policy ---------------------------------------------------------------

    @abc.abstractmethod
    def _send_once(self, entry: E, job: J) -> Awaitable[TradeOrder | None]:
        """Send the request once; the order its reply shows (None: acknowledged, no order).

        Raises the SDK's errors; the engine decides what each means (the rules).
        """

    @abc.abstractmethod
    def _replied(self, entry: E, job: J, order: TradeOrder | None, now: float) -> None:
        """A reply came: feed it to the registry (and wake the callers of what it proves)."""

    @abc.abstractmethod
    async def _presence(self, entry: E, job: J) -> bool | None:
        """After a send that may have been applied: does the API have it (None: cannot tell)."""

    @abc.abstractmethod
    async def _look_up(self, entry: E, deadline: float) -> None:
        """One REST look-up of the entry's order, fed to the registry (raises its errors)."""

    @abc.abstractmethod
    def _key(self, entry: E) -> str:
        """The entry's key in listings and messages (the order id, the ``clientOrderId``)."""

    @abc.abstractmethod
    def _listed_key(self, order: TradeOrder) -> str | None:
        """The key a listed order stands for (:meth:`_key`'s counterpart)."""

    @abc.abstractmethod
    def _timeout(self, entry: E, job: J, timeout: float) -> CadenzaError:
        """What a caller raises when no proof came in time."""

    def _listing_since(self, account: str) -> int | None:
        """Listings of ``account`` keep orders created since then (Unix ms); None: all."""
        return None

    # -- life ---------------------------------------------------------------------

    async def aclose(self) -> None:
        """The client is closing: every caller still waiting gets ``ClientClosedError`` at once.

        Requests and look-ups still running are stopped.
        """
        if self._closed is None:
            self._closed = ClientClosedError(
                f"the client was closed before the {self.kind} was confirmed"
            )
        for entry in list(self._registry.pending()):
            job = entry.handle
            if isinstance(job, Job):
                job.wake()
        await self._tasks.aclose()
        self._alarm.close()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        """The client's event loop (the running one), looked up once.

        On Python 3.11 every ``asyncio.get_running_loop()`` makes a getpid()
        system call, and a job reads the clock several times.
        """
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Start a task the engine owns (cancelled and awaited by :meth:`aclose`)."""
        return self._tasks.spawn(coro, name)

    def _start_driver(self, entry: E, job: J) -> asyncio.Task[None]:
        """Start the task that drives a job (no done callback: see :meth:`_drive`)."""
        return self._tasks.spawn(
            self._drive(entry, job), f"{self.kind} {self._key(entry)}", watched=False
        )

    def _final_slice(self, timeout: float) -> float:
        """:func:`final_slice` of ``timeout`` (computed once for the default timeout)."""
        if timeout == self._confirm_timeout:
            return self._default_slice
        return final_slice(timeout)

    def _check_timeout(self, timeout: float | None) -> float:
        """A call's timeout (the default when None); raises before anything is sent."""
        seconds = check_timeout(timeout)
        if self._closed is not None:
            raise ClientClosedError("the client is closed")
        return self._confirm_timeout if seconds is None else seconds

    # -- the stream ---------------------------------------------------------------

    def attach_stream(self, stream: OrderStream) -> None:
        """Use ``stream`` for events and subscriptions."""
        self._stream = stream

    @property
    def degraded(self) -> bool:
        """True while the stream cannot prove (down or closed for good): REST polls."""
        return self._degraded

    def stream_state(self, state: str) -> None:
        """The stream's state changed: note entering and leaving degraded mode, once each."""
        now = self._running_loop().time()
        if state == "connected":
            # (the last drop's time is kept: the channels resubscribe, and recover, a
            # moment after the connection is back; polls wait out the grace from the drop)
            self._ever_up = True
            self._up = True
        elif (self._up or self._down_since is None) and (
            state != "connecting" or not self._ever_up
        ):
            self._down_since = now
            self._up = False
        if state == "connecting" or self._closed is not None:
            return
        down = state != "connected"
        if down == self._degraded:
            return
        self._degraded = down
        if down:
            self._resume()
        if not self.announces:
            return
        if down:
            self._log.warning(
                "order stream %s: %ss are proven by REST polling until it is back",
                state,
                self.kind,
            )
        else:
            self._log.info("order stream connected: %ss are proven by its events again", self.kind)

    def stream_failed(self, exc: CadenzaError) -> None:
        """The stream stopped for good: the work goes on, proven by REST from now on."""
        self._log.error(
            "order stream stopped for good (%s): %ss are proven by REST", exc, self.kind
        )
        self.stream_state("closed")

    def channel_gap(self, channel: str) -> None:
        """Continuity on ``channel`` was lost: reconcile its account's pending jobs by REST."""
        if self._closed is None:
            account = account_of(channel)
            if account is None:
                return
            if self._registry.pending_count_for_account(account):
                self._spawn(self.reconcile_pending(account), f"reconcile {channel}")
            self._resume(account)  # a channel dropped for good leaves its jobs to REST

    def channel_refused(self, channel: str, error: StreamRpcError) -> None:
        """The server refused ``channel``; 103 fails its account's pending jobs."""
        account = account_of(channel)
        if account is None:
            return
        if error.errno != _PERMISSION_DENIED:
            self._resume(account)  # the jobs see the channel is not live and poll by REST
            return
        self.fail_account(
            account,
            lambda: PermissionDeniedError(
                f"no access to trading account {account}: {error.message}", errno=error.errno
            ),
        )

    def fail_account(self, account: str, error: Callable[[], CadenzaError]) -> int:
        """Fail every job pending on ``account`` with a fresh ``error()`` naming its key.

        For what ends an account's work for good (a 103 refusal of its
        channel, an account disabled or disconnected): its callers raise at
        once instead of at their deadline. Returns how many jobs failed.
        """
        failed = 0
        for entry in self._registry.pending_for_account(account):
            job = entry.handle
            if isinstance(job, Job):
                failure = error()
                failure.order_id = self._key(entry)
                job.fail(failure)
                failed += 1
        return failed

    def bad_event(self, account: str) -> None:
        """An order event on ``account``'s channel did not decode: look its pending work up now.

        The event may have carried the proof, so the account's pending jobs
        are reconciled by REST at once, not at their deadline. One
        reconciliation per account at a time; bad events during it run one more.
        """
        if self._closed is not None or not self._registry.pending_count_for_account(account):
            return
        if account in self._bad_event_runs:
            self._bad_event_runs[account] = True  # once more when this one ends
            return
        self._bad_event_runs[account] = False
        self._spawn(self._reconcile_bad(account), f"reconcile {account} (bad event)")

    async def _reconcile_bad(self, account: str) -> None:
        try:
            again = True
            while again and self._closed is None:
                self._bad_event_runs[account] = False
                await self.reconcile_pending(account)
                again = self._bad_event_runs[account]
        finally:
            del self._bad_event_runs[account]

    def _resume(self, account: str | None = None) -> None:
        """Start proving again for the acknowledged jobs (of one account) no task drives now."""
        if self._closed is not None:
            return
        pending = (
            self._registry.pending()
            if account is None
            else self._registry.pending_for_account(account)
        )
        for entry in list(pending):
            job = entry.handle
            if not isinstance(job, Job) or job.acked_at is None or job.error is not None:
                continue
            driver = job.driver
            if driver is None or driver.done():
                job.driver = self._start_driver(entry, job)  # type: ignore[arg-type]

    def _live_since(self, entry: E) -> float | None:
        """Since when the entry's account channel is live (loop time); ``None``: not live."""
        stream = self._stream
        account = entry.account_id
        if stream is None or account is None:
            return None
        return stream.live_since(channel_for(account))

    def _ask_for(self, entry: E, job: J) -> None:
        """Ask the stream for the entry's channel, once per job (a refused one is not asked again)."""
        stream = self._stream
        account = entry.account_id
        if job.asked or stream is None or account is None:
            return
        job.asked = True
        with contextlib.suppress(CadenzaError):
            stream.want(channel_for(account))  # subscribed now, or when the stream is back

    # -- waiting ------------------------------------------------------------------

    async def _wait(self, entry: E, job: J, until: float) -> None:
        """Return when the entry is proven, the job failed, the client closed, or at ``until``."""
        loop = self._running_loop()
        while not entry.done and job.error is None and self._closed is None:
            if loop.time() >= until:
                return
            await sleep_until(job, self._alarm, until)

    async def _final_wait(self, entry: E, job: J, deadline: float) -> None:
        """The last slice of a call: the final look-up runs, proof from any source ends it."""
        final = self._spawn(self._final_look_up(entry, deadline), f"look up {self._key(entry)}")
        try:
            await self._wait(entry, job, deadline)
        finally:
            final.cancel()

    async def _final_look_up(self, entry: E, deadline: float) -> None:
        try:
            await self._look_up(entry, deadline)
        except CadenzaError as exc:
            self._log.debug("final look-up of %s failed: %s", self._key(entry), type(exc).__name__)

    def _unproven(self, entry: E, job: J, timeout: float) -> BaseException:
        """What a caller without proof raises: the job's error, a close, or a timeout."""
        if job.error is not None:
            return job.error
        if self._closed is not None:
            return ClientClosedError(
                f"the client was closed before the {self.kind} of {self._key(entry)} was confirmed"
            )
        cause: BaseException | None = job.send_error
        if cause is None and job.acked_at is None and job.sent_at:
            cause = TransportError(f"the {self.kind} got no answer before the deadline")
        error = self._timeout(entry, job, timeout)
        error.__cause__ = cause
        return error

    # -- the job ------------------------------------------------------------------

    async def _drive(self, entry: E, job: J, owned: bool = True) -> None:
        """Send until acknowledged, then prove the outcome; for every caller.

        ``owned``: run as a task of its own, started unwatched (it forgets
        itself as it ends); ``False`` when another task runs it (a bulk worker).
        """
        try:
            if job.acked_at is None:
                await self._send(entry, job)
            if not entry.done and job.error is None:
                since = self._live_since(entry)
                first = job.first_sent_at
                if since is None or first is None or since > first:
                    # (the usual case, a channel live before the send, needs no _prove
                    # coroutine: the event will prove it)
                    await self._prove(entry, job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a definite answer (or a bug): every caller learns it now
            job.fail(exc)
        finally:
            if owned:  # started unwatched: forget itself
                self._tasks.discard(asyncio.current_task(self._running_loop()))

    async def _send(self, entry: E, job: J) -> None:
        """Send until a reply (or a look-up) acknowledges it, following the rules.

        Raises a definite error, or one that never reached the API when the
        deadline leaves no time for another send.
        """
        loop = self._running_loop()
        while not entry.done and job.error is None:
            now = loop.time()
            if now >= job.deadline:
                if not job.sent_at:
                    # (the job's task started too late: a loop stalled past the deadline)
                    raise TransportError(
                        f"the deadline passed before the {self.kind} could be sent",
                        maybe_sent=False,
                    )
                return
            job.sending(now)
            try:
                order = await self._send_once(entry, job)
            except CadenzaError as exc:
                step = job.send_failed(exc, loop.time())
                if await self._after_failure(entry, job, exc, step):
                    continue
                return
            if not entry.done:
                self._replied(entry, job, order, loop.time())
            return

    async def _after_failure(self, entry: E, job: J, exc: CadenzaError, step: Step) -> bool:
        """Follow the rules after a failed send: True to send again, False when sending is over.

        Raises ``exc`` when it is definite, or never reached the API and the
        deadline leaves no time for another send.
        """
        loop = self._running_loop()
        while True:
            if step.action is Action.RAISE:
                raise exc
            if step.action is Action.STOP or self._over(entry, job):
                return False
            if step.at > loop.time():
                await sleep_until(job, self._alarm, step.at)
                if self._over(entry, job):
                    return False
            if step.action is Action.SEND:
                return True
            present = await self._presence(entry, job)  # (Action.LOOK_UP)
            if self._over(entry, job):
                return False
            step = job.looked_up(present, loop.time())

    def _over(self, entry: E, job: J) -> bool:
        """True once nothing more is to be done for the job: proven, failed, or closed."""
        return entry.done or job.error is not None or self._closed is not None

    async def _prove(self, entry: E, job: J) -> None:
        """Prove the outcome: the stream's event while the channel is live, else REST polls.

        Nothing here waits on the stream: the account's channel is asked for
        and used once live. A channel live only since after the send gets one
        look-up (its event may have come before). While the channel is live
        this returns (the event wakes the callers); when the stream goes down,
        the engine starts it again for every pending job (:meth:`_resume`).
        """
        loop = self._running_loop()
        stream = self._stream
        while not entry.done and job.error is None and self._closed is None:
            since = self._live_since(entry)
            if since is None:
                self._ask_for(entry, job)
            up = stream is not None and stream.failure is None
            step = job.proving_step(loop.time(), since, self._down_since, up)
            action = step.action
            if action is Action.STOP:
                return
            if action is Action.WAIT:
                if since is not None:
                    return  # live: the event proves it
                changed = None if stream is None else stream.changed()
                await sleep_until(job, self._alarm, step.at, changed)
                continue
            await self._poll(entry, job, live=since is not None)

    async def _poll(self, entry: E, job: J, *, live: bool = False) -> None:
        """One look at the entry's order; a definite answer (not found, auth) fails the job.

        When several jobs of one account poll (the stream down, a gap), they
        share one listing of the account instead of one look-up each.
        """
        loop = self._running_loop()
        account = entry.account_id
        polled_before = job.polled_at
        now = loop.time()
        if (
            account is not None
            and self._list_orders is not None
            and self._registry.pending_count_for_account(account) >= BATCH_MIN
        ):
            started = self._listed_at.get(account, -math.inf)
            missed = await self._list_account(account, [entry], job.deadline)
            job.polled(max(started, now) if started > polled_before else now, live=live)
            if missed is None or not missed:
                return  # listed (or the listing failed: no storm of look-ups; next poll)
        else:
            job.polled(now, live=live)
        try:
            async with self._rest_slots:
                self.rest_polls += 1
                await self._look_up(entry, job.deadline)
        except RETRIABLE as exc:
            self._log.debug("look-up of %s failed: %s", self._key(entry), type(exc).__name__)

    # -- REST: reconciliation and listings ------------------------------------------

    async def reconcile_pending(
        self, account_id: str | None = None, *, concurrency: int = 16
    ) -> int:
        """Reconcile every pending job (of one account, or all) by REST; returns how many.

        Per account: the account's orders are listed page by page (at most
        :data:`RECONCILE_PAGES` pages of :data:`PAGE_SIZE`, stopping once every
        pending job of the account was seen), and only the jobs the pages did
        not cover are looked up one by one (``concurrency`` at a time).
        Failures are logged and left to the jobs, which poll while the stream
        cannot prove.
        """
        if account_id is None:
            entries = list(self._registry.pending())
        else:
            entries = list(self._registry.pending_for_account(account_id))
            entries += [e for e in self._registry.pending() if e.account_id is None]
        if not entries:
            return 0
        by_account: dict[str | None, list[E]] = {}
        for entry in entries:
            by_account.setdefault(entry.account_id, []).append(entry)
        limit = asyncio.Semaphore(concurrency)
        leftovers: list[E] = []

        async def account(acc: str | None, group: list[E]) -> None:
            if acc is None or self._list_orders is None or len(group) < BATCH_MIN:
                leftovers.extend(group)
                return
            missed = await self._list_account(acc, group)
            leftovers.extend(group if missed is None else missed)

        await asyncio.gather(*(account(acc, group) for acc, group in by_account.items()))

        async def one(entry: E) -> None:
            async with limit, self._rest_slots:
                job = entry.handle
                if entry.done or not isinstance(job, Job):
                    return
                try:
                    await self._look_up(entry, job.deadline)
                except CadenzaError as exc:
                    self._log.warning(
                        "reconciling %s %s failed: %s",
                        self.kind,
                        self._key(entry),
                        type(exc).__name__,
                    )

        await asyncio.gather(*(one(e) for e in leftovers))
        return len(entries)

    async def _list_account(
        self, account: str, entries: Iterable[E], deadline: float | None = None
    ) -> list[E] | None:
        """List ``account``'s orders to settle ``entries``; returns the ones the pages missed.

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
        return [e for e in entries if not e.done and self._key(e) not in seen]

    async def _list_pages(self, account: str) -> set[str] | None:
        """The account's orders, page by page, fed to the registry; the keys the pages held.

        ``None`` when the listing failed (logged; the jobs poll again later).
        """
        try:
            return await self._list_pages_of(account)
        except CadenzaError as exc:
            self._log.warning("listing the orders of %s failed: %s", account, type(exc).__name__)
            return None

    async def _list_pages_of(self, account: str) -> set[str]:
        list_orders = self._list_orders
        assert list_orders is not None
        loop = self._running_loop()
        wanted = {self._key(e) for e in self._registry.pending_for_account(account)}
        since = self._listing_since(account)
        deadline = loop.time() + self._request_timeout
        seen: set[str] = set()
        pager = Pager(PAGE_SIZE, RECONCILE_PAGES)
        while (request := pager.request()) is not None:
            offset, cursor = request
            async with self._rest_slots:
                self.rest_polls += 1
                page = await list_orders(account, since, PAGE_SIZE, offset, cursor, deadline)
            now = loop.time()
            for order in page.orders:
                key = self._listed_key(order)
                if key is not None:
                    seen.add(key)
                entry = self._registry.resolve_from_rest(order, now)
                if entry is not None:
                    job = entry.handle
                    if isinstance(job, Job):
                        job.wake()
            pagination = page.pagination
            pager.take(
                (o.trade_order_id for o in page.orders),
                len(page.orders),
                None if pagination is None else pagination.has_next,
                None if pagination is None else pagination.cursor,
            )
            if wanted <= seen:
                break
        return seen
