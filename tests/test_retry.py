"""retry_verdict: whether one REST call tries again, and when; pure, tested without a loop."""

from __future__ import annotations

import pytest

from cadenza_async._retry import RetryVerdict, retry_verdict


class Delays:
    """The policy's backoffs, counting how many were drawn."""

    def __init__(self, *delays: float) -> None:
        self._delays = list(delays)
        self.drawn = 0

    def __call__(self) -> float | None:
        self.drawn += 1
        return self._delays.pop(0) if self._delays else None


def verdict(status, delays, *, repeatable=True, time_left=None, **kwargs) -> RetryVerdict:
    return retry_verdict(
        status, repeatable=repeatable, next_delay=delays, time_left=time_left, **kwargs
    )


# ------------------------------------------------------------------ no answer


def test_a_transport_failure_is_retried_after_the_policys_backoff():
    assert verdict(None, Delays(0.2)) == RetryVerdict(True, wait=0.2)


def test_a_transport_failure_that_cannot_be_repeated_is_final_and_draws_no_backoff():
    delays = Delays(0.2)
    assert verdict(None, delays, repeatable=False) == RetryVerdict(False)
    assert delays.drawn == 0


def test_a_transport_failure_with_attempts_spent_is_final():
    assert verdict(None, Delays()) == RetryVerdict(False)


@pytest.mark.parametrize(("time_left", "retry"), [(0.3, True), (0.2, False), (0.1, False)])
def test_a_backoff_that_ends_at_or_after_the_deadline_is_not_slept(time_left, retry):
    assert verdict(None, Delays(0.2), time_left=time_left).retry is retry


# ------------------------------------------------------------------ 5xx and other answers


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_5xx_on_an_idempotent_call_is_retried_after_the_backoff(status):
    assert verdict(status, Delays(0.1), time_left=1.0) == RetryVerdict(True, wait=0.1)


def test_a_5xx_on_a_submit_is_final():
    assert verdict(503, Delays(0.1), repeatable=False) == RetryVerdict(False)


def test_a_5xx_past_the_deadline_or_the_attempts_is_final():
    assert verdict(503, Delays(0.5), time_left=0.5).retry is False
    assert verdict(503, Delays()).retry is False


@pytest.mark.parametrize("status", [301, 400, 401, 403, 404, 409, 418])
def test_other_answers_are_never_retried_and_draw_no_backoff(status):
    delays = Delays(0.1)
    assert verdict(status, delays) == RetryVerdict(False)
    assert delays.drawn == 0


# ------------------------------------------------------------------ 429


def test_a_429_with_retry_after_pauses_every_caller_for_it_and_retries_without_sleeping():
    assert verdict(429, Delays(0.1), retry_after=2.0, time_left=5.0) == RetryVerdict(
        True, wait=0.0, pause=2.0
    )


def test_a_429_without_retry_after_pauses_for_the_backoff():
    assert verdict(429, Delays(0.1)) == RetryVerdict(True, pause=0.1)


def test_a_429_on_a_submit_pauses_every_caller_but_is_never_sent_again():
    assert verdict(429, Delays(0.1), repeatable=False, retry_after=1.0) == RetryVerdict(
        False, pause=1.0
    )


def test_a_retry_after_over_the_cap_is_final_and_pauses_for_the_cap():
    assert verdict(429, Delays(0.1), retry_after=60.0, max_retry_after=30.0) == RetryVerdict(
        False, pause=30.0
    )


def test_a_429_with_attempts_spent_is_final_but_still_pauses_for_retry_after():
    assert verdict(429, Delays(), retry_after=1.0) == RetryVerdict(False, pause=1.0)
    assert verdict(429, Delays()) == RetryVerdict(False, pause=0.0)


def test_a_429_whose_pause_outlasts_the_deadline_is_final():
    assert verdict(429, Delays(0.1), retry_after=2.0, time_left=2.0).retry is False
    assert verdict(429, Delays(0.1), retry_after=2.0, time_left=2.01).retry is True


def test_a_429_always_draws_one_backoff():
    delays = Delays(0.1, 0.2)
    verdict(429, delays, repeatable=False, retry_after=1.0)
    assert delays.drawn == 1


def test_a_retry_after_equal_to_the_cap_is_still_retried() -> None:
    """The cap is the longest pause a retry waits for: a Retry-After of exactly the cap is
    within it (only a longer one gives up)."""
    assert verdict(429, Delays(0.1), retry_after=30.0, max_retry_after=30.0) == RetryVerdict(
        True, pause=30.0
    )
    assert verdict(429, Delays(0.1), retry_after=30.001, max_retry_after=30.0).retry is False


def test_the_default_cap_on_retry_after_is_30_seconds() -> None:
    assert retry_verdict(
        429, repeatable=True, next_delay=Delays(0.1), time_left=None, retry_after=30.0
    ) == RetryVerdict(True, pause=30.0)
    assert retry_verdict(
        429, repeatable=True, next_delay=Delays(0.1), time_left=None, retry_after=30.5
    ) == RetryVerdict(False, pause=30.0)
