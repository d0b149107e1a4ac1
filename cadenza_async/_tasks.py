"""TaskOwner: the one way this package starts a task that outlives the call that started it.

Every such task has an owner that keeps a strong reference to it until it
ends, retrieves its exception (so nothing is "never retrieved"), and on
:meth:`TaskOwner.aclose` cancels what is still running and waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

__all__ = ["TaskOwner"]

T = TypeVar("T")


class TaskOwner:
    """Owns background tasks: keeps them alive, sees their end, stops them on close.

    ``on_error(task, exc)`` is called for a task that ended with an exception
    (default: logged at ERROR on ``logger``). Starting a task after
    :meth:`aclose` raises ``RuntimeError``.
    """

    __slots__ = ("_closed", "_log", "_on_error", "_tasks")

    def __init__(
        self,
        logger: logging.Logger,
        on_error: Callable[[asyncio.Task[Any], BaseException], None] | None = None,
    ) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._log = logger
        self._on_error = on_error
        self._closed = False

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(list(self._tasks))

    def spawn(
        self, coro: Coroutine[Any, Any, T], name: str | None = None, *, watched: bool = True
    ) -> asyncio.Task[T]:
        """Start ``coro`` as a task of this owner and return it.

        ``watched=False`` is for hot paths whose coroutine handles its own
        errors: no done callback (one loop turn less per task), so the
        coroutine must end by calling :meth:`discard` with its task (in a
        ``finally``) and must raise nothing but cancellation.
        """
        if self._closed:
            coro.close()
            raise RuntimeError("this task owner is closed")
        loop = asyncio.get_running_loop()
        task: asyncio.Task[T]
        if sys.version_info >= (3, 12):
            # Run the coroutine at once up to its first real wait: one loop turn less.
            task = asyncio.Task(coro, loop=loop, name=name, eager_start=True)
        else:
            task = loop.create_task(coro, name=name)
        if watched:
            self._tasks.add(task)
            task.add_done_callback(self._done)
        elif not task.done():  # (an eager start may have run it to its end already)
            self._tasks.add(task)
        return task

    def discard(self, task: asyncio.Task[Any] | None) -> None:
        """Forget a task started with ``watched=False``; it calls this as it ends."""
        if task is not None:
            self._tasks.discard(task)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        if self._on_error is not None:
            self._on_error(task, exc)
        else:
            self._log.error("task %s failed: %s: %s", task.get_name(), type(exc).__name__, exc)

    def cancel_all(self) -> list[asyncio.Task[Any]]:
        """Cancel every running task; returns them (to await)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        return tasks

    async def aclose(self) -> None:
        """Refuse new tasks, cancel the running ones and wait until each has ended."""
        self._closed = True
        tasks = self.cancel_all()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
