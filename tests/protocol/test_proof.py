"""The proof job's rules (protocol/proof.py), synchronously: every row of its tables, and a
state machine over faults that checks the invariants.

The oracle is written here from DESIGN.md's rules, not read from the module: a send that
provably never reached the API is retried while the deadline allows and then raised; one
that may have is looked up before anything is sent again; a submit is never sent again
without a listing that completed and did not find it.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cadenza_async.errors import (
    AuthenticationError,
    InvalidRequestError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    StreamRpcError,
    TransportError,
)
from cadenza_async.protocol.proof import (
    CANCEL_RULES,
    SUBMIT_RULES,
    Action,
    Failure,
    Pager,
    Phase,
    ProofJob,
    final_slice,
    poll_delay,
    resend_delay,
)

# --------------------------------------------------------------------------- the numbers


@pytest.mark.parametrize(
    ("timeout", "slice_"), [(0.2, 0.1), (0.5, 0.25), (1.0, 0.25), (2.0, 0.5), (10.0, 1.0)]
)
def test_final_slice_is_the_table(timeout, slice_):
    assert final_slice(timeout) == pytest.approx(slice_)


def test_resend_backoff_doubles_from_a_tenth_to_a_second():
    assert [resend_delay(n) for n in range(1, 7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert resend_delay(10_000) == 1.0  # (no overflow)


def test_polls_double_from_a_tenth_to_two_seconds():
    assert [poll_delay(n) for n in range(7)] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert poll_delay(10_000) == 2.0


# --------------------------------------------------------------------------- what a failure is

REFUSED = TransportError("refused", maybe_sent=False)
TIMED_OUT = TransportError("timed out", maybe_sent=True)
NO_SUCH_HOST = TransportError("no such host", maybe_sent=False, lasting=True)
UNAVAILABLE = ServerError("unavailable", status=503)
GATEWAY = ServerError("gateway timeout", status=504)
GATEWAY.maybe_sent = True  # (as the HTTP layer marks a 504)


@pytest.mark.parametrize(
    ("error", "cancel", "submit"),
    [
        (REFUSED, Failure.NOT_SENT, Failure.NOT_SENT),
        (TIMED_OUT, Failure.MAYBE_SENT, Failure.MAYBE_SENT),
        (NO_SUCH_HOST, Failure.DEFINITE, Failure.DEFINITE),
        (UNAVAILABLE, Failure.NOT_SENT, Failure.MAYBE_SENT),  # a submit's 5xx may follow the order
        (GATEWAY, Failure.MAYBE_SENT, Failure.MAYBE_SENT),
        (RateLimitError("slow down", status=429), Failure.NOT_SENT, Failure.NOT_SENT),
        (AuthenticationError("401 after refresh", status=401), Failure.DEFINITE, Failure.DEFINITE),
        (PermissionDeniedError("403", status=403), Failure.DEFINITE, Failure.DEFINITE),
        (InvalidRequestError("400", status=400), Failure.DEFINITE, Failure.DEFINITE),
        (StreamRpcError("busy", errno=100, temporary=True), Failure.NOT_SENT, Failure.MAYBE_SENT),
        (StreamRpcError("no method", errno=104), Failure.DEFINITE, Failure.DEFINITE),
    ],
)
def test_each_failure_means_what_the_rules_say(error, cancel, submit):
    assert CANCEL_RULES.failure(error) is cancel
    assert SUBMIT_RULES.failure(error) is submit


# --------------------------------------------------------------------------- sending


def test_a_send_never_reaching_the_api_is_sent_again_after_the_backoff():
    job = ProofJob(deadline=5.0)
    job.sending(0.0)
    step = job.send_failed(REFUSED, 0.01)
    assert (step.action, step.at) == (Action.SEND, pytest.approx(0.11))
    assert job.phase is Phase.FRESH
    job.sending(step.at)
    step = job.send_failed(REFUSED, 0.12)
    assert (step.action, step.at) == (Action.SEND, pytest.approx(0.32))  # 0.2 s the second time


def test_a_send_never_reaching_the_api_is_raised_when_no_time_is_left_for_another():
    job = ProofJob(deadline=0.5)
    job.sending(0.0)
    assert job.send_failed(REFUSED, 0.45).action is Action.RAISE  # 0.45 + 0.1 > 0.5
    assert job.phase is Phase.FAILED
    assert job.send_error is REFUSED


def test_a_definite_failure_is_raised_at_once_whatever_the_time_left():
    for error in (NO_SUCH_HOST, PermissionDeniedError("403", status=403)):
        job = ProofJob(deadline=100.0)
        job.sending(0.0)
        assert job.send_failed(error, 0.0).action is Action.RAISE


def test_a_send_that_may_have_been_applied_is_looked_up_at_once():
    job = ProofJob(deadline=5.0)
    job.sending(0.0)
    step = job.send_failed(TIMED_OUT, 1.0)
    assert (step.action, step.at) == (Action.LOOK_UP, 1.0)
    assert (job.phase, job.maybe_sent) == (Phase.UNSURE, True)


def test_a_cancel_found_still_open_is_sent_again_and_one_found_applied_is_not():
    job = ProofJob(deadline=5.0, rules=CANCEL_RULES)
    job.sending(0.0)
    job.send_failed(TIMED_OUT, 1.0)
    step = job.looked_up(False, 1.01)
    assert (step.action, step.at) == (Action.SEND, pytest.approx(1.11))
    job.sending(step.at)
    job.send_failed(TIMED_OUT, 2.0)
    assert job.looked_up(True, 2.01).action is Action.STOP
    assert job.phase is Phase.ACKED
    assert job.acked_at == 2.01


def test_a_cancel_whose_look_up_failed_is_sent_again_a_cancel_is_idempotent():
    job = ProofJob(deadline=5.0, rules=CANCEL_RULES)
    job.sending(0.0)
    job.send_failed(TIMED_OUT, 1.0)
    assert job.looked_up(None, 1.0).action is Action.SEND


def test_a_submit_whose_listing_failed_is_never_sent_again_only_listed_again():
    job = ProofJob(deadline=5.0, rules=SUBMIT_RULES)
    job.sending(0.0)
    job.send_failed(TIMED_OUT, 1.0)
    step = job.looked_up(None, 1.0)  # the listing answered 503
    assert step.action is Action.LOOK_UP
    assert job.looked_up(False, 1.2).action is Action.SEND  # a listing that did not find it


def test_after_a_maybe_sent_send_a_not_sent_failure_looks_before_sending():
    job = ProofJob(deadline=5.0, rules=SUBMIT_RULES)
    job.sending(0.0)
    job.send_failed(TIMED_OUT, 0.5)
    job.looked_up(False, 0.6)
    job.sending(0.7)
    step = job.send_failed(REFUSED, 0.8)  # this one never left, but the first may have
    assert step.action is Action.LOOK_UP


def test_at_the_deadline_a_send_that_may_have_been_applied_ends_in_a_timeout():
    job = ProofJob(deadline=1.0)
    job.sending(0.0)
    assert job.send_failed(TIMED_OUT, 1.0).action is Action.STOP
    assert job.send_error is TIMED_OUT  # the timeout's cause


# --------------------------------------------------------------------------- proving


def acked(sent_at: float = 1.0, deadline: float = 10.0) -> ProofJob:
    job = ProofJob(deadline)
    job.sending(sent_at)
    job.replied(sent_at + 0.01)
    return job


def test_a_channel_live_before_the_send_leaves_the_proof_to_the_event():
    job = acked()
    step = job.proving_step(2.0, live_since=0.5, down_since=None, stream_up=True)
    assert (step.action, step.at) == (Action.WAIT, 10.0)


def test_a_channel_live_only_after_the_send_gets_one_look_up_then_waits():
    job = acked()
    assert job.proving_step(2.0, 1.5, None, True).action is Action.LOOK_UP
    job.polled(2.0, live=True)
    assert job.proving_step(2.1, 1.5, None, True).action is Action.WAIT


def test_a_poll_while_the_channel_was_down_does_not_close_its_gap():
    job = acked()
    job.polled(1.2)
    assert job.proving_step(2.0, 1.5, None, True).action is Action.LOOK_UP


def test_a_stream_that_just_dropped_gets_its_grace_before_polling():
    job = acked(sent_at=1.0)
    step = job.proving_step(1.2, None, down_since=1.15, stream_up=True)
    assert (step.action, step.at) == (Action.WAIT, pytest.approx(1.65))
    assert job.proving_step(1.65, None, 1.15, True).action is Action.POLL


def test_a_stream_closed_for_good_gives_no_grace():
    job = acked(sent_at=1.0)
    assert job.proving_step(1.2, None, down_since=1.15, stream_up=False).action is Action.POLL


def test_polls_follow_the_doubling_schedule():
    job = acked(sent_at=0.0)
    times = []
    now = 0.0
    while now < 8.0:
        step = job.proving_step(now, None, None, True)
        if step.action is Action.POLL:
            times.append(round(now, 3))
            job.polled(now)
        else:
            now = step.at
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(times)]
    assert times[0] == 0.1
    assert gaps[:5] == [0.2, 0.4, 0.8, 1.6, 2.0]
    assert all(gap <= 2.0 for gap in gaps)


def test_proving_stops_at_the_deadline():
    job = acked(deadline=3.0)
    assert job.proving_step(3.0, None, None, True).action is Action.STOP
    assert job.proving_step(2.95, None, None, True).at <= 3.0


# --------------------------------------------------------------------------- the pager


def test_the_pager_follows_offsets_until_a_short_page():
    pager = Pager(page_size=2, max_pages=10)
    assert pager.request() == (0, None)
    assert pager.take(["a", "b"], 2, None, None) == ["a", "b"]
    assert pager.request() == (2, None)
    pager.take(["c"], 1, None, None)
    assert pager.request() is None
    assert not pager.stalled
    assert not pager.exhausted


def test_the_pager_follows_the_servers_cursor_and_its_has_next():
    pager = Pager(page_size=2, max_pages=10)
    pager.take(["a", "b"], 2, True, "c1")
    assert pager.request() == (None, "c1")
    pager.take(["c", "d"], 2, False, "c2")
    assert pager.request() is None


def test_the_pager_stops_at_a_cursor_that_does_not_move_or_a_page_with_nothing_new():
    stuck = Pager(page_size=2, max_pages=10)
    stuck.take(["a", "b"], 2, True, "c1")
    stuck.take(["c", "d"], 2, True, "c1")
    assert stuck.request() is None
    assert stuck.stalled
    repeated = Pager(page_size=2, max_pages=10)
    repeated.take(["a", "b"], 2, True, None)
    assert repeated.take(["a", "b"], 2, True, None) == []
    assert repeated.request() is None
    assert repeated.stalled


def test_the_pager_keeps_to_its_page_budget():
    pager = Pager(page_size=1, max_pages=3)
    for i in range(3):
        assert pager.request() is not None
        pager.take([str(i)], 1, True, None)
    assert pager.request() is None
    assert pager.exhausted


def test_a_full_page_without_pagination_goes_on_to_the_next():
    pager = Pager(page_size=2, max_pages=10)
    pager.take(["a", "b"], 2, None, None)
    assert pager.request() == (2, None)


# --------------------------------------------------------------------------- invariants

FAILURES = [REFUSED, TIMED_OUT, UNAVAILABLE, GATEWAY]


class SubmitJobMachine(RuleBasedStateMachine):
    """A driver of a submit's job under any sequence of faults; the invariants hold throughout.

    The server side is modelled: a send that "may have" reached the API did, half the
    time (``placed``). The driver obeys each Step: it sends only on SEND, looks up only
    on LOOK_UP.
    """

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.job = ProofJob(deadline=5.0, rules=SUBMIT_RULES)
        self.next = Action.SEND
        self.at = 0.0
        self.sends = 0
        self.listing_absent_since_unsure_send = True
        self.in_flight = False
        self.placed = False

    @precondition(lambda self: self.next is Action.SEND and not self.in_flight)
    @rule()
    def send(self) -> None:
        self.now = max(self.now, self.at)
        # never a second submit without a listing that did not find the first
        assert self.listing_absent_since_unsure_send
        self.job.sending(self.now)
        self.sends += 1
        self.in_flight = True
        self.next = Action.WAIT  # for the send's outcome

    @precondition(lambda self: self.in_flight)
    @rule(error=st.sampled_from(FAILURES), applied=st.booleans(), spent=st.floats(0, 1))
    def send_fails(self, error, applied, spent) -> None:
        self.now += spent
        self.in_flight = False
        if SUBMIT_RULES.failure(error) is Failure.MAYBE_SENT:
            self.placed = self.placed or applied
            self.listing_absent_since_unsure_send = False
        step = self.job.send_failed(error, self.now)
        self.next, self.at = step.action, step.at

    @precondition(lambda self: self.in_flight)
    @rule(spent=st.floats(0, 1))
    def reply(self, spent) -> None:
        self.now += spent
        self.in_flight = False
        self.placed = True
        self.job.replied(self.now)
        self.next = Action.STOP

    @precondition(lambda self: self.next is Action.LOOK_UP)
    @rule(fails=st.booleans(), spent=st.floats(0, 0.5))
    def listing(self, fails, spent) -> None:
        self.now = max(self.now, self.at) + spent
        if fails:
            step = self.job.looked_up(None, self.now)
        else:
            if not self.placed:
                self.listing_absent_since_unsure_send = True
            step = self.job.looked_up(self.placed, self.now)
        self.next, self.at = step.action, step.at

    @precondition(lambda self: self.next in (Action.STOP, Action.RAISE) and not self.in_flight)
    @rule()
    def the_job_ended(self) -> None:
        if self.next is Action.STOP and self.job.phase is not Phase.ACKED:
            assert self.job.maybe_sent  # a timeout only when something may have been applied

    @invariant()
    def never_two_requests_at_once(self) -> None:
        assert not (self.in_flight and self.next is Action.SEND)

    @invariant()
    def every_planned_step_is_within_the_deadline(self) -> None:
        if self.next in (Action.SEND, Action.LOOK_UP):
            assert self.at < self.job.deadline

    @invariant()
    def a_raise_means_nothing_may_have_been_applied(self) -> None:
        if self.next is Action.RAISE:
            assert not self.job.maybe_sent


TestSubmitJobMachine = SubmitJobMachine.TestCase
TestSubmitJobMachine.settings = settings(max_examples=300, stateful_step_count=30, deadline=None)


def test_a_429_waits_its_retry_after_and_one_past_the_deadline_is_raised_at_once():
    job = ProofJob(deadline=10.0)
    job.sending(0.0)
    slow = RateLimitError("slow down", status=429)
    slow.retry_after = 2.0
    step = job.send_failed(slow, 0.0)
    assert (step.action, step.at) == (Action.SEND, 2.0)
    later = ProofJob(deadline=1.0)
    later.sending(0.0)
    assert later.send_failed(slow, 0.0).action is Action.RAISE
