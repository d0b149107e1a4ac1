"""The submit requests the simulated exchange receives, HTTP and RPC alike: their log and reply faults.

The log (``requests``) lists every submit that reached the order engine, past
the REST faults and auth, as ``(clientOrderId or None, "http" | "ws")``: a
repeat of a ``clientOrderId`` is there too (the engine answered it with the
order already placed). Two faults act on a submit the engine has applied:
``reply_delay`` holds its answer (HTTP and RPC), and ``lost_replies`` loses
the answer of the next HTTP submits (the connection is dropped without an
answer, or a 5xx is answered instead): the order exists, the client cannot
tell.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from ._delays import DelaySwitch

__all__ = ["SubmitDesk"]


class SubmitDesk:
    """Logs the submits the engine saw and holds the faults on their answers."""

    __slots__ = ("in_flight", "lost_replies", "max_concurrent", "reply_delay", "requests")

    def __init__(self) -> None:
        self.requests: list[tuple[Any, str]] = []
        # submits being handled (read, not yet answered), and the most at once
        self.in_flight = 0
        self.max_concurrent = 0
        self.reply_delay = DelaySwitch()
        # per HTTP submit applied: None drops the connection, an int answers that status
        self.lost_replies: deque[int | None] = deque()

    def begin(self) -> None:
        """A submit request arrived (HTTP or RPC); it is in flight until :meth:`end`."""
        self.in_flight += 1
        if self.in_flight > self.max_concurrent:
            self.max_concurrent = self.in_flight

    def end(self) -> None:
        """A submit request was answered (or its client went away)."""
        self.in_flight -= 1

    def log(self, client_order_id: Any, via: str) -> None:
        """A submit reached the order engine (``via``: ``"http"`` or ``"ws"``)."""
        self.requests.append((client_order_id, via))

    def lose_replies(self, n: int, status: int | None) -> None:
        """Lose the answer of the next ``n`` HTTP submits the engine applies."""
        if n < 1:
            raise ValueError("n must be >= 1")
        if status is not None and not 500 <= status <= 599:
            raise ValueError(f"a lost submit reply is a dropped connection or a 5xx, not {status}")
        self.lost_replies.extend([status] * n)

    def take_lost_reply(self) -> tuple[bool, int | None]:
        """``(lost, status)`` for the submit just applied (used up)."""
        if not self.lost_replies:
            return False, None
        return True, self.lost_replies.popleft()
