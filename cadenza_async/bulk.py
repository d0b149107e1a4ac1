"""Bulk cancels: bounded concurrency, one outcome per order, in input or completion order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from typing import TypeVar

from ._validate import check_order_id, valid_ids
from .errors import CadenzaError

__all__ = ["Many", "run_bulk", "run_bulk_iter", "run_many", "run_many_iter", "run_pool"]

T = TypeVar("T")

#: ``many(order_ids, record)``: runs each of ``order_ids`` (valid, unique) and calls
#: ``record(order_id, outcome)`` once per order; returns once every order has one.
Many = Callable[[list[str], Callable[[str, "T | CadenzaError"], None]], Awaitable[None]]


def _prepare(
    order_ids: Iterable[str], concurrency: int
) -> tuple[list[str], dict[str, CadenzaError], dict[str, str]]:
    """The unique ids to cancel (lower case), the refused ones' errors, and input -> id
    for the inputs written otherwise (upper case)."""
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError("concurrency must be an int >= 1")
    if isinstance(order_ids, (str, bytes)):
        raise TypeError("order_ids must be an iterable of order ids, not a single string")
    if type(order_ids) is list and valid_ids(order_ids):
        return list(dict.fromkeys(order_ids)), {}, {}  # the usual bulk: no loop of our own
    unique: dict[str, None] = {}
    invalid: dict[str, CadenzaError] = {}
    renamed: dict[str, str] = {}
    seen: set[object] = set()
    for oid in order_ids:
        key: object = oid if isinstance(oid, str) else id(oid)
        if key in seen:
            continue
        seen.add(key)
        try:
            checked = check_order_id(oid)
        except CadenzaError as exc:
            exc.order_id = oid if isinstance(oid, str) else None
            invalid[oid if isinstance(oid, str) else repr(oid)] = exc
            continue
        unique[checked] = None
        if checked != oid:
            renamed[oid] = checked
    return list(unique), invalid, renamed


def _named(exc: CadenzaError, oid: str) -> CadenzaError:
    """``exc`` as the outcome of ``oid``: it names the order (unless it names one already)."""
    if exc.order_id is None:
        exc.order_id = oid
    return exc


def _start(worker: Callable[[], Awaitable[None]], n: int) -> list[asyncio.Future[None]]:
    return [asyncio.ensure_future(worker()) for _ in range(n)]


async def _stop(workers: list[asyncio.Future[None]]) -> None:
    """Cancel the workers still running and wait until every one has ended."""
    for task in workers:
        task.cancel()
    if workers:
        await asyncio.gather(*workers, return_exceptions=True)


async def run_pool(
    items: Iterable[T], work: Callable[[T], Awaitable[None]], *, concurrency: int
) -> None:
    """``await work(item)`` for every item, ``concurrency`` at a time, by a fixed pool of workers.

    Returns once every item is done; ``work`` records its own outcome (an
    exception out of it cancels the rest and is raised). Cancelling the caller
    cancels the workers and waits until each has ended.
    """
    pending = list(items)
    queue = iter(pending)

    async def worker() -> None:
        for item in queue:
            await work(item)

    workers = _start(worker, min(concurrency, len(pending)))
    try:
        if workers:
            await asyncio.gather(*workers)
    finally:
        await _stop(workers)


def _pooled(one: Callable[[str], Awaitable[T]], concurrency: int) -> Many[T]:
    """``one(order_id)`` per order through a pool of ``concurrency`` workers, as a :data:`Many`."""

    async def many(unique: list[str], record: Callable[[str, T | CadenzaError], None]) -> None:
        async def work(oid: str) -> None:
            try:
                outcome: T | CadenzaError = await one(oid)
            except CadenzaError as exc:
                outcome = _named(exc, oid)
            record(oid, outcome)

        await run_pool(unique, work, concurrency=concurrency)

    return many


async def run_many_iter(
    order_ids: Iterable[str], many: Many[T], *, concurrency: int
) -> AsyncGenerator[tuple[str, T | CadenzaError], None]:
    """Yield ``(order_id, outcome)`` in completion order from ``many``.

    ``many(unique_ids, record)`` runs every valid order once and records each
    outcome (an order's own failure as its outcome); it returns once every
    order has one. An id refused before any I/O yields its
    :class:`~cadenza_async.errors.InvalidOrderIdError`. Anything ``many``
    raises (a bug, not an order's failure) is raised here. Stopping the
    iteration, or cancelling the caller, cancels ``many`` and waits for it to unwind.
    """
    unique, invalid, _ = _prepare(order_ids, concurrency)
    for key, exc in invalid.items():
        yield key, exc
    if not unique:
        return
    queue: asyncio.Queue[tuple[str, T | CadenzaError] | BaseException] = asyncio.Queue()

    def record(oid: str, outcome: T | CadenzaError) -> None:
        queue.put_nowait((oid, outcome))

    async def run() -> None:
        try:
            await many(unique, record)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a bug: hand it to the consumer, who re-raises
            queue.put_nowait(exc)

    task = asyncio.ensure_future(run())
    try:
        for _ in range(len(unique)):
            item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        await _stop([task])


async def run_many(
    order_ids: Iterable[str], many: Many[T], *, concurrency: int
) -> list[T | CadenzaError]:
    """One outcome per input, in input order (repeated ids get the same outcome), from ``many``.

    Same rules as :func:`run_many_iter`; outcomes are written in place.
    """
    if isinstance(order_ids, (str, bytes)):
        raise TypeError("order_ids must be an iterable of order ids, not a single string")
    inputs = list(order_ids)
    unique, invalid, renamed = _prepare(inputs, concurrency)
    outcomes: dict[str, T | CadenzaError] = dict(invalid)
    if unique:
        await many(unique, outcomes.__setitem__)
    if not invalid and not renamed:  # every input a valid id, as sent
        return list(map(outcomes.__getitem__, inputs))
    return [
        outcomes[renamed.get(oid, oid) if isinstance(oid, str) else repr(oid)] for oid in inputs
    ]


def run_bulk_iter(
    order_ids: Iterable[str],
    one: Callable[[str], Awaitable[T]],
    *,
    concurrency: int,
) -> AsyncGenerator[tuple[str, T | CadenzaError], None]:
    """:func:`run_many_iter` with ``await one(order_id)`` per order, ``concurrency`` at a time."""
    return run_many_iter(order_ids, _pooled(one, concurrency), concurrency=concurrency)


async def run_bulk(
    order_ids: Iterable[str],
    one: Callable[[str], Awaitable[T]],
    *,
    concurrency: int,
) -> list[T | CadenzaError]:
    """:func:`run_many` with ``await one(order_id)`` per order, by a fixed pool of workers."""
    return await run_many(order_ids, _pooled(one, concurrency), concurrency=concurrency)
