"""Bulk cancels: bounded concurrency, one outcome per order, in input or completion order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from typing import TypeVar

from ._validate import check_order_id
from .errors import CadenzaError

__all__ = ["run_bulk", "run_bulk_iter", "run_pool"]

T = TypeVar("T")


def _prepare(
    order_ids: Iterable[str], concurrency: int
) -> tuple[list[str], dict[str, CadenzaError]]:
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError("concurrency must be an int >= 1")
    if isinstance(order_ids, (str, bytes)):
        raise TypeError("order_ids must be an iterable of order ids, not a single string")
    unique: list[str] = []
    invalid: dict[str, CadenzaError] = {}
    seen: set[object] = set()
    for oid in order_ids:
        key: object = oid if isinstance(oid, str) else id(oid)
        if key in seen:
            continue
        seen.add(key)
        try:
            unique.append(check_order_id(oid))
        except CadenzaError as exc:
            exc.order_id = oid if isinstance(oid, str) else None
            invalid[oid if isinstance(oid, str) else repr(oid)] = exc
    return unique, invalid


async def _outcome(one: Callable[[str], Awaitable[T]], oid: str) -> T | CadenzaError:
    """``await one(oid)``, with that order's own failure as the outcome (naming it)."""
    try:
        return await one(oid)
    except CadenzaError as exc:
        return _named(exc, oid)


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


async def run_bulk_iter(
    order_ids: Iterable[str],
    one: Callable[[str], Awaitable[T]],
    *,
    concurrency: int,
) -> AsyncGenerator[tuple[str, T | CadenzaError], None]:
    """Yield ``(order_id, outcome)`` in completion order, at most ``concurrency`` in flight.

    Each id is run once however often it appears. An id refused before any
    I/O yields its :class:`~cadenza_async.errors.InvalidOrderIdError`. An
    order's own failure is yielded, never raised; anything that is not a
    :class:`CadenzaError` (a bug, or cancellation) propagates. Stopping the
    iteration, or cancelling the caller, cancels the work still in flight
    and waits for it to unwind.
    """
    unique, invalid = _prepare(order_ids, concurrency)
    for key, exc in invalid.items():
        yield key, exc
    if not unique:
        return
    queue: asyncio.Queue[tuple[str, T | CadenzaError] | BaseException] = asyncio.Queue()
    ids = iter(unique)

    async def worker() -> None:
        for oid in ids:
            try:
                outcome = await _outcome(one, oid)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # a bug: hand it to the consumer, who re-raises
                queue.put_nowait(exc)
                return
            queue.put_nowait((oid, outcome))

    workers = _start(worker, min(concurrency, len(unique)))
    try:
        for _ in range(len(unique)):
            item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        await _stop(workers)


async def run_bulk(
    order_ids: Iterable[str],
    one: Callable[[str], Awaitable[T]],
    *,
    concurrency: int,
) -> list[T | CadenzaError]:
    """One outcome per input, in input order (repeated ids get the same outcome).

    Same rules as :func:`run_bulk_iter`; outcomes are written in place by a
    fixed pool of workers (no per-order task, no queue).
    """
    if isinstance(order_ids, (str, bytes)):
        raise TypeError("order_ids must be an iterable of order ids, not a single string")
    inputs = list(order_ids)
    unique, invalid = _prepare(inputs, concurrency)
    outcomes: dict[str, T | CadenzaError] = dict(invalid)

    async def work(oid: str) -> None:
        # (not through _outcome: one coroutine less per order)
        try:
            outcomes[oid] = await one(oid)
        except CadenzaError as exc:
            outcomes[oid] = _named(exc, oid)

    await run_pool(unique, work, concurrency=concurrency)
    return [outcomes[oid if isinstance(oid, str) else repr(oid)] for oid in inputs]
