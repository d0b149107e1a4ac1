"""Delay switches: how long a fault holds an answer back, and the answers it holds right now.

A switch is off at 0 and holds each answer for its number of seconds when
above 0. At ``math.inf`` it holds answers until it is set to a finite value
again (they are then let go at once) or until :meth:`DelaySwitch.release_all`
(the simulator stopping). A change of a finite delay applies to answers held
from then on; those already held keep their timer. Timers are plain
``loop.call_later`` handles owned by the switch, so nothing is left behind.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

__all__ = ["DelaySwitch", "Held", "checked_delay"]


def checked_delay(seconds: float) -> float:
    """``seconds`` as a float; raises ValueError when it is negative or NaN (``math.inf`` is fine)."""
    value = float(seconds)
    if math.isnan(value) or value < 0:
        raise ValueError(
            f"a delay must be >= 0 seconds (math.inf: until turned off), not {seconds!r}"
        )
    return value


class Held:
    """One held callback: called once when its delay is over, unless cancelled first."""

    __slots__ = ("_callback", "_switch", "_timer")

    def __init__(self, switch: DelaySwitch, callback: Callable[[], object]) -> None:
        self._switch = switch
        self._callback = callback
        self._timer: asyncio.TimerHandle | None = None

    @property
    def until_lifted(self) -> bool:
        """True when no timer runs: it waits for the switch to let it go."""
        return self._timer is None

    def cancel(self) -> None:
        """Forget it without calling it. Safe to call twice, and after it was called."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._switch._held.pop(self, None)

    def fire(self) -> None:
        """Call it now (once), whatever is left of its delay."""
        held = self._switch._held
        if self not in held:
            return
        del held[self]
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._callback()


class DelaySwitch:
    """One delay fault; see the module docstring for what 0, > 0 and ``math.inf`` do."""

    __slots__ = ("_held", "seconds")

    def __init__(self) -> None:
        self.seconds = 0.0
        self._held: dict[Held, None] = {}

    @property
    def active(self) -> bool:
        return self.seconds > 0

    @property
    def holding(self) -> int:
        """How many answers it holds now."""
        return len(self._held)

    def set(self, seconds: float) -> None:
        """Set the delay; a finite value lets go of what ``math.inf`` held. Raises ValueError (< 0, NaN)."""
        self.seconds = checked_delay(seconds)
        if not math.isinf(self.seconds):
            for held in [held for held in self._held if held.until_lifted]:
                held.fire()

    def hold(self, callback: Callable[[], object]) -> Held:
        """Call ``callback`` once the current delay has passed; needs a running event loop.

        With the switch off the callback still goes through the loop (soon, not now).
        """
        held = Held(self, callback)
        self._held[held] = None
        if not math.isinf(self.seconds):
            held._timer = asyncio.get_running_loop().call_later(self.seconds, held.fire)
        return held

    def release_all(self) -> None:
        """Let go of everything held now, in the order it was held (the simulator is stopping)."""
        for held in list(self._held):
            held.fire()
