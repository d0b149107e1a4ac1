"""Chaos soak: thousands of cancels while a scheduler injects random faults.

Two clients (``cancel_via="http"`` and ``cancel_via="ws"``) talk to one
:class:`~cadenza_async.testing.CadenzaSimulator` through one
:class:`~cadenza_async.testing.faults.FaultProxy`. A workload runs single
``cancel_and_confirm`` calls, ``cancel_many`` batches, fire-and-forget
``cancel_nowait`` handles and concurrent duplicate cancels of one order,
while a fault scheduler (seeded RNG, seed printed) resets every connection,
blackholes the link briefly, restarts the server with a new epoch, loses the
history, mutes publications, fills orders racing their cancel, answers 429
and 5xx, and expires the token (the clients use a callable token provider).

Afterwards:

* every cancel call has exactly one outcome (``lost`` must be 0);
* each ``CancelResult`` agrees with the simulator's final state of that
  order (``cancelled=True`` only if the exchange says CANCELLED, ``FILLED``
  only if it says FILLED): nothing is confirmed without evidence;
* an error is one of the kinds a fault can honestly cause
  (:data:`HONEST_ERRORS`); a :class:`ConfirmationTimeout` never carries a
  terminal ``last_known`` (that would have been a proof);
* no cancel was applied twice to one order;
* no waiter, task or proxied socket is left once the clients are closed;
* memory is flat: the traced memory the clients hold (the simulator's and
  this file's own allocations filtered out) grows in the second half of the
  run by at most :data:`MEMORY_MARGIN` plus what the registry's bounded
  early-event buffer (10,000 entries by design) legitimately took.

``make test`` runs the short version (a few hundred cancels). The long
version (tens of thousands of cancels, minutes) is marked ``soak``, which the
default run deselects; ``make soak`` selects it (``CADENZA_SOAK_CANCELS`` sets
its size). ``CADENZA_SOAK_SEED`` replays a seed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import os
import random
import time
import tracemalloc
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from oracle import FINAL, is_final

from cadenza_async import (
    CadenzaClient,
    CancelResult,
    ConfirmationTimeout,
    RateLimitError,
    RetryPolicy,
    ServerError,
    Timeouts,
    TransportError,
)
from cadenza_async.models import OrderStatus
from cadenza_async.testing import CadenzaSimulator
from cadenza_async.testing.faults import FaultProxy

# Errors a fault in this soak can honestly cause. Anything else (StreamError,
# OrderNotFoundError, ClientClosedError, OrderNotCancellableError, a bare
# exception) is a bug: every order exists, every fault is recoverable.
HONEST_ERRORS: tuple[type[BaseException], ...] = (
    ConfirmationTimeout,  # a proof did not arrive in time (faults stacked up)
    TransportError,  # the link was down for the whole retry budget
    ServerError,  # 5xx on every attempt of one request
    RateLimitError,  # 429 on every attempt of one request
)

# Allocator noise, aiohttp's connection pool, websockets buffers, interned
# strings: what the client may legitimately add in the second half.
MEMORY_MARGIN = 768 * 1024
SHORT_RUN_MEMORY_MARGIN = 3 * 1024 * 1024
# Upper bound for one entry of the registry's early-event buffer (a decoded
# TradeOrder plus its dict slot); the buffer is capped at 10,000 entries.
EARLY_ENTRY_BYTES = 4096

STATUSES = {s: s for s in (*sorted(FINAL), OrderStatus.OPEN, OrderStatus.PENDING_CANCEL)}

TIMEOUTS = Timeouts(connect=3.0, request=2.0, confirm=6.0)
RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.1, max_retry_after=1.0)
# A call that has no outcome after this long is counted as lost (a hang). Each
# order's cancel ends by its deadline (``confirm``) plus a little slack; a
# bulk call runs its orders at most ``concurrency`` at a time (16 ids, 8 at once).
CALL_BOUND = 2 * TIMEOUTS.confirm + 5.0
# A single call (not bulk) must end within its deadline plus this.
DEADLINE_SLACK = 0.5
# Faults stack up (a 5xx outage over every attempt, a pause past the deadline, a
# link down for the whole deadline): some cancels end in an honest error. Seen
# over ten seeds of the short run: 0.6 % to 29 % of the cancels ended in an
# error (most of them ServerError during 0.1-0.6 s outages, raised at once as
# the rules say), and 0 % to 13 % unproven (ConfirmationTimeout, TransportError).
# Past these shares the SDK gives up where it should have kept proving.
MAX_ERROR_SHARE = 0.5
MAX_UNPROVEN_SHARE = 0.25
TOKEN_GRACE = 2.0
FAULT_GAP = (0.005, 0.05)
FAULT_LANES = 3
TOKEN_MIN_LIFE = 8.0


@dataclass
class Call:
    """One cancel the caller started, and the outcome it got (kept compact: no SDK objects)."""

    order_id: str
    kind: str
    via: str
    outcomes: list[tuple[str, str | None, str | None]] = field(default_factory=list)


@dataclass
class Soak:
    seed: int
    cancels: int
    calls: list[Call] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    background_errors: int = 0
    peak_memory: int = 0
    memory_mid: int = 0
    memory_end: int = 0
    early_mid: int = 0
    early_end: int = 0
    seconds: float = 0.0
    max_overrun: float = -math.inf

    def record(self, call: Call, outcome: Any) -> None:
        """Reduce an outcome to plain strings at once, so memory checks see no test-held SDK objects."""
        if isinstance(outcome, CancelResult):
            status = STATUSES.get(outcome.status, "OTHER")
            if outcome.order.trade_order_id != call.order_id:
                self.problems.append(f"{call.order_id}: result for another order")
            if outcome.cancelled != (status == OrderStatus.CANCELLED):
                self.problems.append(f"{call.order_id}: cancelled flag disagrees with status")
            if not is_final(status):
                self.problems.append(f"{call.order_id}: result with non-terminal {status}")
            call.outcomes.append(("result", status, None))
            self.outcomes["cancelled" if outcome.cancelled else f"result:{status}"] += 1
            return
        if isinstance(outcome, BaseException):
            name = type(outcome).__name__
            last: str | None = None
            if isinstance(outcome, ConfirmationTimeout) and outcome.last_known is not None:
                last = STATUSES.get(outcome.last_known.status, "OTHER")
            if not isinstance(outcome, HONEST_ERRORS):
                self.problems.append(f"{call.order_id}: dishonest error {name}: {outcome}")
            order_id = getattr(outcome, "order_id", None)
            if call.kind == "bulk" and order_id != call.order_id:
                self.problems.append(
                    f"{call.order_id}: bulk error without its order id: {name}: {outcome}"
                )
            call.outcomes.append(("error", name, last))
            self.outcomes[name] += 1
            return
        self.problems.append(f"{call.order_id}: unexpected outcome type {type(outcome).__name__}")
        call.outcomes.append(("other", type(outcome).__name__, None))

    def summary(self) -> str:
        lost = sum(1 for c in self.calls if not c.outcomes)
        lines = [
            f"soak seed={self.seed} cancels={len(self.calls)} in {self.seconds:.1f}s",
            "  faults injected: "
            + ", ".join(f"{k}={v}" for k, v in sorted(self.faults.items()))
            + f" (total {sum(self.faults.values())})",
            "  outcomes: " + ", ".join(f"{k}={v}" for k, v in sorted(self.outcomes.items())),
            f"  lost={lost} errors={sum(1 for c in self.calls if c.outcomes and c.outcomes[0][0] == 'error')} "
            f"max_overrun_of_single_calls={self.max_overrun * 1000:.1f}ms "
            f"background_errors_reported={self.background_errors} "
            f"  traced memory: peak={self.peak_memory / 1e6:.1f} MB, client-held at mid="
            f"{self.memory_mid / 1e6:.2f} MB end={self.memory_end / 1e6:.2f} MB "
            f"(early buffer {self.early_mid}->{self.early_end} entries)",
        ]
        return "\n".join(lines)


def client_held_memory() -> int:
    """Traced bytes not allocated by the simulator or by this file (gc'd first).

    What grows with every cancel by design is filtered out: the simulator's
    orders and request log, the order ids, this file's records. The
    simulator's request log is also cleared every 200 cancels (it keeps the
    query strings, which are allocated by yarl/multidict, not the simulator).
    """
    gc.collect()
    snapshot = tracemalloc.take_snapshot().filter_traces(
        (
            tracemalloc.Filter(False, "*/cadenza_async/testing/*"),
            tracemalloc.Filter(False, __file__),
            tracemalloc.Filter(False, tracemalloc.__file__),
            # order ids: made by uuid4() for the simulator's orders (one per cancel)
            tracemalloc.Filter(False, uuid.__file__),
            # this file's dataclass records (their __init__ is generated code)
            tracemalloc.Filter(False, "<string>"),
        )
    )
    return sum(stat.size for stat in snapshot.statistics("filename"))


class Tokens:
    """A callable token provider whose token the fault scheduler rotates and expires.

    Like a real provider, it hands out a token well before the old one
    expires: the old token is expired :data:`TOKEN_GRACE` seconds after the
    rotation (REST then answers 401, a live connection is closed with 3005, a
    connect with it gets error 109). Rotations are at least
    :data:`TOKEN_MIN_LIFE` seconds apart, so the provider never hands out a
    token that expires while the client is still connecting with it.
    """

    def __init__(self, sim: CadenzaSimulator) -> None:
        self.sim = sim
        self.current = sim.issue_token()
        self.calls = 0
        self.last_rotation = 0.0
        self.expiries: list[asyncio.TimerHandle] = []

    def __call__(self) -> str:
        self.calls += 1
        return self.current

    def rotate_and_expire(self) -> bool:
        loop = asyncio.get_running_loop()
        if loop.time() - self.last_rotation < TOKEN_MIN_LIFE:
            return False
        self.last_rotation = loop.time()
        old = self.current
        self.current = self.sim.issue_token()
        self.expiries.append(loop.call_later(TOKEN_GRACE, self.sim.expire_token, old))
        return True

    def stop(self) -> None:
        for handle in self.expiries:
            handle.cancel()
        self.expiries.clear()


async def fault_scheduler(
    rng: random.Random,
    sim: CadenzaSimulator,
    px: FaultProxy,
    tokens: Tokens,
    soak: Soak,
    live_orders: list[str],
    stop: asyncio.Event,
) -> None:
    """Inject one random fault every few tens of milliseconds until ``stop`` is set."""
    kinds = [
        ("proxy_reset", 3),
        ("blackhole", 2),
        ("restart_new_epoch", 1),
        ("lose_history_and_reset", 1),
        ("disconnect_3001", 1),
        ("mute_publications", 1),
        ("fill_racing_cancel", 4),
        ("rest_429", 2),
        ("rest_5xx", 3),
        ("token_expiry", 1),
        ("latency", 1),
        ("slow_list", 1),
        ("hung_cancel", 1),
        ("rest_outage", 1),
        ("long_retry_after", 1),
        ("websocket_refused", 1),
        ("slow_subscribe", 1),
    ]
    names = [k for k, _ in kinds]
    weights = [w for _, w in kinds]
    # Pacing of the chaos, not synchronisation: a fault every FAULT_GAP seconds.
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), rng.uniform(FAULT_GAP[0], FAULT_GAP[1]))
        if stop.is_set():
            return
        kind = rng.choices(names, weights)[0]
        soak.faults[kind] += 1
        if kind == "proxy_reset":
            await px.reset_all()
        elif kind == "blackhole":
            px.blackhole()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), rng.uniform(0.05, 0.3))
            px.restore()
        elif kind == "restart_new_epoch":
            await sim.restart()
        elif kind == "lose_history_and_reset":
            sim.lose_history()
            await px.reset_all()
        elif kind == "disconnect_3001":
            await sim.disconnect_all(3001, "shutdown")
        elif kind == "mute_publications":
            sim.pause_publications()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), rng.uniform(0.05, 0.3))
            sim.resume_publications()
        elif kind == "fill_racing_cancel":
            for order_id in rng.sample(live_orders, min(3, len(live_orders))):
                with contextlib.suppress(KeyError, ValueError):  # already final
                    sim.fill(order_id)
        elif kind == "rest_429":
            sim.rate_limit_next_rest(rng.randint(1, 3), retry_after=rng.choice([0.01, 0.05]))
        elif kind == "rest_5xx":
            sim.fail_next_rest(rng.randint(1, 4), status=rng.choice([500, 502, 503, 504]))
        elif kind == "token_expiry":
            if not tokens.rotate_and_expire():
                soak.faults[kind] -= 1
        elif kind == "latency":
            px.latency = rng.uniform(0.01, 0.1)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), rng.uniform(0.1, 0.4))
            px.latency = 0.0
        elif kind == "slow_list":  # look-ups (gap, polling, the final one) are slow or hung
            sim.delay_rest(rng.choice([0.3, 1.5, math.inf]), endpoint="list")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), rng.uniform(0.1, 1.0))
            sim.delay_rest(0, endpoint="list")
        elif kind == "hung_cancel":  # the cancel endpoint holds requests for a while
            sim.delay_rest(math.inf, endpoint="cancel")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), rng.uniform(0.05, 0.5))
            sim.delay_rest(0, endpoint="cancel")
        elif kind == "rest_outage":
            sim.rest_outage(rng.uniform(0.1, 0.6), status=rng.choice([502, 503]))
        elif kind == "long_retry_after":  # a pause longer than the cap: RateLimitError
            sim.rate_limit_next_rest(1, retry_after=rng.uniform(1.5, 4.0))
        elif kind == "websocket_refused":  # degraded mode: REST proves what is pending
            await sim.refuse_websocket(rng.choice([503, None]))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), rng.uniform(0.2, 1.5))
            sim.accept_websocket()
        elif kind == "slow_subscribe":
            sim.delay_subscribe_replies(rng.uniform(0.1, 1.0))
            await sim.disconnect_all(3001, "shutdown")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), rng.uniform(0.2, 1.0))
            sim.delay_subscribe_replies(0)


async def run_soak(seed: int, cancels: int, *, concurrency: int = 24) -> Soak:
    """Run ``cancels`` cancel calls under random faults; return what happened (checked by the caller)."""
    rng = random.Random(seed)
    soak = Soak(seed=seed, cancels=cancels)
    started = time.monotonic()
    tracemalloc.start()
    try:
        async with (
            CadenzaSimulator(cancel_delay=0.05) as sim,
            FaultProxy(target_host="127.0.0.1", target_port=sim.port) as px,
        ):
            baseline = set(asyncio.all_tasks())
            tokens = Tokens(sim)

            def on_background_error(exc: BaseException, order_id: str) -> None:
                soak.background_errors += 1

            clients = {}
            for via in ("http", "ws"):
                clients[via] = CadenzaClient(
                    token=tokens,
                    api_url=px.url(sim.api_url),
                    ws_url=px.url(sim.ws_url),
                    trading_account_id=sim.trading_account_id,
                    cancel_via=via,
                    timeouts=TIMEOUTS,
                    retry=RETRY,
                    drain_timeout=CALL_BOUND,
                    on_background_error=on_background_error,
                )
            try:
                for client in clients.values():
                    await client.__aenter__()
                await run_workload(rng, sim, px, tokens, soak, clients, concurrency)
            finally:
                for client in clients.values():
                    await client.aclose()
            for client in clients.values():
                if len(client._registry) or client._registry.pending_count:
                    soak.problems.append(f"waiters left in {client!r}: {len(client._registry)}")
                if client._background or client._canceller._tasks:
                    soak.problems.append(f"background work left in {client!r}")
            await px.wait_for_idle(timeout=10.0)
            await sim.wait_for(lambda: sim.connections == 0, timeout=10.0)
            leftover = [
                t
                for t in asyncio.all_tasks() - baseline
                if t is not asyncio.current_task() and not _simulator_task(t)
            ]
            if leftover:
                soak.problems.append(f"tasks left: {leftover!r}")
            if px.connections:
                soak.problems.append(f"proxy connections left: {px.connections}")
            check_against_exchange(sim, soak)
    finally:
        soak.peak_memory = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        soak.seconds = time.monotonic() - started
    return soak


def _simulator_task(task: asyncio.Task[Any]) -> bool:
    """The in-process simulator's own tasks (its aiohttp server, its connections)."""
    code = getattr(task.get_coro(), "cr_code", None)
    filename = code.co_filename if code is not None else ""
    return "/cadenza_async/testing/" in filename or "/aiohttp/web_" in filename


async def run_workload(
    rng: random.Random,
    sim: CadenzaSimulator,
    px: FaultProxy,
    tokens: Tokens,
    soak: Soak,
    clients: dict[str, CadenzaClient],
    concurrency: int,
) -> None:
    live_orders: list[str] = []
    stop = asyncio.Event()
    # Several lanes, so a brief blackhole or mute in one does not pause the others.
    chaos = asyncio.gather(
        *(
            fault_scheduler(random.Random(rng.random()), sim, px, tokens, soak, live_orders, stop)
            for _ in range(FAULT_LANES)
        )
    )
    handles: list[tuple[Call, Any]] = []
    jobs: set[asyncio.Task[None]] = set()
    slots = asyncio.Semaphore(concurrency)
    started = 0
    half = soak.cancels // 2
    mid_taken = False

    def new_orders(n: int) -> list[str]:
        ids = []
        for _ in range(n):
            roll = rng.random()
            if roll < 0.04:
                order = sim.create_order(status=rng.choice(["CANCELLED", "FILLED"]))
            else:
                order = sim.create_order()
                if roll < 0.12:
                    sim.fill_on_next_cancel(order.trade_order_id)
            ids.append(order.trade_order_id)
        live_orders.extend(ids)
        del live_orders[:-200]  # the scheduler fills among recent orders only
        return ids

    async def bounded(coro: Any, calls: list[Call]) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            outcome = await asyncio.wait_for(coro, CALL_BOUND)
        except asyncio.TimeoutError:
            for call in calls:
                soak.problems.append(f"{call.order_id}: no outcome within {CALL_BOUND}s (hang)")
            return
        except Exception as exc:
            outcome = [exc] * len(calls) if len(calls) > 1 else exc
        elapsed = loop.time() - began
        if calls[0].kind != "bulk":
            soak.max_overrun = max(soak.max_overrun, elapsed - TIMEOUTS.confirm)
        if calls[0].kind != "bulk" and elapsed > TIMEOUTS.confirm + DEADLINE_SLACK:
            soak.problems.append(
                f"{calls[0].order_id}: ended {elapsed:.3f}s after its call, "
                f"deadline {TIMEOUTS.confirm}s"
            )
        if len(calls) == 1 and not isinstance(outcome, list):
            soak.record(calls[0], outcome)
        else:
            for call, one in zip(calls, outcome, strict=True):
                soak.record(call, one)

    async def job(calls: list[Call], coro: Any) -> None:
        try:
            await bounded(coro, calls)
        finally:
            slots.release()

    try:
        while started < soak.cancels:
            await slots.acquire()
            via = rng.choice(["http", "ws"])
            client = clients[via]
            roll = rng.random()
            if roll < 0.45:
                (order_id,) = new_orders(1)
                calls = [Call(order_id, "single", via)]
                coro: Any = client.cancel_and_confirm(order_id)
            elif roll < 0.65:
                ids = new_orders(rng.randint(2, 16))
                calls = [Call(i, "bulk", via) for i in ids]
                coro = client.cancel_many(ids, concurrency=8)
            elif roll < 0.9:
                (order_id,) = new_orders(1)
                call = Call(order_id, "nowait", via)
                soak.calls.append(call)
                handles.append((call, client.cancel_nowait(order_id)))
                started += 1
                slots.release()
                continue
            else:
                (order_id,) = new_orders(1)
                calls = [Call(order_id, "duplicate", via), Call(order_id, "duplicate", via)]
                coro = asyncio.gather(
                    client.cancel_and_confirm(order_id),
                    client.cancel_and_confirm(order_id),
                    return_exceptions=True,
                )
            soak.calls.extend(calls)
            started += len(calls)
            task = asyncio.ensure_future(job(calls, coro))
            jobs.add(task)
            task.add_done_callback(jobs.discard)
            if started % 200 < len(calls):
                # What the simulator records of each request is test data; keep it bounded.
                sim.rest_requests.clear()
                sim.cancel_requests.clear()
            if not mid_taken and started >= half:
                mid_taken = True
                if jobs:
                    await asyncio.wait(set(jobs))
                soak.memory_mid = client_held_memory()
                soak.early_mid = sum(c._registry.early_count for c in clients.values())
        while jobs:
            await asyncio.wait(set(jobs))
        for client in clients.values():
            await asyncio.wait_for(client.drain(), CALL_BOUND)
        for call, handle in handles:
            exc = handle.exception()
            soak.record(call, exc if exc is not None else handle.result())
        handles.clear()
    finally:
        stop.set()
        await chaos
        tokens.stop()
        for task in jobs:
            task.cancel()
        if jobs:
            await asyncio.gather(*jobs, return_exceptions=True)
    px.clear_faults()
    sim.resume_publications()
    soak.memory_end = client_held_memory()
    soak.early_end = sum(c._registry.early_count for c in clients.values())
    # Keep the recorded request lists from growing the simulator without bound.
    sim.rest_requests.clear()


def check_against_exchange(sim: CadenzaSimulator, soak: Soak) -> None:
    """Every outcome agrees with the exchange's final state; no cancel applied twice."""
    applied = sim.cancels_applied
    for call in soak.calls:
        if len(call.outcomes) > 1:
            soak.problems.append(f"{call.order_id}: {len(call.outcomes)} outcomes for one call")
        final = sim.get_order(call.order_id)
        assert final is not None
        for kind, what, last in call.outcomes:
            if kind == "result" and what != final.status:
                soak.problems.append(
                    f"{call.order_id} ({call.kind} via {call.via}): confirmed {what} "
                    f"but the exchange says {final.status}"
                )
            if last is not None and is_final(last):
                soak.problems.append(f"{call.order_id}: timeout with terminal last_known {last}")
        if applied[call.order_id] > 1:
            soak.problems.append(f"{call.order_id}: {applied[call.order_id]} cancels applied")


def check(soak: Soak, memory_margin: int = MEMORY_MARGIN) -> None:
    lost = [c for c in soak.calls if not c.outcomes]
    assert len(soak.calls) >= soak.cancels
    assert not soak.problems, "\n".join(soak.problems[:30])
    assert not lost, f"{len(lost)} cancels without an outcome"
    assert sum(soak.faults.values()) > 0
    errors = [c.outcomes[0][1] for c in soak.calls if c.outcomes and c.outcomes[0][0] == "error"]
    assert len(errors) <= MAX_ERROR_SHARE * len(soak.calls), (
        f"{len(errors)} of {len(soak.calls)} cancels ended in an error "
        f"(allowed {MAX_ERROR_SHARE:.0%}): the SDK gives up too easily\n{soak.summary()}"
    )
    unproven = [e for e in errors if e in ("ConfirmationTimeout", "TransportError")]
    assert len(unproven) <= MAX_UNPROVEN_SHARE * len(soak.calls), (
        f"{len(unproven)} of {len(soak.calls)} cancels ended unproven "
        f"(allowed {MAX_UNPROVEN_SHARE:.0%})\n{soak.summary()}"
    )
    allowance = memory_margin + max(0, soak.early_end - soak.early_mid) * EARLY_ENTRY_BYTES
    growth = soak.memory_end - soak.memory_mid
    assert growth <= allowance, (
        f"client-held memory grew {growth} bytes in the second half (allowed {allowance})"
    )


def seed_for_run() -> int:
    given = os.environ.get("CADENZA_SOAK_SEED")
    return int(given) if given else random.SystemRandom().randrange(2**32)


@pytest.mark.timeout(180)
def test_short_chaos_soak_every_cancel_has_one_honest_outcome() -> None:
    seed = seed_for_run()
    print(f"\nsoak seed: {seed} (replay with CADENZA_SOAK_SEED={seed})")
    soak = asyncio.run(run_soak(seed, cancels=500), debug=False)
    print(soak.summary())
    # 250 cancels per half are too few to tell a small leak from what happens to be
    # in flight at the midpoint (seen: +870 KB with no leak, on a loaded machine):
    # here only a gross leak fails; the long soak (make soak) holds MEMORY_MARGIN.
    check(soak, memory_margin=SHORT_RUN_MEMORY_MARGIN)


@pytest.mark.soak  # deselected by default (pyproject addopts); `make soak` selects it
@pytest.mark.timeout(1800)
def test_long_chaos_soak_every_cancel_has_one_honest_outcome() -> None:
    seed = seed_for_run()
    print(f"\nsoak seed: {seed} (replay with CADENZA_SOAK_SEED={seed})")
    cancels = int(os.environ.get("CADENZA_SOAK_CANCELS", "20000"))
    soak = asyncio.run(run_soak(seed, cancels=cancels, concurrency=48), debug=False)
    print(soak.summary())
    check(soak)


async def test_cancel_and_confirm_returns_near_its_timeout_when_rest_is_silent() -> None:
    # REST through a blackholed proxy, the stream direct: nothing can prove the cancel.
    async with (
        CadenzaSimulator(cancel_delay=0.05) as sim,
        FaultProxy(target_host="127.0.0.1", target_port=sim.port) as px,
    ):
        async with CadenzaClient(
            token=sim.token,
            api_url=px.url(sim.api_url),
            ws_url=sim.ws_url,
            trading_account_id=sim.trading_account_id,
            timeouts=Timeouts(connect=1.0, request=1.0, confirm=1.0),
            retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05),
        ) as client:
            order = sim.create_order()
            px.blackhole()
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(ConfirmationTimeout) as caught:
                await client.cancel_and_confirm(order.trade_order_id, timeout=1.0)
            took = loop.time() - started
            px.restore()
    assert caught.value.last_known is None
    # The deadline, plus the one final look-up (timeouts.request), plus slack.
    assert took <= 1.0 + 1.0 + 1.0, f"timeout=1 returned after {took:.1f}s"


async def test_stream_recovers_when_a_refreshed_token_expired_while_offline() -> None:
    async with (
        CadenzaSimulator(cancel_delay=0.01) as sim,
        FaultProxy(target_host="127.0.0.1", target_port=sim.port) as px,
    ):
        tokens = [sim.issue_token()]
        handed_out = asyncio.Event()

        def provider() -> str:
            provider.calls += 1
            if provider.calls == 2:
                # The refresh after 3005: hand out T2, and the link goes down.
                px.refuse = True
                handed_out.set()
            return tokens[-1]

        provider.calls = 0  # type: ignore[attr-defined]
        async with CadenzaClient(
            token=provider,
            api_url=sim.api_url,
            ws_url=px.url(sim.ws_url),
            trading_account_id=sim.trading_account_id,
            timeouts=Timeouts(connect=2.0, request=2.0, confirm=5.0),
        ) as client:
            tokens.append(sim.issue_token())
            sim.expire_token(tokens[0])  # live connection closed with 3005 -> refresh -> T2
            await asyncio.wait_for(handed_out.wait(), 5.0)
            # T2's lifetime passes while the client cannot connect; the provider has T3.
            tokens.append(sim.issue_token())
            sim.expire_token(tokens[1])
            px.refuse = False
            stream = client._stream
            assert stream is not None
            # Let the stream reconnect (or fail) before any REST call refreshes the token.
            await sim.wait_for(lambda: stream.connected or stream._failure is not None, 10.0)
            order = sim.create_order()
            result = await client.cancel_and_confirm(order.trade_order_id, timeout=10.0)
    assert result.cancelled is True


async def test_bulk_errors_name_their_own_order_when_the_ws_link_drops() -> None:
    async with (
        CadenzaSimulator(cancel_delay=0.05) as sim,
        FaultProxy(target_host="127.0.0.1", target_port=sim.port) as px,
    ):
        async with CadenzaClient(
            token=sim.token,
            api_url=px.url(sim.api_url),
            ws_url=px.url(sim.ws_url),
            trading_account_id=sim.trading_account_id,
            cancel_via="ws",
            timeouts=Timeouts(connect=1.0, request=0.5, confirm=2.0),
            retry=RetryPolicy(attempts=1),
        ) as client:
            ids = [o.trade_order_id for o in sim.create_orders(3)]
            px.blackhole()  # the RPCs go out but get no reply; REST look-ups time out
            bulk = asyncio.ensure_future(client.cancel_many(ids))
            stream = client._stream
            assert stream is not None
            await sim.wait_for(lambda: len(stream._rpc_waiters) == len(ids), 5.0)
            await px.reset_all()  # the link drops with three RPCs pending
            results = await asyncio.wait_for(bulk, 20.0)
            px.restore()
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == len(ids), results
    assert [e.order_id for e in errors] == ids
    assert len({id(e) for e in errors}) == len(ids)
