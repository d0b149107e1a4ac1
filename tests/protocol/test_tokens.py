"""TokenRefusals: which token the stream's next connect asks for, and when it gives up."""

from __future__ import annotations

from cadenza_async.protocol.tokens import MAX_TOKEN_REFUSALS, GiveUp, TokenRefusals


def test_nothing_refused_asks_for_the_current_token_and_uses_it():
    policy = TokenRefusals()
    assert policy.stale is None
    assert policy.before_fetch() is None
    assert policy.after_fetch("t1") is None
    assert policy.refusals == 0


def test_a_refused_token_is_refreshed_keyed_on_it_and_the_first_refusal_reconnects_at_once():
    policy = TokenRefusals()
    assert policy.refused("t1", 109) is True  # first in a row: reconnect without backoff
    assert policy.stale == "t1"
    assert policy.before_fetch() is None
    assert policy.after_fetch("t2") is None
    assert policy.stale is None  # t2 is the one to connect with


def test_later_refusals_in_a_row_wait_for_the_backoff():
    policy = TokenRefusals()
    assert policy.refused("t1", 109) is True
    policy.after_fetch("t2")
    assert policy.refused("t2", 109) is False
    assert policy.refusals == 2


def test_the_provider_handing_back_the_refused_token_gives_up_with_the_refusal_code():
    policy = TokenRefusals()
    policy.refused("t1", 109)
    assert policy.after_fetch("t1") == GiveUp(
        "the WebSocket refused the token (109) and the token provider has no other", 109
    )


def test_a_refused_refresh_counts_like_a_refused_connect():
    policy = TokenRefusals()
    policy.refused("t1", 110)  # a refresh answered with an error
    assert policy.after_fetch("t1") == GiveUp(
        "the WebSocket refused the token (110) and the token provider has no other", 110
    )


def test_an_expired_connection_does_not_count_and_its_token_may_be_tried_once_more():
    policy = TokenRefusals()
    policy.expired("t1", 3005)
    assert policy.stale == "t1"  # the next fetch is a refresh keyed on it
    assert policy.refusals == 0
    assert policy.before_fetch() is None
    assert policy.after_fetch("t1") is None  # the next connect tells (109 then counts)
    assert policy.stale is None


def test_max_refusals_in_a_row_give_up_before_asking_the_provider_again():
    policy = TokenRefusals()
    for n in range(MAX_TOKEN_REFUSALS):
        assert policy.before_fetch() is None
        policy.after_fetch(f"t{n}")
        policy.refused(f"t{n}", 109)
    assert policy.before_fetch() == GiveUp(
        f"the WebSocket refused {MAX_TOKEN_REFUSALS} tokens in a row from the token provider", 109
    )


def test_a_successful_connect_starts_the_count_again():
    policy = TokenRefusals(max_refusals=2)
    policy.refused("t1", 109)
    policy.after_fetch("t2")
    policy.connected()
    assert policy.refusals == 0
    assert policy.refused("t2", 109) is True  # first in a row again
    policy.after_fetch("t3")
    policy.refused("t3", 109)
    assert policy.before_fetch() is not None  # two in a row since the connect


def test_expiries_between_refusals_do_not_reset_the_count():
    policy = TokenRefusals(max_refusals=2)
    policy.refused("t1", 109)
    policy.after_fetch("t2")
    policy.expired("t2", 3005)
    policy.after_fetch("t3")
    policy.refused("t3", 109)
    assert policy.before_fetch() == GiveUp(
        "the WebSocket refused 2 tokens in a row from the token provider", 109
    )


def test_a_give_up_after_an_expiry_names_the_expirys_code():
    policy = TokenRefusals(max_refusals=1)
    policy.refused("t1", 109)
    policy.after_fetch("t2")
    policy.expired("t2", 3005)
    assert policy.before_fetch() == GiveUp(
        "the WebSocket refused 1 tokens in a row from the token provider", 3005
    )


def test_the_policys_repr_says_its_refusals_and_whether_a_token_is_stale():
    policy = TokenRefusals()
    assert repr(policy) == "<TokenRefusals refusals=0 stale=False>"
    policy.refused("t1", 109)
    assert repr(policy) == "<TokenRefusals refusals=1 stale=True>"
