"""BackgroundCancels: fire-and-forget cancels, each owned until it has its outcome.

The client starts each ``cancel_nowait`` here: the task is kept (strong
reference) until it ends, its handle is returned to the caller, and a
failure nobody looked at (the handle never awaited or asked) is logged and
passed to ``on_background_error(exc, order_id)``. Closing drains them for a
bounded time; what is left ends with ``ClientClosedError`` through the
canceller's close, never with ``CancelledError``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from .cancels import CancelHandle
from .models import CancelResult

__all__ = ["BackgroundCancels", "BackgroundErrorHandler"]

log = logging.getLogger("cadenza_async.client")

BackgroundErrorHandler = Callable[[BaseException, str], object]

#: How long close waits for background cancels to raise ClientClosedError
#: once the canceller closed (each wait inside is woken at once by that close).
_FINISH_WAIT = 1.0


class BackgroundCancels:
    """The fire-and-forget cancels of one client; see the module docstring."""

    __slots__ = ("_on_error", "_tasks")

    def __init__(self, on_error: BackgroundErrorHandler | None = None) -> None:
        self._tasks: dict[asyncio.Task[CancelResult], str] = {}
        self._on_error = on_error

    def __len__(self) -> int:
        return len(self._tasks)

    def start(self, order_id: str, coro: Coroutine[Any, Any, CancelResult]) -> CancelHandle:
        """Run ``coro`` (the cancel of ``order_id``) in the background; its handle."""
        task = asyncio.get_running_loop().create_task(coro, name=f"cancel_nowait {order_id}")
        handle = CancelHandle(order_id, task)
        self._tasks[task] = order_id
        task.add_done_callback(lambda t: self._done(t, handle))
        return handle

    def _done(self, task: asyncio.Task[CancelResult], handle: CancelHandle) -> None:
        self._tasks.pop(task, None)
        if task.cancelled():
            return
        exc = task.exception()  # retrieved here: never "exception was never retrieved"
        if exc is not None and not handle.observed:
            self.report(exc, handle.order_id)

    def report(self, exc: BaseException, order_id: str) -> None:
        """Log a failure nobody awaited and pass it to ``on_background_error``."""
        log.error("fire-and-forget cancel of %s failed: %s: %s", order_id, type(exc).__name__, exc)
        callback = self._on_error
        if callback is None:
            return
        try:
            callback(exc, order_id)
        except Exception:
            log.exception("on_background_error raised")

    async def drain(self) -> None:
        """Wait until every background cancel started so far has its outcome."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def drain_for_close(self, timeout: float) -> None:
        """Wait up to ``timeout`` for the background cancels; log those still unfinished."""
        tasks = set(self._tasks)
        if not tasks:
            return
        _done, unfinished = await asyncio.wait(tasks, timeout=timeout)
        if unfinished:
            ids = sorted(self._tasks.get(task, task.get_name()) for task in unfinished)
            log.error(
                "closing with %d fire-and-forget cancel(s) unconfirmed after %.1fs: %s",
                len(ids),
                timeout,
                ", ".join(ids[:20]) + (" ..." if len(ids) > 20 else ""),
            )

    async def finish(self) -> None:
        """After the canceller closed: wait for each cancel to end with ``ClientClosedError``.

        One that does not end within a second (a bug: every wait is woken by
        the canceller's close) is cancelled, so closing never hangs.
        """
        tasks = set(self._tasks)
        if not tasks:
            return
        _done, stuck = await asyncio.wait(tasks, timeout=_FINISH_WAIT)
        for task in stuck:  # pragma: no cover - see the docstring
            log.error("background cancel %s did not end after close", task.get_name())
            task.cancel()
        if stuck:  # pragma: no cover
            await asyncio.gather(*stuck, return_exceptions=True)
