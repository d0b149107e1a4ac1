"""run_bulk / run_bulk_iter (``cadenza_async/bulk.py``) with a fake per-order coroutine.

No client and no simulator: ``one`` is a :class:`FakeCancel` whose calls
wait until the test releases their id, so the order in which work
completes, how much of it is in flight, and what a cancellation reaches are
all in the test's hands. Synchronisation is by bounded waits on the fake's
own state, never by sleeping a fixed time.

Order ids are UUIDs; the tests name orders by short names ("a", "order-1")
that :func:`run_bulk` and :func:`run_bulk_iter` here turn into UUIDs on the
way in (:func:`uid`) and back into names on the way out, so that what each
test says stays readable. Malformed ids ("", "b c", 42) go through as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest

from cadenza_async import bulk
from cadenza_async.errors import CadenzaError, InvalidOrderIdError, OrderNotFoundError

STEP = 5.0
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_NAMES: dict[str, str] = {}  # uid -> name


def uid(name: Any) -> Any:
    """The UUID a test's short order name stands for (anything else unchanged)."""
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        return name
    value = str(uuid.uuid5(uuid.NAMESPACE_URL, name))
    _NAMES[value] = name
    return value


def name(value: Any) -> Any:
    """The short name of an order id :func:`uid` made (anything else unchanged)."""
    return _NAMES.get(value, value) if isinstance(value, str) else value


def _named_error(outcome: Any) -> Any:
    if isinstance(outcome, CadenzaError):
        outcome.order_id = name(outcome.order_id)
    return outcome


def _ids(order_ids: Any) -> Any:
    if isinstance(order_ids, (str, bytes)):
        return order_ids
    return [uid(oid) for oid in order_ids]


async def run_bulk(order_ids: Any, one: Any, *, concurrency: int) -> list[Any]:
    outcomes = await bulk.run_bulk(_ids(order_ids), one, concurrency=concurrency)
    return [_named_error(outcome) for outcome in outcomes]


async def run_bulk_iter(order_ids: Any, one: Any, *, concurrency: int) -> Any:
    async with contextlib.aclosing(
        bulk.run_bulk_iter(_ids(order_ids), one, concurrency=concurrency)
    ) as outcomes:
        async for oid, outcome in outcomes:
            yield name(oid), _named_error(outcome)


class FakeCancel:
    """A fake ``one(order_id)``: waits until its id is released, then returns or raises.

    Records every call (in start order), the calls in flight and their
    peak, and the calls that were cancelled. With ``auto=True`` a call ends
    after one loop turn without waiting to be released.
    """

    def __init__(self, *, auto: bool = False) -> None:
        self.auto = auto
        self.calls: list[str] = []
        self.in_flight = 0
        self.peak = 0
        self.cancelled: list[str] = []
        self.finished: list[str] = []
        self.raises: dict[str, BaseException] = {}
        self._released: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)

    def release(self, *order_ids: str) -> None:
        for oid in order_ids:
            self._released[oid].set()

    def fail(self, order_id: str, exc: BaseException) -> None:
        """The call for ``order_id`` raises ``exc`` once released."""
        self.raises[order_id] = exc

    async def __call__(self, order_id: str) -> str:
        order_id = name(order_id)
        self.calls.append(order_id)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.auto:
                await asyncio.sleep(0)
            else:
                await self._released[order_id].wait()
            if order_id in self.raises:
                raise self.raises[order_id]
            self.finished.append(order_id)
            return f"done:{order_id}"
        except asyncio.CancelledError:
            self.cancelled.append(order_id)
            raise
        finally:
            self.in_flight -= 1


async def until(predicate: Callable[[], object], what: str = "") -> None:
    """Let the loop run until ``predicate()`` is true; ``AssertionError`` after ``STEP`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STEP
    while not predicate():
        if loop.time() >= deadline:
            raise AssertionError(f"not met within {STEP:g}s: {what or predicate}")
        await asyncio.sleep(0)


def other_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


class Collector:
    """Consumes ``run_bulk_iter`` in a task of its own and records what it yields, in order."""

    def __init__(self, order_ids: list[Any], one: FakeCancel, concurrency: int) -> None:
        self.seen: list[tuple[str, Any]] = []
        self._outcomes = run_bulk_iter(order_ids, one, concurrency=concurrency)
        self.task = asyncio.ensure_future(self._consume())

    async def _consume(self) -> None:
        async with contextlib.aclosing(self._outcomes) as outcomes:
            async for item in outcomes:
                self.seen.append(item)


# --------------------------------------------------------------------------- order


async def test_run_bulk_returns_outcomes_in_input_order_whatever_the_completion_order():
    one = FakeCancel()
    ids = ["a", "b", "c", "d"]
    bulk = asyncio.ensure_future(run_bulk(ids, one, concurrency=4))
    await until(lambda: len(one.calls) == 4)
    for oid in reversed(ids):  # completes d, c, b, a
        one.release(oid)
        await until(lambda oid=oid: oid in one.finished)

    assert await asyncio.wait_for(bulk, STEP) == ["done:a", "done:b", "done:c", "done:d"]
    assert one.finished == ["d", "c", "b", "a"]


async def test_run_bulk_iter_yields_each_outcome_as_it_completes():
    one = FakeCancel()
    consumer = Collector(["a", "b", "c", "d"], one, concurrency=4)
    await until(lambda: len(one.calls) == 4)
    for count, oid in enumerate(["c", "a", "d", "b"], start=1):
        one.release(oid)
        await until(lambda count=count: len(consumer.seen) == count)

    await asyncio.wait_for(consumer.task, STEP)
    assert consumer.seen == [("c", "done:c"), ("a", "done:a"), ("d", "done:d"), ("b", "done:b")]


async def test_workers_take_the_ids_in_input_order():
    one = FakeCancel(auto=True)
    ids = [f"order-{n}" for n in range(12)]
    outcomes = await asyncio.wait_for(run_bulk(ids, one, concurrency=3), STEP)
    assert one.calls == ids
    assert outcomes == [f"done:{oid}" for oid in ids]


# --------------------------------------------------------------------------- duplicates


async def test_a_repeated_id_is_run_once_and_every_occurrence_gets_its_outcome():
    one = FakeCancel(auto=True)
    failure = OrderNotFoundError("no such order", status=404)
    one.fail("b", failure)
    outcomes = await asyncio.wait_for(
        run_bulk(["a", "b", "a", "c", "b", "a"], one, concurrency=2), STEP
    )

    assert one.calls == ["a", "b", "c"]
    assert outcomes[0] == outcomes[2] == outcomes[5] == "done:a"
    assert outcomes[1] is outcomes[4] is failure
    assert outcomes[3] == "done:c"


async def test_run_bulk_iter_yields_a_repeated_id_once():
    one = FakeCancel(auto=True)
    seen = [item async for item in run_bulk_iter(["a", "b", "a", "b", "c"], one, concurrency=2)]
    assert sorted(seen) == [("a", "done:a"), ("b", "done:b"), ("c", "done:c")]
    assert one.calls == ["a", "b", "c"]


# --------------------------------------------------------------------------- concurrency


@pytest.mark.parametrize("bulk", ["run_bulk", "run_bulk_iter"])
async def test_no_more_than_concurrency_calls_are_in_flight_and_a_slot_is_refilled_at_once(bulk):
    one = FakeCancel()
    ids = [f"order-{n}" for n in range(10)]
    if bulk == "run_bulk":
        task = asyncio.ensure_future(run_bulk(ids, one, concurrency=3))
    else:
        task = Collector(ids, one, concurrency=3).task
    await until(lambda: len(one.calls) == 3)
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(one.calls) == 3  # the fourth waits for a free slot

    one.release("order-1")
    await until(lambda: len(one.calls) == 4)
    assert one.calls[3] == "order-3"
    one.release(*ids)
    await asyncio.wait_for(task, STEP)
    assert one.peak == 3
    assert sorted(one.finished) == sorted(ids)


async def test_concurrency_above_the_number_of_orders_starts_one_call_per_order():
    one = FakeCancel()
    task = asyncio.ensure_future(run_bulk(["a", "b"], one, concurrency=64))
    await until(lambda: len(one.calls) == 2)
    one.release("a", "b")
    assert await asyncio.wait_for(task, STEP) == ["done:a", "done:b"]
    assert one.peak == 2


@pytest.mark.parametrize("concurrency", [0, -1, 1.5, "4", None])
async def test_a_concurrency_that_is_not_a_positive_int_is_refused_before_any_call(concurrency):
    one = FakeCancel(auto=True)
    with pytest.raises(ValueError, match="concurrency"):
        await run_bulk(["a"], one, concurrency=concurrency)
    with pytest.raises(ValueError, match="concurrency"):
        await anext(run_bulk_iter(["a"], one, concurrency=concurrency))
    assert one.calls == []


async def test_run_bulk_iter_refuses_a_single_string_as_order_ids():
    one = FakeCancel(auto=True)
    with pytest.raises(TypeError, match="single string"):
        await anext(run_bulk_iter("order-1", one, concurrency=2))
    assert one.calls == []


async def test_run_bulk_refuses_a_single_string_as_order_ids():
    one = FakeCancel(auto=True)
    with pytest.raises(TypeError, match="single string"):
        await run_bulk("order-1", one, concurrency=2)
    assert one.calls == []


async def test_no_orders_give_no_outcome_and_no_call():
    one = FakeCancel(auto=True)
    assert await run_bulk([], one, concurrency=4) == []
    assert [item async for item in run_bulk_iter([], one, concurrency=4)] == []
    assert one.calls == []


# --------------------------------------------------------------------------- bad ids and failures


async def test_run_bulk_puts_the_error_for_a_bad_id_in_its_place_and_never_calls_for_it():
    one = FakeCancel(auto=True)
    outcomes = await asyncio.wait_for(
        run_bulk(["a", "", "b c", "c", 42, "d/e"], one, concurrency=4), STEP
    )

    assert one.calls == ["a", "c"]
    assert outcomes[0] == "done:a"
    assert outcomes[3] == "done:c"
    for index, bad in [(1, ""), (2, "b c"), (4, 42), (5, "d/e")]:
        error = outcomes[index]
        assert isinstance(error, InvalidOrderIdError)
        assert isinstance(error, ValueError)
        assert error.order_id == (bad if isinstance(bad, str) else None)


async def test_run_bulk_iter_yields_the_bad_ids_first_without_calling_for_them():
    one = FakeCancel(auto=True)
    seen = [item async for item in run_bulk_iter(["a", "", 42, "b"], one, concurrency=2)]

    assert [key for key, _ in seen[:2]] == ["", "42"]  # a non-str id is named by its repr
    assert all(isinstance(outcome, InvalidOrderIdError) for _, outcome in seen[:2])
    assert sorted(seen[2:]) == [("a", "done:a"), ("b", "done:b")]
    assert one.calls == ["a", "b"]


async def test_only_bad_ids_start_no_worker():
    one = FakeCancel(auto=True)
    before = other_tasks()
    outcomes = await run_bulk(["", " "], one, concurrency=4)
    assert [type(o) for o in outcomes] == [InvalidOrderIdError, InvalidOrderIdError]
    assert one.calls == []
    assert other_tasks() == before


@pytest.mark.parametrize("bulk", ["run_bulk", "run_bulk_iter"])
async def test_an_orders_own_failure_is_its_outcome_and_names_the_order(bulk):
    one = FakeCancel(auto=True)
    unnamed = OrderNotFoundError("no such order", status=404)
    named = CadenzaError("about another order")
    named.order_id = "elsewhere"
    one.fail("b", unnamed)
    one.fail("c", named)
    ids = ["a", "b", "c", "d"]
    if bulk == "run_bulk":
        outcomes = dict(zip(ids, await run_bulk(ids, one, concurrency=2), strict=True))
    else:
        outcomes = {k: v async for k, v in run_bulk_iter(ids, one, concurrency=2)}

    assert outcomes == {"a": "done:a", "b": unnamed, "c": named, "d": "done:d"}
    assert unnamed.order_id == "b"  # filled in
    assert named.order_id == "elsewhere"  # kept


@pytest.mark.parametrize("bulk", ["run_bulk", "run_bulk_iter"])
async def test_a_bug_in_one_call_propagates_and_the_calls_in_flight_are_cancelled(bulk):
    one = FakeCancel()
    one.fail("a", RuntimeError("bug"))
    ids = ["a", "b", "c", "d", "e"]
    before = other_tasks()
    if bulk == "run_bulk":
        task = asyncio.ensure_future(run_bulk(ids, one, concurrency=3))
    else:
        task = Collector(ids, one, concurrency=3).task
    await until(lambda: len(one.calls) == 3)
    one.release("a")

    with pytest.raises(RuntimeError, match="bug"):
        await asyncio.wait_for(task, STEP)
    assert sorted(one.cancelled) == ["b", "c"]
    assert one.in_flight == 0
    assert one.calls == ["a", "b", "c"]  # nothing started after the failure
    assert other_tasks() <= before


# --------------------------------------------------------------------------- cancellation


@pytest.mark.parametrize("bulk", ["run_bulk", "run_bulk_iter"])
async def test_cancelling_the_caller_cancels_the_calls_in_flight_and_waits_for_them(bulk):
    one = FakeCancel()
    ids = [f"order-{n}" for n in range(10)]
    before = other_tasks()
    if bulk == "run_bulk":
        task = asyncio.ensure_future(run_bulk(ids, one, concurrency=4))
    else:
        task = Collector(ids, one, concurrency=4).task
    await until(lambda: len(one.calls) == 4)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, STEP)
    # Unwound before the caller saw its CancelledError: no call still running, none started.
    assert sorted(one.cancelled) == sorted(ids[:4])
    assert one.in_flight == 0
    assert one.calls == ids[:4]
    assert other_tasks() <= before


async def test_leaving_run_bulk_iter_early_cancels_the_work_in_flight_before_the_block_ends():
    one = FakeCancel()
    ids = [f"order-{n}" for n in range(8)]
    before = other_tasks()
    one.release("order-2")
    async with contextlib.aclosing(run_bulk_iter(ids, one, concurrency=3)) as outcomes:
        async for item in outcomes:
            assert item == ("order-2", "done:order-2")
            break

    assert one.in_flight == 0
    assert sorted(one.cancelled) == ["order-0", "order-1", "order-3"]
    assert one.calls == ["order-0", "order-1", "order-2", "order-3"]
    assert other_tasks() <= before
