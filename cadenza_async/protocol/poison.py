"""Poisoned positions: channels whose recovery keeps replaying a message the client refuses.

Rule of this file: no sockets, no clocks, no tasks. The stream reports how
each connection ended and each subscribe that went through; it asks
:class:`PoisonedPositions` whether a channel's next subscribe may recover.

A message the client refuses (a protocol violation, a binary frame, a
message over the size limit) inside a channel's history comes back with
every recovery: reconnecting from the same position replays it and the
connection dies again. So:

==========================================  ==========================================
the stream reports                          what changes
==========================================  ==========================================
a poisoned end, with each wanted            a channel at the same position as at the
channel's position at that moment           previous poisoned end (no clean end in
                                            between) is *stuck*: its next subscribe
                                            asks for no recovery
a connection that connected and ended       the previous poisoned end is forgotten
for another reason
a subscribe that went through               the channel is no longer stuck, and its
                                            position is no longer compared; a stuck
                                            one reports that continuity was lost
the channel is no longer wanted             it is no longer stuck
==========================================  ==========================================

A stuck channel resubscribes from a fresh position, past the bad message,
and the application reconciles by REST (the stream's ``on_gap``): nothing is
lost, REST is the source of truth.
"""

from __future__ import annotations

from collections.abc import Mapping

from .centrifugo import StreamPosition

__all__ = ["PoisonedPositions"]


class PoisonedPositions:
    """Which channels resubscribe without recovery; see the module docstring."""

    __slots__ = ("_last", "_stuck")

    def __init__(self) -> None:
        # Each wanted channel's position at the last poisoned end (None: no such end).
        self._last: dict[str, StreamPosition | None] | None = None
        self._stuck: set[str] = set()

    def __repr__(self) -> str:
        return f"<PoisonedPositions stuck={sorted(self._stuck)}>"

    @property
    def stuck(self) -> frozenset[str]:
        """The channels whose next subscribe asks for no recovery."""
        return frozenset(self._stuck)

    def recovers(self, channel: str) -> bool:
        """True when ``channel``'s next subscribe may ask to recover from its position."""
        return channel not in self._stuck

    def poisoned_end(self, positions: Mapping[str, StreamPosition | None]) -> list[str]:
        """A connection died on something the peer sent; ``positions``: each wanted channel's.

        Returns the channels that became stuck now (sorted), for the caller
        to say so; channels already stuck stay stuck and are not repeated.
        """
        now = dict(positions)
        before = self._last
        self._last = now
        if before is None:
            return []
        newly: list[str] = []
        for channel, position in now.items():
            if channel in before and before[channel] == position and channel not in self._stuck:
                self._stuck.add(channel)
                newly.append(channel)
        return sorted(newly)

    def clean_end(self) -> None:
        """A connection that connected ended for another reason: positions moved on."""
        self._last = None

    def subscribed(self, channel: str) -> bool:
        """``channel``'s subscribe went through; True when it was stuck (continuity lost)."""
        last = self._last
        if last is not None:
            last.pop(channel, None)  # this position recovered: not stuck
        if channel in self._stuck:
            self._stuck.discard(channel)
            return True
        return False

    def forget(self, channel: str) -> None:
        """``channel`` is no longer wanted: its next subscribe, if any, recovers as usual."""
        self._stuck.discard(channel)
