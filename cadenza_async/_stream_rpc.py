"""RpcCalls: the RPCs waiting for their reply on the order stream, each caller on a future.

A call ends with its reply's data, with the error the server answered, when
the connection is lost (the command may have been applied), or at its
deadline: one :class:`~cadenza_async._alarm.Alarm` (a single loop timer)
wakes every call whose reply did not come in time, with ``None``.
"""

from __future__ import annotations

import asyncio

import msgspec

from ._alarm import Alarm

__all__ = ["RpcCalls"]


class RpcCalls:
    """Command id -> the future its caller waits on; see the module docstring."""

    __slots__ = ("_alarm", "waiting")

    def __init__(self) -> None:
        self.waiting: dict[int, asyncio.Future[msgspec.Raw | None]] = {}
        self._alarm = Alarm()

    def expect(
        self, command_id: int, deadline: float, loop: asyncio.AbstractEventLoop
    ) -> asyncio.Future[msgspec.Raw | None]:
        """A future for the reply to ``command_id``: its data, or ``None`` at ``deadline``."""
        waiter: asyncio.Future[msgspec.Raw | None] = loop.create_future()
        self.waiting[command_id] = waiter
        self._alarm.add(deadline, waiter)
        return waiter

    def forget(self, command_id: int, waiter: asyncio.Future[msgspec.Raw | None]) -> None:
        """The caller stopped waiting (answered or not)."""
        self._alarm.done()
        self.waiting.pop(command_id, None)
        if not waiter.done():
            waiter.cancel()

    def answered(self, command_id: int, data: msgspec.Raw) -> None:
        waiter = self.waiting.pop(command_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(data)

    def failed(self, command_id: int, error: Exception) -> None:
        waiter = self.waiting.pop(command_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def fail_all(self, error: Exception) -> None:
        """Every call waiting now fails with ``error``."""
        waiting, self.waiting = self.waiting, {}
        for waiter in waiting.values():
            if not waiter.done():
                waiter.set_exception(error)

    def close(self) -> None:
        self._alarm.close()
