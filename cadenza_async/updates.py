"""OrderUpdates: fan-out of order updates to ``order_updates()`` readers, bounded and never blocking."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from .models import TradeOrder

if TYPE_CHECKING:
    from .stream import OrderStream

__all__ = ["OrderUpdates"]

log = logging.getLogger("cadenza_async.updates")


class _Reader:
    __slots__ = ("buffer", "closed", "dropped", "wakeup")

    def __init__(self, size: int) -> None:
        self.buffer: collections.deque[TradeOrder] = collections.deque(maxlen=size)
        self.wakeup: asyncio.Future[None] | None = None
        self.dropped = 0
        self.closed = False


class OrderUpdates:
    """Hands every order update to every reader without ever waiting for one.

    Each reader has a buffer of ``size`` updates. When a slow reader's buffer
    is full the oldest update is dropped, counted in :attr:`dropped`, and a
    warning is logged (at most once a second): overflow is reported, never
    silent, and never slows the stream or the confirmations.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._readers: set[_Reader] = set()
        self._stream: OrderStream | None = None
        self.dropped = 0
        self._last_warning = 0.0

    def __bool__(self) -> bool:
        return bool(self._readers)

    def on_order(self, order: TradeOrder, account: str | None) -> None:
        """An order event from the stream (its listener signature): published to every reader."""
        if self._readers:
            self.publish(order)

    def publish(self, order: TradeOrder) -> None:
        """Give ``order`` to every reader; called from the stream's reader, never blocks."""
        for reader in self._readers:
            if len(reader.buffer) == self._size:
                reader.dropped += 1
                self.dropped += 1
                self._warn_overflow()
            reader.buffer.append(order)
            wakeup = reader.wakeup
            if wakeup is not None and not wakeup.done():
                wakeup.set_result(None)

    def _warn_overflow(self) -> None:
        now = time.monotonic()
        if now - self._last_warning >= 1.0:
            self._last_warning = now
            log.warning(
                "order_updates() reader is too slow: %d updates dropped so far (buffer %d)",
                self.dropped,
                self._size,
            )

    def close(self) -> None:
        """End every reader's iteration after it has read what is buffered."""
        for reader in self._readers:
            reader.closed = True
            wakeup = reader.wakeup
            if wakeup is not None and not wakeup.done():
                wakeup.set_result(None)

    def attach_stream(self, stream: OrderStream) -> None:
        """Take ``stream``'s order events while there are readers (each event calls every listener)."""
        self._stream = stream

    async def subscribe(self) -> AsyncIterator[TradeOrder]:
        """Yield updates as they arrive until :meth:`close`; the caller may stop at any time."""
        reader = _Reader(self._size)
        self._readers.add(reader)
        if self._stream is not None and len(self._readers) == 1:
            self._stream.listen(self.on_order)
        loop = asyncio.get_running_loop()
        try:
            while True:
                while reader.buffer:
                    yield reader.buffer.popleft()
                if reader.closed:
                    return
                reader.wakeup = loop.create_future()
                try:
                    await reader.wakeup
                finally:
                    reader.wakeup = None
        finally:
            self._readers.discard(reader)
            if self._stream is not None and not self._readers:
                self._stream.unlisten(self.on_order)
