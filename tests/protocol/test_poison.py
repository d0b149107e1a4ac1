"""PoisonedPositions: a channel stuck twice at one position resubscribes without recovery."""

from __future__ import annotations

from cadenza_async.protocol.centrifugo import StreamPosition
from cadenza_async.protocol.poison import PoisonedPositions

A = "tradingAccount:a"
B = "tradingAccount:b"


def pos(offset: int) -> StreamPosition:
    return StreamPosition("e1", offset)


def test_every_channel_recovers_until_something_is_poisoned():
    rule = PoisonedPositions()
    assert rule.recovers(A)
    assert rule.stuck == frozenset()


def test_one_poisoned_end_marks_nothing():
    rule = PoisonedPositions()
    assert rule.poisoned_end({A: pos(5)}) == []
    assert rule.recovers(A)


def test_two_poisoned_ends_at_the_same_position_make_the_channel_stuck():
    rule = PoisonedPositions()
    rule.poisoned_end({A: pos(5), B: pos(7)})
    assert rule.poisoned_end({A: pos(5), B: pos(8)}) == [A]  # B moved on
    assert not rule.recovers(A)
    assert rule.recovers(B)


def test_a_channel_without_a_position_twice_is_stuck_too():
    rule = PoisonedPositions()
    rule.poisoned_end({A: None})
    assert rule.poisoned_end({A: None}) == [A]


def test_a_stuck_channel_is_reported_once_however_often_it_fails_again():
    rule = PoisonedPositions()
    rule.poisoned_end({A: pos(5)})
    assert rule.poisoned_end({A: pos(5)}) == [A]
    assert rule.poisoned_end({A: pos(5)}) == []
    assert not rule.recovers(A)


def test_newly_stuck_channels_come_sorted():
    rule = PoisonedPositions()
    rule.poisoned_end({B: pos(1), A: pos(2)})
    assert rule.poisoned_end({B: pos(1), A: pos(2)}) == [A, B]


def test_a_clean_end_in_between_forgets_the_previous_poisoned_end():
    rule = PoisonedPositions()
    rule.poisoned_end({A: pos(5)})
    rule.clean_end()
    assert rule.poisoned_end({A: pos(5)}) == []
    assert rule.recovers(A)


def test_a_channel_wanted_only_since_the_last_poisoned_end_is_not_compared():
    rule = PoisonedPositions()
    rule.poisoned_end({A: pos(5)})
    assert rule.poisoned_end({A: pos(6), B: None}) == []
    assert rule.recovers(B)


def test_a_subscribe_that_went_through_clears_the_channel_and_reports_the_fresh_start():
    rule = PoisonedPositions()
    rule.poisoned_end({A: pos(5)})
    rule.poisoned_end({A: pos(5)})
    assert rule.subscribed(A) is True  # it started fresh: continuity was lost
    assert rule.recovers(A)
    assert rule.subscribed(A) is False


def test_a_position_that_recovered_is_not_compared_at_the_next_poisoned_end():
    rule = PoisonedPositions()
    rule.poisoned_end({A: pos(5), B: pos(1)})
    assert rule.subscribed(A) is False  # recovery went through: A is not stuck at 5
    assert rule.poisoned_end({A: pos(5), B: pos(1)}) == [B]
    assert rule.recovers(A)


def test_forgetting_a_stuck_channel_lets_it_recover_when_wanted_again():
    rule = PoisonedPositions()
    rule.poisoned_end({A: pos(5)})
    rule.poisoned_end({A: pos(5)})
    rule.forget(A)
    assert rule.recovers(A)


def test_the_rules_repr_lists_the_stuck_channels_sorted():
    rule = PoisonedPositions()
    assert repr(rule) == "<PoisonedPositions stuck=[]>"
    for _ in range(2):
        rule.poisoned_end({B: pos(5), A: pos(3)})
    assert repr(rule) == f"<PoisonedPositions stuck={[A, B]!r}>"
