"""Subscription policy: which channels the stream keeps subscribed, and when each subscribe goes out.

Rule of this file: no sockets, no clocks, no tasks. The stream tells
:class:`Subscriptions` what was asked (:meth:`~Subscriptions.want`,
:meth:`~Subscriptions.release`, a caller waiting for a channel) and what
happened (a connect, each subscribe's answer, a server unsubscribe, the end
of a connection); the policy decides, queues every subscribe and
unsubscribe on the :class:`~cadenza_async.protocol.centrifugo.CentrifugoProtocol`
it was given (the stream writes what that queues), and says what the
application must hear. Time only enters as ``now``.

The rules:

======================================  ============================================
what happens                            what the policy does
======================================  ============================================
``want(channel)``, or a caller waits    the channel is wanted: subscribed now when
for it                                  connected (ahead of a reconnect's queue),
                                        else at the next connect
``release(channel)``                    not wanted: unsubscribed when connected,
                                        its position forgotten (a later want starts
                                        from now); refused (False, nothing changes)
                                        while a caller waits for the channel
``drop(channel)`` (``unsubscribe``)     not wanted whoever waits; the callers are
                                        handed back, to fail
a connect                               every wanted channel queued (sorted); at
                                        most ``window`` subscribes wait for their
                                        reply at once, each asking to recover from
                                        its position unless the poisoned-position
                                        rule (:mod:`.poison`) says the channel is
                                        stuck
a subscribe answered                    its callers handed back, to resolve; live
                                        since ``now`` unless it already was; a gap
                                        when continuity was lost (the core says so,
                                        or the channel was stuck); the next queued
                                        subscribe goes; once none waits or is
                                        queued the window doubles (up to
                                        :data:`RESUBSCRIBE_WINDOW`)
refused with 112 (unrecoverable         position forgotten, subscribed again ahead
position), the channel wanted           of the queue, without recovery; a gap
refused otherwise (103 permission       not wanted, position forgotten, its callers
denied, ...)                            handed back, to fail; the application is
                                        told it was refused
the server unsubscribes, code >= 2500   subscribed again ahead of the queue
the server unsubscribes, other codes    not wanted, position forgotten, its callers
                                        handed back, to fail; a gap
a reply that no event reports (a        its place in the window is free again
subscribe since released)               (:meth:`~Subscriptions.pump`)
the connection ends                     nothing waits or is queued any more; ended
                                        by the client's 1009 (a message over its
                                        size limit) while subscribes waited or
                                        were queued: the window is divided by 8
                                        (at least 1); a poisoned end goes to the
                                        poisoned-position rule, a clean one after a
                                        connect clears it
the stream fails or closes              every waiting caller handed back, to fail
======================================  ============================================

Why a window: a server combines the replies that are ready into one
message, and a thousand recovery replies at once would make one message far
over the client's size limit; the connection would die on it at every
reconnect. Invariants (checked by a Hypothesis state machine): after a
connect, every wanted channel is subscribed, waiting for its reply or
queued; never more than ``window`` subscribes wait for their reply; a
refused channel is not wanted; a release never fails a waiting caller.

Callers are opaque handles (the stream keeps an ``asyncio.Future`` per
caller); the policy only keeps them and hands them back.
"""

from __future__ import annotations

from collections import deque
from typing import Final, Generic, NamedTuple, TypeVar

from .centrifugo import CentrifugoProtocol, Subscribed, Unsubscribed
from .poison import PoisonedPositions

__all__ = [
    "ERROR_PERMISSION_DENIED",
    "ERROR_UNRECOVERABLE_POSITION",
    "RESUBSCRIBE_WINDOW",
    "Answered",
    "Ended",
    "Subscriptions",
    "Verdict",
]

RESUBSCRIBE_WINDOW: Final = 64
"""At most this many subscribes wait for their reply at once (the window's ceiling)."""

ERROR_PERMISSION_DENIED: Final = 103
ERROR_UNRECOVERABLE_POSITION: Final = 112

#: A 1009 while subscribes were in the window divides it by this.
_SHRINK: Final = 8

H = TypeVar("H")


class Answered(Generic[H]):
    """A subscribe went through: ``gap`` when continuity was lost; the ``callers`` to resolve."""

    __slots__ = ("callers", "gap")

    def __init__(self, gap: bool, callers: list[H]) -> None:
        self.gap = gap
        self.callers = callers


class Verdict(Generic[H]):
    """What a refusal or a server unsubscribe did to a channel.

    ``resubscribed``: it is subscribed again (a refusal 112, from now: report
    a gap); else it is no longer wanted, ``callers`` are to fail and
    ``was_wanted`` says whether anyone still wanted it.
    """

    __slots__ = ("callers", "resubscribed", "was_wanted")

    def __init__(self, resubscribed: bool, was_wanted: bool, callers: list[H]) -> None:
        self.resubscribed = resubscribed
        self.was_wanted = was_wanted
        self.callers = callers


class Ended(NamedTuple):
    """What the end of a connection changed: channels now ``stuck`` and the ``window`` if it shrank."""

    stuck: list[str]
    window: int | None


class Subscriptions(Generic[H]):
    """The wanted channels and their subscribes on ``core``; see the module docstring.

    ``window`` is the ceiling of the resubscribe window (tests lower it).
    """

    __slots__ = (
        "_callers",
        "_ceiling",
        "_core",
        "_in_flight",
        "_live_since",
        "_queue",
        "_wanted",
        "_window",
        "poison",
    )

    def __init__(self, core: CentrifugoProtocol, *, window: int = RESUBSCRIBE_WINDOW) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self._core = core
        self._ceiling = window
        self._window = window
        self._wanted: set[str] = set()
        self._callers: dict[str, list[H]] = {}
        self._live_since: dict[str, float] = {}
        # Subscribes to send, in order, and those sent that still wait for their
        # reply (command id -> channel); a reply frees its place in the window.
        self._queue: deque[str] = deque()
        self._in_flight: dict[int, str] = {}
        self.poison = PoisonedPositions()

    def __repr__(self) -> str:
        return (
            f"<Subscriptions wanted={len(self._wanted)} queued={len(self._queue)} "
            f"in_flight={len(self._in_flight)} window={self._window}>"
        )

    # ------------------------------------------------------------------ queries

    @property
    def wanted(self) -> frozenset[str]:
        """The channels kept subscribed."""
        return frozenset(self._wanted)

    def __len__(self) -> int:
        return len(self._wanted)

    def is_wanted(self, channel: str) -> bool:
        return channel in self._wanted

    @property
    def window(self) -> int:
        """How many subscribes may wait for their reply at once now."""
        return self._window

    @property
    def queued(self) -> int:
        """Subscribes waiting for a place in the window."""
        return len(self._queue)

    @property
    def busy(self) -> bool:
        """True while subscribes wait for their reply or for a place in the window."""
        return bool(self._in_flight or self._queue)

    @property
    def queue(self) -> tuple[str, ...]:
        """The channels waiting for a place in the window, in the order they will go."""
        return tuple(self._queue)

    @property
    def in_flight(self) -> int:
        """Subscribes sent that wait for their reply."""
        return len(self._in_flight)

    def has_callers(self, channel: str) -> bool:
        """True while a caller waits for ``channel`` to be subscribed."""
        return channel in self._callers

    def live_since(self, channel: str) -> float | None:
        """Since when ``channel`` has been subscribed without being given up (``now`` of its reply)."""
        return self._live_since.get(channel)

    # ------------------------------------------------------------------ requests

    def want(self, channel: str, now: float) -> bool:
        """Keep ``channel`` subscribed; True when a subscribe was queued on the core now."""
        if channel in self._wanted:
            return False
        self._wanted.add(channel)
        return self._send_first(channel, now)

    def wait(self, channel: str, caller: H, now: float) -> bool:
        """``caller`` waits for ``channel`` (wanted from now); True when a subscribe was queued.

        For a channel not subscribed yet (a caller of a subscribed one has
        nothing to wait for): the caller is handed back when the channel's
        subscribe is answered, refused, or the channel dropped.
        """
        self._callers.setdefault(channel, []).append(caller)
        return self.want(channel, now)

    def stop_waiting(self, channel: str, caller: H) -> None:
        """``caller`` no longer waits (answered, failed or gave up); the channel stays wanted."""
        callers = self._callers.get(channel)
        if callers is not None and caller in callers:
            callers.remove(caller)
            if not callers:
                del self._callers[channel]

    def release(self, channel: str, now: float) -> bool:
        """Stop wanting ``channel``; False (and nothing changes) while a caller waits for it."""
        if channel in self._callers:
            return False
        if channel in self._wanted:
            self._stop_wanting(channel, now)
        return True

    def drop(self, channel: str, now: float) -> list[H]:
        """Stop wanting ``channel`` whoever waits; the callers that waited, to fail."""
        if channel in self._wanted:
            self._stop_wanting(channel, now)
        return self._callers.pop(channel, [])

    def fail_all(self) -> list[H]:
        """Every waiting caller, to fail (the stream failed or closed); they no longer wait."""
        callers = [caller for waiting in self._callers.values() for caller in waiting]
        self._callers.clear()
        return callers

    # ------------------------------------------------------------------ what happened

    def connected(self, now: float) -> None:
        """A connect succeeded: every wanted channel is queued, the window's worth sent."""
        self._in_flight.clear()
        self._queue = deque(sorted(self._wanted))
        self._fill(now)

    def subscribed(self, event: Subscribed, now: float) -> Answered[H]:
        """The core's ``Subscribed``: whether continuity was lost, and the callers to resolve."""
        channel = event.channel
        self._in_flight.pop(event.command_id, None)
        self._fill(now)
        gap = self.poison.subscribed(channel) or event.gap
        if channel in self._wanted:
            self._live_since.setdefault(channel, now)
        return Answered(gap, self._callers.pop(channel, []))

    def refused(self, command_id: int, channel: str, code: int, now: float) -> Verdict[H]:
        """A subscribe of ``channel`` was refused with error ``code``; see :class:`Verdict`."""
        self._in_flight.pop(command_id, None)
        if code == ERROR_UNRECOVERABLE_POSITION and channel in self._wanted:
            self._core.forget(channel)  # no position: the next subscribe starts from now
            self._send_first(channel, now)
            return Verdict(True, True, [])
        return self._given_up(channel, now)

    def unsubscribed(self, event: Unsubscribed, now: float) -> Verdict[H]:
        """The server unsubscribed a channel: subscribed again, or dropped; see :class:`Verdict`."""
        channel = event.channel
        if event.resubscribe and channel in self._wanted:
            self._send_first(channel, now)
            return Verdict(True, True, [])
        return self._given_up(channel, now)

    def pump(self, now: float) -> bool:
        """Let queued subscribes out into places freed by replies no event reported.

        True when a subscribe was queued on the core. For after every frame
        while :attr:`busy`: a subscribe since released is answered without
        an event, and its place is freed here.
        """
        return self._fill(now)

    def connection_lost(self, *, connected: bool, poisoned: bool, too_big: bool) -> Ended:
        """The connection ended (after the core's ``connection_lost``).

        ``connected``: its connect had succeeded; ``poisoned``: it died on
        something the peer sent that the client refuses; ``too_big``: the
        client closed it with 1009. Returns the channels that became stuck and
        the window if it shrank.
        """
        window: int | None = None
        if too_big and (self._in_flight or self._queue):
            # Replies arriving together were too big: fewer at a time.
            window = self._window = max(1, self._window // _SHRINK)
        self._in_flight.clear()
        self._queue.clear()
        stuck: list[str] = []
        if poisoned:
            positions = self._core.positions
            stuck = self.poison.poisoned_end({ch: positions.get(ch) for ch in self._wanted})
        elif connected:
            self.poison.clean_end()
        return Ended(stuck, window)

    # ------------------------------------------------------------------ internals

    def _stop_wanting(self, channel: str, now: float) -> None:
        self._wanted.discard(channel)
        self.poison.forget(channel)
        self._live_since.pop(channel, None)
        core = self._core
        if core.connected:
            core.send_unsubscribe(channel, now)
        else:
            core.forget(channel)

    def _given_up(self, channel: str, now: float) -> Verdict[H]:
        """The server will not have ``channel``: not wanted, position forgotten, callers handed back."""
        was_wanted = channel in self._wanted
        self._wanted.discard(channel)
        self._live_since.pop(channel, None)
        self.poison.forget(channel)
        self._core.forget(channel)
        self._fill(now)
        return Verdict(False, was_wanted, self._callers.pop(channel, []))

    def _send_first(self, channel: str, now: float) -> bool:
        """Subscribe ``channel`` ahead of the queue (when connected); True when one was queued."""
        if not self._core.connected:
            return False
        queue = self._queue
        if queue and channel in queue:
            queue.remove(channel)  # (once in the queue at most)
        queue.appendleft(channel)
        return self._fill(now)

    def _fill(self, now: float) -> bool:
        """Send queued subscribes while the window has room; True when one was queued."""
        core = self._core
        in_flight = self._in_flight
        if in_flight:
            for cid in [cid for cid in in_flight if not core.awaiting_reply(cid)]:
                del in_flight[cid]  # answered, but no event told (released meanwhile)
        queue = self._queue
        sent = False
        if core.connected:
            while queue and len(in_flight) < self._window:
                channel = queue.popleft()
                if (
                    channel not in self._wanted
                    or core.is_subscribed(channel)
                    or core.is_subscribing(channel)
                ):
                    continue
                cid = core.send_subscribe(channel, now, recover=self.poison.recovers(channel))
                in_flight[cid] = channel
                sent = True
        if not in_flight and not queue and self._window < self._ceiling:
            self._window = min(self._ceiling, self._window * 2)  # it went well
        return sent
