"""The cancel requests the simulated exchange receives, HTTP and RPC alike: their log and their overlap.

A request is *in flight* for its order from the moment the simulator has
read it (before any REST delay) until its answer is sent, or until its client
has gone away (an HTTP client that gave up, a closed WebSocket). The peak of
requests in flight at once per order is kept in ``max_concurrent``, the
evidence for "never two concurrent cancel requests for one order". The log
(``requests``) lists only the cancels that reached the order engine, past the
REST faults and auth. ``reply_delay`` holds the answer of a cancel that was
already applied (``CadenzaSimulator.delay_cancel_reply``).
"""

from __future__ import annotations

from typing import Any

from ._delays import DelaySwitch

__all__ = ["CancelDesk", "CancelTicket"]


class CancelTicket:
    """One cancel request in flight; :meth:`end` when it is answered or abandoned."""

    __slots__ = ("_desk", "_order_id", "ended")

    def __init__(self, desk: CancelDesk, order_id: str | None) -> None:
        self._desk = desk
        self._order_id = order_id
        self.ended = order_id is None

    def end(self) -> None:
        """The request is no longer in flight. Safe to call twice."""
        if self.ended:
            return
        self.ended = True
        assert self._order_id is not None
        self._desk._ended(self._order_id)


class CancelDesk:
    """Counts the cancel requests in flight per order and logs the ones the engine saw."""

    __slots__ = ("_in_flight", "max_concurrent", "reply_delay", "requests")

    def __init__(self) -> None:
        self.requests: list[tuple[Any, str]] = []
        self.max_concurrent: dict[str, int] = {}
        self._in_flight: dict[str, int] = {}
        self.reply_delay = DelaySwitch()

    def open(self, order_id: object) -> CancelTicket:
        """A request for ``order_id`` is in flight now (an id that is not a string is not counted)."""
        if not isinstance(order_id, str):
            return CancelTicket(self, None)
        now = self._in_flight.get(order_id, 0) + 1
        self._in_flight[order_id] = now
        if now > self.max_concurrent.get(order_id, 0):
            self.max_concurrent[order_id] = now
        return CancelTicket(self, order_id)

    def log(self, order_id: Any, via: str) -> None:
        """The request reached the order engine (``via``: ``"http"`` or ``"ws"``)."""
        self.requests.append((order_id, via))

    def in_flight(self, order_id: str) -> int:
        return self._in_flight.get(order_id, 0)

    def _ended(self, order_id: str) -> None:
        left = self._in_flight[order_id] - 1
        if left:
            self._in_flight[order_id] = left
        else:
            del self._in_flight[order_id]
