"""TaskOwner: every task has an owner that keeps it, sees its end and stops it on close."""

from __future__ import annotations

import asyncio
import logging

import pytest

from cadenza_async._tasks import TaskOwner

log = logging.getLogger("test.tasks")


async def test_a_watched_task_is_forgotten_when_it_ends_and_its_error_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    owner = TaskOwner(log)

    async def boom() -> None:
        raise RuntimeError("boom")

    task = owner.spawn(boom(), "boom")
    assert list(owner) == [task]  # kept until its done callback has run
    with pytest.raises(RuntimeError):
        await task
    await asyncio.sleep(0)  # the done callback runs
    assert len(owner) == 0
    assert "task boom failed: RuntimeError: boom" in caplog.text


async def test_an_unwatched_task_is_kept_until_it_discards_itself() -> None:
    owner = TaskOwner(log)
    release = asyncio.Event()

    async def job() -> None:
        try:
            await release.wait()
        finally:
            owner.discard(asyncio.current_task())

    task = owner.spawn(job(), "job", watched=False)
    await asyncio.sleep(0)
    assert list(owner) == [task]  # kept: a strong reference while it runs
    release.set()
    await task
    assert len(owner) == 0


async def test_an_unwatched_task_that_ends_at_its_start_is_not_kept() -> None:
    owner = TaskOwner(log)

    async def at_once() -> None:
        owner.discard(asyncio.current_task())

    task = owner.spawn(at_once(), "at once", watched=False)
    await task
    assert len(owner) == 0  # (on 3.12+ it ran to its end inside spawn: never added)


async def test_close_cancels_watched_and_unwatched_tasks_and_refuses_new_ones() -> None:
    owner = TaskOwner(log)
    forever = asyncio.Event()

    async def unwatched() -> None:
        try:
            await forever.wait()
        finally:
            owner.discard(asyncio.current_task())

    a = owner.spawn(forever.wait(), "watched")
    b = owner.spawn(unwatched(), "unwatched", watched=False)
    await asyncio.sleep(0)
    await owner.aclose()
    assert a.cancelled()
    assert b.cancelled()
    assert len(owner) == 0
    coro = forever.wait()
    with pytest.raises(RuntimeError, match="closed"):
        owner.spawn(coro, "late")
