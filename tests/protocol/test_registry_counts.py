"""Both registries' bookkeeping, exactly: what a new entry holds, what each source records,
and every counter, counted twice (a counter that is set instead of added shows at two).

The rules themselves are in test_confirm.py and test_placement.py; these pin the state
and the statistics an application reads (``stats()``, ``last_known``, ``resolved_at``).
"""

from __future__ import annotations

import pytest

from cadenza_async.models import TradeOrder
from cadenza_async.protocol.confirm import ConfirmationRegistry, RegistryStats, Waiter
from cadenza_async.protocol.placement import Placement, PlacementRegistry, PlacementStats

ACCOUNT = "acct-1"
OTHER = "acct-2"


def order(
    status: str,
    order_id: str = "o1",
    *,
    account: str = ACCOUNT,
    updated_at: int | None = 1_000,
    client_order_id: str | None = None,
    executed: str | None = None,
) -> TradeOrder:
    return TradeOrder(
        trade_order_id=order_id,
        trading_account_id=account,
        status=status,
        updated_at=updated_at,
        client_order_id=client_order_id,
        executed_quantity=executed,
    )


# ---------------------------------------------------------------- the confirmation registry


def test_a_new_waiter_knows_nothing_yet() -> None:
    waiter, created = ConfirmationRegistry().register("o1", 7.5, account_id=ACCOUNT)
    assert created
    assert (waiter.order_id, waiter.account_id, waiter.registered_at) == ("o1", ACCOUNT, 7.5)
    assert (waiter.last_known, waiter.last_updated, waiter.outcome) == (None, None, None)
    assert (waiter.done, waiter.source, waiter.resolved_at, waiter.handle) == (
        False,
        None,
        None,
        None,
    )
    assert waiter.refs == 1
    assert (
        repr(waiter)
        == "Waiter(order_id='o1', account_id='acct-1', state=pending, source=None, refs=1)"
    )


def test_a_waiters_repr_names_its_outcome() -> None:
    reg = ConfirmationRegistry()
    waiter, _ = reg.register("o1", 0.0)
    reg.resolve_from_rest(order("CANCELLED"), 1.0)
    assert repr(waiter) == (
        "Waiter(order_id='o1', account_id='acct-1', state=CANCELLED, source='rest', refs=1)"
    )


def test_new_registry_stats_are_zero() -> None:
    stats = ConfirmationRegistry().stats
    assert stats.as_dict() == {
        "account_mismatches": 0,
        "duplicates_ignored": 0,
        "early_buffered": 0,
        "early_evicted": 0,
        "events_seen": 0,
        "resolved_by_source": {"ws": 0, "http": 0, "rest": 0},
        "stale_ignored": 0,
        "terminal_conflicts": 0,
    }
    assert repr(stats) == f"RegistryStats({stats.as_dict()!r})"
    snapshot = stats.as_dict()
    snapshot["resolved_by_source"]["ws"] = 99  # type: ignore[index]
    assert stats.resolved_by_source["ws"] == 0  # a copy, not the live dict


@pytest.mark.parametrize(("name", "value"), [("early_capacity", -1), ("settled_capacity", -1)])
def test_a_negative_capacity_is_refused_by_name(name: str, value: int) -> None:
    with pytest.raises(ValueError, match=f"^{name} must be >= 0$"):
        ConfirmationRegistry(**{name: value})


def test_the_early_buffer_holds_10_000_by_default() -> None:
    reg = ConfirmationRegistry()
    for i in range(10_001):
        reg.observe(order("CANCELLED", f"e{i}"), "ws", 0.0)
    assert reg.early_count == 10_000
    assert (reg.stats.early_buffered, reg.stats.early_evicted) == (10_001, 1)


@pytest.mark.parametrize(
    ("resolve", "source"),
    [
        (ConfirmationRegistry.resolve_from_http, "http"),
        (ConfirmationRegistry.resolve_from_rest, "rest"),
        (ConfirmationRegistry.resolve_from_event, "ws"),
    ],
)
def test_each_source_records_its_proof_and_the_time(resolve, source: str) -> None:
    reg = ConfirmationRegistry()
    for order_id, now in (("o1", 3.25), ("o2", 4.5)):
        waiter, _ = reg.register(order_id, 0.0, account_id=ACCOUNT)
        proof = order("CANCELLED", order_id, updated_at=2_000)
        assert resolve(reg, proof, now) is waiter
        assert (waiter.source, waiter.resolved_at, waiter.outcome) == (source, now, proof)
        assert (waiter.last_known, waiter.last_updated) == (proof, 2_000)
    assert reg.stats.resolved_by_source == {"ws": 0, "http": 0, "rest": 0, source: 2}
    assert reg.stats.events_seen == 2
    assert reg.pending_count_for_account(ACCOUNT) == 0


def test_an_early_terminal_state_resolves_the_waiter_registered_after_it() -> None:
    reg = ConfirmationRegistry()
    for order_id in ("o1", "o2"):
        early = order("FILLED", order_id, updated_at=3_000)
        assert reg.observe(early, "ws", 1.0) is None
        waiter, created = reg.register(order_id, 2.0)
        assert created
        assert (waiter.done, waiter.outcome, waiter.source) == (True, early, "ws")
        assert (waiter.last_known, waiter.last_updated, waiter.resolved_at) == (early, 3_000, 2.0)
        assert waiter.account_id == ACCOUNT  # learned from the early order
    assert reg.stats.resolved_by_source["ws"] == 2
    assert reg.pending_count == 0


def test_an_early_state_of_another_account_is_a_mismatch_and_resolves_nothing() -> None:
    reg = ConfirmationRegistry()
    for order_id in ("o1", "o2"):
        reg.observe(order("FILLED", order_id, account=OTHER), "ws", 1.0)
        waiter, _ = reg.register(order_id, 2.0, account_id=ACCOUNT)
        assert not waiter.done
    assert reg.stats.account_mismatches == 2
    assert reg.pending_count_for_account(ACCOUNT) == 2


def test_a_repeated_early_state_counts_as_a_duplicate_and_the_first_stays() -> None:
    reg = ConfirmationRegistry()
    first = order("CANCELLED", updated_at=1)
    for again in (order("FILLED", updated_at=2), order("CANCELLED", updated_at=3)):
        reg.observe(first, "ws", 0.0)
        reg.observe(again, "rest", 0.0)
    waiter, _ = reg.register("o1", 1.0)
    assert (waiter.outcome, waiter.source) == (first, "ws")
    assert reg.stats.duplicates_ignored == 3  # the three after the first


def test_no_early_buffer_counts_each_early_state_as_evicted() -> None:
    reg = ConfirmationRegistry(early_capacity=0)
    reg.observe(order("CANCELLED", "e1"), "ws", 0.0)
    reg.observe(order("CANCELLED", "e2"), "ws", 0.0)
    assert (reg.early_count, reg.stats.early_evicted, reg.stats.early_buffered) == (0, 2, 0)


def test_a_full_early_buffer_drops_its_oldest() -> None:
    reg = ConfirmationRegistry(early_capacity=2)
    for order_id in ("e1", "e2", "e3", "e4"):
        reg.observe(order("CANCELLED", order_id), "ws", 0.0)
    assert reg.stats.early_evicted == 2
    assert not reg.register("e1", 1.0)[0].done  # the oldest ones left
    assert not reg.register("e2", 1.0)[0].done
    assert reg.register("e3", 1.0)[0].done
    assert reg.register("e4", 1.0)[0].done


def test_every_duplicate_and_conflict_after_the_outcome_is_counted() -> None:
    reg = ConfirmationRegistry()
    waiter, _ = reg.register("o1", 0.0, account_id=ACCOUNT)
    reg.observe(order("CANCELLED", updated_at=5), "ws", 1.0)
    reg.observe(order("CANCELLED", updated_at=5), "http", 2.0)  # the same: a duplicate
    reg.observe(order("FILLED", updated_at=6), "rest", 3.0)  # a conflict
    reg.observe(order("FILLED", updated_at=7), "rest", 3.0)  # a second one
    reg.observe(order("OPEN", updated_at=8), "rest", 3.0)  # stale, not a conflict
    assert waiter.outcome is not None
    assert waiter.outcome.status == "CANCELLED"
    assert (reg.stats.duplicates_ignored, reg.stats.terminal_conflicts) == (4, 2)


def test_trailing_states_of_settled_orders_are_duplicates_and_conflicts_counted() -> None:
    reg = ConfirmationRegistry(settled_capacity=10)
    for order_id in ("o1", "o2"):
        waiter, _ = reg.register(order_id, 0.0)
        reg.observe(order("CANCELLED", order_id), "http", 1.0)
        reg.release(waiter)
    for order_id in ("o1", "o2"):
        assert reg.observe(order("CANCELLED", order_id), "ws", 2.0) is None
        assert reg.observe(order("FILLED", order_id), "ws", 2.0) is None
    assert (reg.stats.duplicates_ignored, reg.stats.terminal_conflicts) == (4, 2)
    assert reg.early_count == 0  # not buffered as early evidence


def test_settled_ids_are_kept_up_to_the_capacity_oldest_first_out() -> None:
    reg = ConfirmationRegistry(settled_capacity=2)
    for order_id in ("o1", "o2", "o3"):
        waiter, _ = reg.register(order_id, 0.0)
        reg.observe(order("CANCELLED", order_id), "http", 1.0)
        reg.release(waiter)
    reg.observe(order("CANCELLED", "o1"), "ws", 2.0)  # forgotten: early evidence again
    assert reg.early_count == 1
    reg.observe(order("CANCELLED", "o3"), "ws", 2.0)  # kept: a duplicate
    assert (reg.early_count, reg.stats.duplicates_ignored) == (1, 1)


def test_registering_again_after_settling_forgets_the_settled_status() -> None:
    reg = ConfirmationRegistry(settled_capacity=10)
    waiter, _ = reg.register("o1", 0.0)
    reg.observe(order("CANCELLED"), "http", 1.0)
    reg.release(waiter)
    again, created = reg.register("o1", 2.0)
    assert created
    reg.release(again)  # left unresolved: nothing settled for o1 now
    reg.observe(order("CANCELLED", updated_at=9), "ws", 3.0)
    assert reg.early_count == 1  # early evidence, not a trailing duplicate


def test_stale_and_repeated_states_are_counted_apart() -> None:
    reg = ConfirmationRegistry()
    waiter, _ = reg.register("o1", 0.0, account_id=ACCOUNT)
    newer = order("PENDING_CANCEL", updated_at=10)
    reg.observe(newer, "http", 1.0)
    reg.observe(newer, "ws", 1.0)  # the same state again
    reg.observe(newer, "rest", 1.0)
    reg.observe(order("OPEN", updated_at=9), "ws", 1.0)  # older
    reg.observe(order("OPEN", updated_at=10), "ws", 1.0)  # as old, another state
    assert (waiter.last_known, waiter.last_updated) == (newer, 10)
    assert (reg.stats.duplicates_ignored, reg.stats.stale_ignored) == (2, 2)


def test_a_first_state_without_updated_at_is_kept_as_last_known() -> None:
    reg = ConfirmationRegistry()
    waiter, _ = reg.register("o1", 0.0)
    unordered = order("OPEN", updated_at=None)
    reg.observe(unordered, "http", 1.0)
    assert (waiter.last_known, waiter.last_updated) == (unordered, None)
    reg.observe(order("PENDING_CANCEL", updated_at=None), "ws", 1.0)  # replaces nothing
    assert waiter.last_known is unordered
    assert reg.stats.stale_ignored == 1


def test_account_mismatches_are_counted_each_time() -> None:
    reg = ConfirmationRegistry()
    reg.register("o1", 0.0, account_id=ACCOUNT)
    reg.observe(order("CANCELLED", account=OTHER), "http", 1.0)  # the waiter's account
    reg.observe(order("CANCELLED"), "ws", 1.0, channel_account=OTHER)  # the channel's
    waiter, _ = reg.register("o2", 0.0)
    reg.learn_account(waiter, ACCOUNT)
    assert reg.learn_account(waiter, OTHER) is False
    assert reg.learn_account(waiter, ACCOUNT) is True
    assert reg.stats.account_mismatches == 3


def test_learning_the_account_of_a_pending_waiter_indexes_it_and_of_a_resolved_one_not() -> None:
    reg = ConfirmationRegistry()
    pending, _ = reg.register("o1", 0.0)
    assert reg.learn_account(pending, ACCOUNT)
    assert reg.pending_for_account(ACCOUNT) == [pending]
    resolved, _ = reg.register("o2", 0.0)
    reg.observe(order("CANCELLED", "o2", account=OTHER), "ws", 1.0)  # ws binds no account
    assert resolved.done
    assert resolved.account_id is None
    assert reg.learn_account(resolved, OTHER)
    assert reg.pending_for_account(OTHER) == []


def test_a_second_caller_with_an_account_binds_a_waiter_without_one() -> None:
    reg = ConfirmationRegistry()
    first, _ = reg.register("o1", 0.0)
    same, created = reg.register("o1", 1.0, account_id=ACCOUNT)
    assert (same is first, created, first.account_id, first.refs) == (True, False, ACCOUNT, 2)
    assert reg.pending_for_account(ACCOUNT) == [first]
    # a third caller without an account changes nothing
    reg.register("o1", 2.0)
    assert (first.account_id, first.refs) == (ACCOUNT, 3)
    assert reg.stats.account_mismatches == 0


def test_the_last_resolved_waiter_of_an_account_leaves_its_index() -> None:
    reg = ConfirmationRegistry()
    reg.register("o1", 0.0, account_id=ACCOUNT)
    b, _ = reg.register("o2", 0.0, account_id=ACCOUNT)
    reg.observe(order("CANCELLED", "o1"), "ws", 1.0)
    assert reg.pending_for_account(ACCOUNT) == [b]
    reg.observe(order("CANCELLED", "o2"), "ws", 1.0)
    assert reg.pending_for_account(ACCOUNT) == []
    assert reg.pending_count_for_account(ACCOUNT) == 0


def test_releasing_unresolved_waiters_empties_the_account_index() -> None:
    reg = ConfirmationRegistry()
    a, _ = reg.register("o1", 0.0, account_id=ACCOUNT)
    b, _ = reg.register("o2", 0.0, account_id=ACCOUNT)
    reg.release(a)
    assert reg.pending_for_account(ACCOUNT) == [b]
    reg.release(b)
    assert reg.pending_count_for_account(ACCOUNT) == 0
    assert list(reg.pending()) == []


def test_releasing_a_waiter_that_left_changes_nothing() -> None:
    reg = ConfirmationRegistry()
    waiter, _ = reg.register("o1", 0.0)
    reg.release(waiter)
    reg.release(waiter)
    assert waiter.refs == 0
    again, created = reg.register("o1", 1.0)
    assert created
    assert again is not waiter


def test_stats_are_a_registry_stats() -> None:
    assert isinstance(ConfirmationRegistry().stats, RegistryStats)
    assert isinstance(Waiter("o1", 0.0), Waiter)


# ---------------------------------------------------------------- the placement registry


def test_a_new_placement_knows_nothing_yet() -> None:
    placement, created = PlacementRegistry().register("cid-1", ACCOUNT, 4.25)
    assert created
    assert (placement.client_order_id, placement.account_id) == ("cid-1", ACCOUNT)
    assert (placement.order_id, placement.last_known, placement.last_updated) == (None, None, None)
    assert (placement.outcome, placement.accepted, placement.done) == (None, None, False)
    assert (placement.source, placement.resolved_at, placement.handle) == (None, None, None)
    assert (placement.registered_at, placement.refs) == (4.25, 1)
    assert repr(placement) == (
        "Placement(client_order_id='cid-1', order_id=None, state=pending, accepted=None, "
        "source=None, refs=1)"
    )


def test_a_placements_repr_names_its_outcome() -> None:
    reg = PlacementRegistry()
    placement, _ = reg.register("cid-1", ACCOUNT, 0.0)
    reg.resolve_from_reply(placement, order("OPEN", client_order_id="cid-1"), 1.0)
    assert repr(placement) == (
        "Placement(client_order_id='cid-1', order_id='o1', state=OPEN, accepted=True, "
        "source='http', refs=1)"
    )


def test_new_placement_stats_are_zero() -> None:
    stats = PlacementRegistry().stats
    assert isinstance(stats, PlacementStats)
    assert stats.as_dict() == {
        "account_mismatches": 0,
        "duplicates_ignored": 0,
        "events_seen": 0,
        "foreign_orders": 0,
        "resolved_by_source": {"ws": 0, "http": 0, "rest": 0},
        "stale_ignored": 0,
        "unmatched": 0,
        "verdict_conflicts": 0,
    }


def placed(reg: PlacementRegistry, cid: str) -> Placement:
    placement, created = reg.register(cid, ACCOUNT, 0.0)
    assert created
    return placement


@pytest.mark.parametrize("source", ["http", "rest", "ws"])
def test_each_source_records_its_verdict_and_the_time(source: str) -> None:
    reg = PlacementRegistry()
    for cid, now in (("c1", 2.5), ("c2", 3.5)):
        placement = placed(reg, cid)
        proof = order("OPEN", f"order-{cid}", client_order_id=cid, updated_at=2_000)
        if source == "http":
            resolved = reg.resolve_from_reply(placement, proof, now)
        elif source == "rest":
            resolved = reg.resolve_from_rest(proof, now)
        else:
            resolved = reg.resolve_from_event(proof, now, channel_account=ACCOUNT)
        assert resolved is placement
        assert (placement.source, placement.resolved_at, placement.accepted) == (source, now, True)
        assert (placement.outcome, placement.last_known, placement.last_updated) == (
            proof,
            proof,
            2_000,
        )
        assert placement.order_id == f"order-{cid}"
        assert reg.for_order(f"order-{cid}") is placement
    assert reg.stats.resolved_by_source == {"ws": 0, "http": 0, "rest": 0, source: 2}
    assert reg.stats.events_seen == 2
    assert reg.pending_count == 0
    assert reg.pending_for_account(ACCOUNT) == []


def test_every_observation_is_seen_and_each_unmatched_one_counted() -> None:
    reg = PlacementRegistry()
    reg.observe(order("OPEN", "x1", client_order_id=None), "ws", 0.0)
    reg.observe(order("OPEN", "x2", client_order_id="nobody"), "ws", 0.0)
    placement = placed(reg, "c1")
    reg.resolve_from_reply(placement, order("SUBMITTED", client_order_id="c1"), 0.0)
    assert (reg.stats.events_seen, reg.stats.unmatched) == (3, 2)


def test_account_mismatches_are_counted_each_time_and_change_nothing() -> None:
    reg = PlacementRegistry()
    placement = placed(reg, "c1")
    reg.resolve_from_reply(placement, order("OPEN", account=OTHER, client_order_id="c1"), 1.0)
    reg.resolve_from_event(order("OPEN", client_order_id="c1"), 1.0, channel_account=OTHER)
    reg.resolve_from_reply(placement, order("SUBMITTED", client_order_id="c1"), 1.0)  # binds
    reg.observe(order("OPEN", account=OTHER, client_order_id="c1"), "rest", 1.0)
    assert reg.stats.account_mismatches == 3
    assert not placement.done


def test_duplicates_and_verdict_conflicts_after_the_verdict_are_counted() -> None:
    reg = PlacementRegistry()
    placement = placed(reg, "c1")
    reg.resolve_from_reply(placement, order("OPEN", client_order_id="c1", updated_at=5), 1.0)
    reg.resolve_from_rest(order("OPEN", client_order_id="c1", updated_at=6), 2.0)  # duplicate
    reg.resolve_from_rest(order("REJECTED", client_order_id="c1", updated_at=7), 2.0)
    reg.resolve_from_rest(order("REJECTED", client_order_id="c1", updated_at=8), 2.0)
    reg.resolve_from_rest(order("SUBMITTED", client_order_id="c1", updated_at=9), 2.0)
    assert (placement.accepted, placement.source) == (True, "http")
    assert (reg.stats.duplicates_ignored, reg.stats.verdict_conflicts) == (4, 2)


def test_stale_and_repeated_states_before_the_verdict_are_counted_apart() -> None:
    reg = PlacementRegistry()
    placement = placed(reg, "c1")
    newer = order("SUBMITTED", client_order_id="c1", updated_at=10)
    reg.resolve_from_reply(placement, newer, 1.0)
    reg.resolve_from_rest(newer, 1.0)
    reg.resolve_from_rest(newer, 1.0)
    reg.resolve_from_rest(order("PENDING", client_order_id="c1", updated_at=9), 1.0)
    reg.resolve_from_rest(order("PENDING", client_order_id="c1", updated_at=10), 1.0)
    assert (placement.last_known, placement.last_updated) == (newer, 10)
    assert (reg.stats.duplicates_ignored, reg.stats.stale_ignored) == (2, 2)
    reg.resolve_from_rest(later := order("PENDING", client_order_id="c1", updated_at=11), 1.0)
    assert (placement.last_known, placement.last_updated) == (later, 11)


def test_a_first_state_without_updated_at_is_kept_and_replaces_nothing_after() -> None:
    reg = PlacementRegistry()
    placement = placed(reg, "c1")
    unordered = order("SUBMITTED", client_order_id="c1", updated_at=None)
    reg.resolve_from_reply(placement, unordered, 1.0)
    assert (placement.last_known, placement.last_updated) == (unordered, None)
    reg.resolve_from_rest(order("PENDING", client_order_id="c1", updated_at=None), 1.0)
    assert placement.last_known is unordered
    assert reg.stats.stale_ignored == 1


def test_an_older_verdict_still_decides_and_becomes_last_known() -> None:
    reg = PlacementRegistry()
    placement = placed(reg, "c1")
    reg.resolve_from_reply(placement, order("SUBMITTED", client_order_id="c1", updated_at=10), 0.0)
    verdict = order("REJECTED", client_order_id="c1", updated_at=5)
    assert reg.resolve_from_rest(verdict, 1.0) is placement
    assert (placement.last_known, placement.last_updated, placement.accepted) == (verdict, 5, False)


def test_a_placement_released_by_every_caller_is_never_indexed_again() -> None:
    reg = PlacementRegistry()
    placement = placed(reg, "c1")
    reg.release(placement)
    reg.release(placement)  # (once more: nothing)
    assert placement.refs == 0
    assert reg.bind(placement, "o-late") is True
    assert reg.for_order("o-late") is None  # nobody holds it: not indexed
    assert len(reg) == 0


def test_releasing_a_bound_placement_frees_its_order_id() -> None:
    reg = PlacementRegistry()
    placement = placed(reg, "c1")
    reg.resolve_from_reply(placement, order("SUBMITTED", "o-1", client_order_id="c1"), 0.0)
    reg.release(placement)
    assert reg.for_order("o-1") is None
    assert reg.pending_count == 0
    assert reg.pending_for_account(ACCOUNT) == []
    other = placed(reg, "c2")  # the id can be another placement's now
    assert reg.bind(other, "o-1") is True


def test_an_order_with_a_foreign_trade_order_id_is_counted_each_time() -> None:
    reg = PlacementRegistry()
    placement = placed(reg, "c1")
    reg.resolve_from_reply(placement, order("SUBMITTED", "o-1", client_order_id="c1"), 0.0)
    for other in ("o-2", "o-3"):
        assert reg.resolve_from_rest(order("OPEN", other, client_order_id="c1"), 1.0) is None
    assert reg.stats.foreign_orders == 2
    assert not placement.done


def test_learning_the_account_of_a_waiter_that_left_indexes_nothing() -> None:
    reg = ConfirmationRegistry()
    waiter, _ = reg.register("o1", 0.0)
    reg.release(waiter)  # the caller left before the reply named the account
    assert reg.learn_account(waiter, ACCOUNT)
    assert reg.pending_for_account(ACCOUNT) == []


def test_a_placement_resolved_then_released_leaves_every_index() -> None:
    reg = PlacementRegistry()
    placement = placed(reg, "c1")
    reg.resolve_from_reply(placement, order("OPEN", "o-1", client_order_id="c1"), 1.0)
    reg.release(placement)
    assert (len(reg), reg.pending_count, reg.for_order("o-1")) == (0, 0, None)
    assert reg.get("c1", ACCOUNT) is None
