"""The proof job's rules, sans-I/O: when a job sends, sends again, looks up, polls or gives up.

A *job* proves one outcome for every caller of one key: a cancel's terminal
state (the key is the order id), a submit's verdict (its account and
``clientOrderId``). No sockets, no clock, no asyncio: the driver
(:mod:`cadenza_async.engine`) passes ``now`` in, does what a
:class:`Step` says, and tells the job what happened. The registries
(:mod:`~cadenza_async.protocol.confirm`, :mod:`~cadenza_async.protocol.placement`)
decide what *proves* an outcome; this module decides everything about
getting there in time.

What moves a job (:class:`ProofJob`):

=========  ==============================================  =========  ================================
phase      event                                           next       the driver then
=========  ==============================================  =========  ================================
FRESH      its turn (the deadline not passed)              SENDING    sends: one request at a time
SENDING    a reply                                         ACKED      feeds it to the registry
SENDING    failed, never reached the API: refused, reset   FRESH      sends again at ``Step.at`` (after
           before sending, a 429, a 5xx but 504 (for a                the backoff, and a 429's
           cancel; a submit's 5xx may come after the                  Retry-After) while the deadline
           order was placed: see below)                               leaves time for it, else raises
                                                                      that error (never a timeout:
                                                                      nothing was sent)
SENDING    failed, may have reached the API: a timeout,    UNSURE     looks up at once
           a reset after sending, a 504; for a submit
           any 5xx
SENDING    definite: refused by the API (400, 401 after    FAILED     every caller raises it
           the token's refresh, 403, 404 on the account
           asked), or by its set-up (a DNS name that does
           not exist, a TLS certificate refused)
UNSURE     the look-up shows the API has it                ACKED      waits for proof
UNSURE     the look-up shows it absent (a cancel: the      FRESH      sends again at ``Step.at``
           order still open; a submit: a listing that
           completed without finding it)
UNSURE     the look-up failed                              UNSURE     looks again at ``Step.at``; a
                                                                      submit is never sent again
                                                                      without a listing that did not
                                                                      find the first
ACKED      see :meth:`ProofJob.proving_step`               ACKED
any        proof (the registry resolved it)                PROVEN     wakes every caller
any        a 103 refusal of its account's channel          FAILED     PermissionDeniedError
any        the deadline                                    (ends)     the caller raises the timeout,
                                                                      its cause the last send error
=========  ==============================================  =========  ================================

While acknowledged (:meth:`ProofJob.proving_step`):

===========================================================  ===================================
the account's channel                                         step
===========================================================  ===================================
live since before the last send, or its gap look-up done      WAIT: the event proves it (a change
                                                              of the stream wakes the job)
live since after the first send, no gap look-up yet           LOOK_UP now: its event may have come
                                                              before the subscription
not live, the stream dropped less than RECONNECT_GRACE ago    WAIT until the grace is over: a
                                                              reconnect recovers missed events
not live                                                      POLL at the next poll time: the
                                                              first POLL_FIRST after the send,
                                                              then doubling up to POLL_MAX
===========================================================  ===================================

A bad event, a gap or a 112 on the account asks for a look-up at once
(the driver's); the final look-up starts :func:`final_slice` before the
deadline. Backoffs between sends (:func:`resend_delay`) and between polls
(:func:`poll_delay`) are capped doublings; every wait ends by the deadline.

:class:`Pager` is the one pager of the package (cancel_all_open, the
reconciliation of an account, finding a submit by ``clientOrderId``): the
server's cursor when it gives one, else offsets; it stops at the last page,
at a page that brought nothing new or a cursor that did not move (a stall),
or at its page budget.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Final, NamedTuple

from ..errors import (
    AuthenticationError,
    CadenzaError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    StreamRpcError,
    TransportError,
)

__all__ = [
    "BATCH_MIN",
    "POLL_FIRST",
    "POLL_MAX",
    "RECONNECT_GRACE",
    "RESEND_FIRST",
    "RESEND_MAX",
    "Action",
    "Failure",
    "Pager",
    "Phase",
    "ProofJob",
    "Rules",
    "Step",
    "final_slice",
    "poll_delay",
    "resend_delay",
]

#: Polling while the stream cannot prove: the first look-up this long after the send,
#: then doubling up to the cap.
POLL_FIRST: Final = 0.1
POLL_MAX: Final = 2.0
#: Between sends of a request that failed: the first wait, doubling up to the cap.
RESEND_FIRST: Final = 0.1
RESEND_MAX: Final = 1.0
#: How long a stream that just lost its connection gets to come back (and recover the
#: events it missed) before the jobs it leaves without proof start polling.
RECONNECT_GRACE: Final = 0.5
#: An account with at least this many jobs polling is listed, not looked up job by job.
BATCH_MIN: Final = 4


def final_slice(timeout: float) -> float:
    """The part of a ``timeout`` reserved for the final REST look-up.

    A quarter of it, at least 0.25 s (half of a shorter timeout), at most 1 s:

    ========  ======
    timeout   slice
    ========  ======
    0.2       0.1
    0.5       0.25
    2         0.5
    10        1.0
    ========  ======
    """
    return min(1.0, max(0.25 * timeout, min(0.25, timeout / 2)))


def resend_delay(attempt: int) -> float:
    """The wait before send number ``attempt + 1`` (``attempt`` >= 1 failed ones so far)."""
    return min(RESEND_MAX, RESEND_FIRST * float(2 ** min(max(0, attempt - 1), 32)))


def poll_delay(polls: int) -> float:
    """The wait before poll number ``polls + 1`` (``polls`` done so far)."""
    return min(POLL_MAX, POLL_FIRST * float(2 ** min(polls, 32)))


class Phase(enum.IntEnum):
    FRESH = 0
    SENDING = 1
    UNSURE = 2
    ACKED = 3
    PROVEN = 4
    FAILED = 5


class Failure(enum.Enum):
    """What a failed send means (:meth:`Rules.failure`)."""

    NOT_SENT = "not sent"  # provably never reached the API: waiting may help
    MAYBE_SENT = "maybe sent"  # may have been applied: look before sending again
    DEFINITE = "definite"  # waiting cannot help: raise it


class Action(enum.Enum):
    SEND = "send"
    LOOK_UP = "look up"
    POLL = "poll"
    WAIT = "wait"
    RAISE = "raise"
    STOP = "stop"


class Step(NamedTuple):
    """What the driver does next, and when (event-loop time; WAIT: until then, or woken)."""

    action: Action
    at: float = 0.0


#: Only what the session cannot fix by waiting: a refused token after its refresh,
#: a refused account (the look-up of a guessed one is the policy's, before this).
_DEFINITE_API: Final = (AuthenticationError, PermissionDeniedError)


class Rules(NamedTuple):
    """A policy's send rules: what a 5xx means, and what allows a second send.

    ``server_error_maybe_sent``: a 5xx (any, not only 504) may come after the
    request was applied (a submit's order placed before the server failed).
    ``resend_needs_absence``: a request that may have been applied is sent
    again only after a look-up that completed and showed it absent (a
    submit; a cancel is idempotent, and a failed look-up does not stop it).
    """

    server_error_maybe_sent: bool
    resend_needs_absence: bool

    def failure(self, error: BaseException) -> Failure:
        """What ``error`` (a failed send) means for the job."""
        if isinstance(error, TransportError):
            if error.lasting:
                return Failure.DEFINITE
            return Failure.MAYBE_SENT if error.maybe_sent else Failure.NOT_SENT
        if isinstance(error, ServerError):
            if error.maybe_sent or self.server_error_maybe_sent:
                return Failure.MAYBE_SENT
            return Failure.NOT_SENT
        if isinstance(error, RateLimitError):
            return Failure.NOT_SENT
        if isinstance(error, StreamRpcError) and error.temporary:
            return Failure.MAYBE_SENT if self.server_error_maybe_sent else Failure.NOT_SENT
        return Failure.DEFINITE


CANCEL_RULES: Final = Rules(server_error_maybe_sent=False, resend_needs_absence=False)
SUBMIT_RULES: Final = Rules(server_error_maybe_sent=True, resend_needs_absence=True)


class ProofJob:
    """One job's progress through the table above. The driver owns it; ``now`` comes in.

    Every field is plain data: ``deadline`` is the latest deadline of the
    callers still waiting (event-loop time), the others say what happened.
    """

    __slots__ = (
        "acked_at",
        "attempts",
        "deadline",
        "first_sent_at",
        "gap_closed",
        "maybe_sent",
        "phase",
        "polled_at",
        "polls",
        "rules",
        "send_error",
        "sent_at",
    )

    def __init__(self, deadline: float, rules: Rules = CANCEL_RULES) -> None:
        self.rules = rules
        self.deadline = deadline
        self.phase = Phase.FRESH
        self.sent_at = 0.0  # when the request last went out (0.0: never)
        self.first_sent_at: float | None = None
        self.acked_at: float | None = None  # when a reply (or a look-up) showed the API has it
        self.send_error: CadenzaError | None = None  # the last failed send: a timeout's cause
        self.maybe_sent = False  # some send may have reached the API
        self.attempts = 0  # failed sends so far (for the backoff)
        self.gap_closed = False  # the look-up after a late subscription was done
        self.polled_at = 0.0  # when the order's state was last asked by REST
        self.polls = 0

    def extend(self, deadline: float) -> None:
        """A caller joins with ``deadline``: the job works for the latest one."""
        if deadline > self.deadline:
            self.deadline = deadline

    # -- sending -------------------------------------------------------------------

    def sending(self, now: float) -> None:
        """A request goes out now."""
        self.phase = Phase.SENDING
        self.sent_at = now
        if self.first_sent_at is None:
            self.first_sent_at = now

    def replied(self, now: float) -> None:
        """The API has it (a reply, or a look-up that found it)."""
        if self.phase < Phase.ACKED:
            self.phase = Phase.ACKED
        if self.acked_at is None:
            self.acked_at = now

    def send_failed(self, error: BaseException, now: float) -> Step:
        """A send failed with ``error``: RAISE it, LOOK_UP first, SEND again at ``at``, or STOP.

        STOP: the deadline came while a send may have been applied: the
        caller's timeout says so, with ``error`` as its cause.
        """
        failure = self.rules.failure(error)
        if isinstance(error, CadenzaError):
            self.send_error = error
        if failure is Failure.DEFINITE:
            self.phase = Phase.FAILED
            return Step(Action.RAISE)
        self.attempts += 1
        if failure is Failure.MAYBE_SENT:
            self.maybe_sent = True
            self.phase = Phase.UNSURE
            if now >= self.deadline:
                return Step(Action.STOP)
            return Step(Action.LOOK_UP, now)
        self.phase = Phase.UNSURE if self.maybe_sent else Phase.FRESH
        # (a 429's Retry-After: no send before it; one that outlasts the deadline ends it now)
        wait = max(resend_delay(self.attempts), getattr(error, "retry_after", None) or 0.0)
        at = now + wait
        if at >= self.deadline:
            if self.maybe_sent:
                return Step(Action.STOP)  # an earlier send may have got through: a timeout
            self.phase = Phase.FAILED
            return Step(Action.RAISE)  # nothing ever reached the API: say so now
        if self.maybe_sent:
            return Step(Action.LOOK_UP, at)  # an earlier send may have: look before sending
        return Step(Action.SEND, at)

    def looked_up(self, present: bool | None, now: float) -> Step:
        """The look-up after an unsure send: ``present`` (True, False, or None: it failed).

        STOP when the API has it (acknowledged: proving goes on) or the
        deadline came; else SEND again, or LOOK_UP again, at ``at``.
        """
        if present:
            self.replied(now)
            return Step(Action.STOP)
        at = now + resend_delay(self.attempts)
        if at >= self.deadline:
            return Step(Action.STOP)
        if present is None and self.rules.resend_needs_absence:
            return Step(Action.LOOK_UP, at)  # no second send without a listing that says
        self.phase = Phase.FRESH
        return Step(Action.SEND, at)

    # -- proving -------------------------------------------------------------------

    def proving_step(
        self, now: float, live_since: float | None, down_since: float | None, stream_up: bool
    ) -> Step:
        """The next step while acknowledged (the second table of the module docstring).

        ``live_since``: since when the account's channel has been live without
        a gap (None: not live); ``down_since``: when the stream lost its
        connection (None: it has not); ``stream_up``: the stream may still
        come back (False once it stopped for good).
        """
        if now >= self.deadline:
            return Step(Action.STOP)
        if live_since is not None:
            first = self.first_sent_at
            if self.gap_closed or first is None or live_since <= first:
                return Step(Action.WAIT, self.deadline)
            return Step(Action.LOOK_UP, now)  # the event may have come before
        at = (self.polled_at or self.sent_at) + poll_delay(self.polls)
        if down_since is not None and stream_up:
            at = max(at, down_since + RECONNECT_GRACE)  # time to reconnect and recover
        if at > now:
            return Step(Action.WAIT, min(at, self.deadline))
        return Step(Action.POLL, now)

    def polled(self, now: float, *, live: bool = False) -> None:
        """A look-up (or a listing) asked the order's state at ``now``.

        ``live``: the channel was live then, so it closes the gap a late
        subscription left; a poll while the channel was down does not.
        """
        self.polled_at = now
        self.polls += 1
        if live:
            self.gap_closed = True


class Pager:
    """Where a paged listing stands: the request for the next page, and when to stop.

    ``page_size`` orders a page, ``max_pages`` pages at most. Feed each page
    to :meth:`take`; :meth:`request` gives the next page's ``(offset,
    cursor)`` (the cursor when the server gave one), or None when the
    listing is over. :attr:`stalled` and :attr:`exhausted` say why it stopped
    early.
    """

    __slots__ = ("_done", "cursor", "exhausted", "offset", "page_size", "pages", "seen", "stalled")

    def __init__(self, page_size: int, max_pages: int) -> None:
        if page_size < 1 or max_pages < 1:
            raise ValueError("page_size and max_pages must be >= 1")
        self.page_size = page_size
        self.pages = max_pages  # pages left
        self.offset = 0
        self.cursor: str | None = None
        self.seen: set[str] = set()
        self.stalled = False  # a page brought nothing new, or the cursor did not move
        self.exhausted = False  # the page budget ran out with more to come
        self._done = False

    def request(self) -> tuple[int | None, str | None] | None:
        """The next page's ``(offset, cursor)`` (one of them None), or None: the listing is over."""
        if self._done:
            return None
        if self.pages <= 0:
            self.exhausted = True
            self._done = True
            return None
        return (None, self.cursor) if self.cursor is not None else (self.offset, None)

    def take(
        self, ids: Iterable[str], count: int, has_next: bool | None, cursor: str | None
    ) -> list[str]:
        """A page came: its order ``ids`` (``count`` of them), the server's ``hasNext`` and cursor.

        Returns the ids not seen on an earlier page (a page the server
        repeats adds nothing).
        """
        self.pages -= 1
        new = [order_id for order_id in ids if order_id not in self.seen]
        self.seen.update(new)
        self.offset += count
        if not count or has_next is False or (has_next is None and count < self.page_size):
            self._done = True  # the last page
        elif not new or (cursor is not None and cursor == self.cursor):
            self._done = self.stalled = True
        if cursor is not None:
            self.cursor = cursor
        return new
