"""Retry decisions for one REST call: whether an answer or a failure is tried again, and when.

Pure: no I/O, no clock. The HTTP layer describes what happened and how much
of the call's deadline is left; :func:`retry_verdict` answers from the
:class:`~cadenza_async.config.RetryPolicy`:

===============================  ==========================================  ==============
what happened                    tried again when                            wait before it
===============================  ==========================================  ==============
no answer (refused, reset,       the request may be repeated (idempotent,    the policy's
timeout, DNS; never a TLS        not a TLS failure), attempts are left and   next backoff
failure)                         the backoff ends before the deadline
429                              idempotent (a submit never), attempts are   none: every
                                 left, ``Retry-After`` (or, without one,     caller waits
                                 the backoff) is within ``max_retry_after``  out the
                                 and the pause ends before the deadline      client-wide
                                                                             pause
5xx                              idempotent, attempts are left and the       the policy's
                                 backoff ends before the deadline            next backoff
anything else                    never
===============================  ==========================================  ==============

A 429 pauses every caller of the client for ``min(Retry-After or backoff,
max_retry_after)`` whether or not this call tries again
(:attr:`RetryVerdict.pause`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

__all__ = ["RetryVerdict", "retry_verdict"]


class RetryVerdict(NamedTuple):
    """``retry``: send again; ``wait``: seconds to sleep first; ``pause``: client-wide pause (429)."""

    retry: bool
    wait: float = 0.0
    pause: float = 0.0


_GIVE_UP = RetryVerdict(False)


def retry_verdict(
    status: int | None,
    *,
    repeatable: bool,
    next_delay: Callable[[], float | None],
    time_left: float | None,
    retry_after: float | None = None,
    max_retry_after: float = 30.0,
) -> RetryVerdict:
    """What to do after an answer with ``status`` (``None``: no answer, a transport failure).

    ``repeatable``: the request may be sent again (idempotent; for a
    transport failure also not a TLS failure). ``next_delay`` draws the
    policy's next backoff (``None``: attempts spent); it is called only when
    the answer could be retried. ``time_left``: seconds to the call's
    deadline (``None``: no deadline). ``retry_after``: a 429's header, in
    seconds.
    """
    if status == 429:
        return _after_429(repeatable, next_delay(), time_left, retry_after, max_retry_after)
    if not repeatable or (status is not None and status < 500):
        return _GIVE_UP
    delay = next_delay()
    if delay is None or _past(time_left, delay):
        return _GIVE_UP
    return RetryVerdict(True, wait=delay)


def _after_429(
    repeatable: bool,
    delay: float | None,
    time_left: float | None,
    retry_after: float | None,
    cap: float,
) -> RetryVerdict:
    pause = min(retry_after if retry_after is not None else (delay or 0.0), cap)
    retry = (
        repeatable  # a submit is never sent twice, not even after a 429
        and delay is not None
        and not (retry_after is not None and retry_after > cap)
        and not _past(time_left, pause)
    )
    return RetryVerdict(retry, pause=pause)


def _past(time_left: float | None, wait: float) -> bool:
    """True when waiting ``wait`` seconds would end at or after the deadline."""
    return time_left is not None and wait >= time_left
