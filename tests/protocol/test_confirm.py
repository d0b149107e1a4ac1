"""The confirmation registry's rules, one behaviour per test (plain, synchronous)."""

from __future__ import annotations

import ast
import pathlib

import pytest
from oracle import FINAL

from cadenza_async.models import OrderStatus, TradeOrder
from cadenza_async.protocol import confirm
from cadenza_async.protocol.confirm import ConfirmationRegistry, Waiter

ACCOUNT = "acct-1"
OTHER = "acct-2"


def order(
    status: str,
    order_id: str = "o1",
    *,
    account: str = ACCOUNT,
    updated_at: int | None = 1_000,
) -> TradeOrder:
    return TradeOrder(
        trade_order_id=order_id,
        trading_account_id=account,
        status=status,
        updated_at=updated_at,
    )


@pytest.fixture
def reg() -> ConfirmationRegistry:
    return ConfirmationRegistry()


# -- sans-I/O --------------------------------------------------------------------


def test_module_imports_no_io_library() -> None:
    tree = ast.parse(pathlib.Path(confirm.__file__).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & {"asyncio", "aiohttp", "websockets", "anyio", "time", "trio"}


# -- rule 1: register before send --------------------------------------------------


def test_event_right_after_register_resolves_the_waiter(reg: ConfirmationRegistry) -> None:
    waiter, created = reg.register("o1", 1.0, account_id=ACCOUNT)
    assert created
    assert not waiter.done
    cancelled = order(OrderStatus.CANCELLED)

    resolved = reg.resolve_from_event(cancelled, 2.0, channel_account=ACCOUNT)

    assert resolved is waiter
    assert waiter.done
    assert waiter.outcome is cancelled
    assert waiter.last_known is cancelled
    assert waiter.source == "ws"
    assert waiter.resolved_at == 2.0
    assert waiter.registered_at == 1.0


# -- rule 2: sources and terminal statuses ---------------------------------------


def test_http_terminal_answer_resolves_with_source_http(reg: ConfirmationRegistry) -> None:
    waiter, _ = reg.register("o1", 0.0)
    assert reg.resolve_from_http(order(OrderStatus.CANCELLED), 1.0) is waiter
    assert waiter.source == "http"


def test_rest_terminal_answer_resolves_with_source_rest(reg: ConfirmationRegistry) -> None:
    waiter, _ = reg.register("o1", 0.0)
    assert reg.resolve_from_rest(order(OrderStatus.FILLED), 1.0) is waiter
    assert waiter.source == "rest"
    assert waiter.outcome is not None
    assert waiter.outcome.status == OrderStatus.FILLED


@pytest.mark.parametrize("status", sorted(FINAL))
def test_every_terminal_status_resolves(reg: ConfirmationRegistry, status: str) -> None:
    waiter, _ = reg.register("o1", 0.0)
    assert reg.observe(order(status), "ws", 1.0) is waiter
    assert waiter.done


@pytest.mark.parametrize(
    "status",
    [
        OrderStatus.OPEN,
        OrderStatus.PENDING,
        OrderStatus.CREATED,
        OrderStatus.SUBMITTED,
        OrderStatus.ACCEPTED,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.PENDING_CANCEL,
        OrderStatus.PENDING_REPLACE,
        OrderStatus.UNKNOWN,
        "SOMETHING_NEW",
        "cancelled",  # statuses are case-sensitive: lower case is not the terminal one
    ],
)
def test_non_terminal_or_unknown_status_never_resolves(
    reg: ConfirmationRegistry, status: str
) -> None:
    waiter, _ = reg.register("o1", 0.0)
    seen = order(status)
    for source in ("ws", "http", "rest"):
        assert reg.observe(seen, source, 1.0) is None
    assert not waiter.done
    assert waiter.outcome is None
    assert waiter.source is None
    assert waiter.last_known is seen
    assert list(reg.pending()) == [waiter]


def test_http_pending_cancel_then_event_cancelled_resolves_from_ws(
    reg: ConfirmationRegistry,
) -> None:
    waiter, _ = reg.register("o1", 0.0)
    assert reg.resolve_from_http(order(OrderStatus.PENDING_CANCEL, updated_at=10), 1.0) is None
    assert reg.resolve_from_event(order(OrderStatus.CANCELLED, updated_at=20), 2.0) is waiter
    assert waiter.source == "ws"


# -- rule 7: sticky terminal, stale and duplicate --------------------------------


def test_stale_non_terminal_events_after_the_outcome_are_duplicates_not_conflicts(
    reg: ConfirmationRegistry,
) -> None:
    waiter, _ = reg.register("o1", 0.0)
    reg.resolve_from_http(order(OrderStatus.CANCELLED, updated_at=10), 1.0)

    # The PENDING_CANCEL event the exchange sent first arrives after the proof.
    assert reg.resolve_from_event(order(OrderStatus.PENDING_CANCEL, updated_at=5), 2.0) is None

    assert waiter.outcome is not None
    assert waiter.outcome.status == OrderStatus.CANCELLED
    assert reg.stats.duplicates_ignored == 1
    assert reg.stats.terminal_conflicts == 0


def test_cancelled_then_filled_stays_cancelled(reg: ConfirmationRegistry) -> None:
    waiter, _ = reg.register("o1", 0.0)
    cancelled = order(OrderStatus.CANCELLED, updated_at=10)
    reg.resolve_from_event(cancelled, 1.0)

    assert reg.resolve_from_rest(order(OrderStatus.FILLED, updated_at=20), 2.0) is None

    assert waiter.outcome is cancelled
    assert waiter.last_known is cancelled
    assert waiter.source == "ws"
    assert waiter.resolved_at == 1.0
    assert reg.stats.terminal_conflicts == 1


def test_filled_first_stays_filled(reg: ConfirmationRegistry) -> None:
    waiter, _ = reg.register("o1", 0.0)
    filled = order(OrderStatus.FILLED, updated_at=10)
    reg.resolve_from_http(filled, 1.0)

    assert reg.resolve_from_event(order(OrderStatus.CANCELLED, updated_at=30), 2.0) is None
    assert reg.resolve_from_event(order(OrderStatus.OPEN, updated_at=40), 3.0) is None

    assert waiter.outcome is filled
    assert waiter.source == "http"


def test_stale_update_never_overwrites_newer_last_known(reg: ConfirmationRegistry) -> None:
    waiter, _ = reg.register("o1", 0.0)
    newer = order(OrderStatus.PENDING_CANCEL, updated_at=20)
    reg.observe(newer, "http", 1.0)

    assert reg.observe(order(OrderStatus.OPEN, updated_at=10), "ws", 2.0) is None

    assert waiter.last_known is newer
    assert reg.stats.stale_ignored == 1


def test_newer_update_replaces_last_known(reg: ConfirmationRegistry) -> None:
    waiter, _ = reg.register("o1", 0.0)
    reg.observe(order(OrderStatus.OPEN, updated_at=10), "ws", 1.0)
    newer = order(OrderStatus.PARTIALLY_FILLED, updated_at=11)
    reg.observe(newer, "ws", 2.0)
    assert waiter.last_known is newer
    assert reg.stats.stale_ignored == 0


def test_equal_updated_at_with_other_state_keeps_the_first_seen(
    reg: ConfirmationRegistry,
) -> None:
    waiter, _ = reg.register("o1", 0.0)
    first = order(OrderStatus.PENDING_CANCEL, updated_at=10)
    reg.observe(first, "http", 1.0)
    reg.observe(order(OrderStatus.OPEN, updated_at=10), "ws", 2.0)
    assert waiter.last_known is first
    assert reg.stats.stale_ignored == 1


def test_update_without_updated_at_only_fills_an_empty_last_known(
    reg: ConfirmationRegistry,
) -> None:
    waiter, _ = reg.register("o1", 0.0)
    unordered = order(OrderStatus.OPEN, updated_at=None)
    reg.observe(unordered, "ws", 1.0)
    assert waiter.last_known is unordered

    timed = order(OrderStatus.PENDING_CANCEL, updated_at=5)
    reg.observe(timed, "ws", 2.0)
    assert waiter.last_known is timed  # a timestamped state beats an unordered one

    reg.observe(order(OrderStatus.OPEN, updated_at=None), "ws", 3.0)
    assert waiter.last_known is timed
    assert reg.stats.stale_ignored == 1


def test_terminal_without_updated_at_still_resolves(reg: ConfirmationRegistry) -> None:
    waiter, _ = reg.register("o1", 0.0)
    reg.observe(order(OrderStatus.PENDING_CANCEL, updated_at=5), "http", 1.0)
    assert reg.observe(order(OrderStatus.CANCELLED, updated_at=None), "ws", 2.0) is waiter


def test_terminal_with_older_updated_at_than_last_known_still_resolves(
    reg: ConfirmationRegistry,
) -> None:
    # A terminal state is final at the exchange; an older stamp is clock skew.
    waiter, _ = reg.register("o1", 0.0)
    reg.observe(order(OrderStatus.PENDING_CANCEL, updated_at=50), "http", 1.0)
    cancelled = order(OrderStatus.CANCELLED, updated_at=40)
    assert reg.observe(cancelled, "ws", 2.0) is waiter
    assert waiter.outcome is cancelled
    assert waiter.last_known is cancelled


def test_duplicate_events_are_harmless(reg: ConfirmationRegistry) -> None:
    waiter, _ = reg.register("o1", 0.0)
    pending = order(OrderStatus.PENDING_CANCEL, updated_at=5)
    cancelled = order(OrderStatus.CANCELLED, updated_at=6)

    reg.resolve_from_event(pending, 1.0)
    reg.resolve_from_event(pending, 1.1)
    results = [reg.resolve_from_event(cancelled, t) for t in (2.0, 2.1, 2.2)]

    assert results == [waiter, None, None]
    assert waiter.outcome is cancelled
    assert waiter.resolved_at == 2.0
    assert reg.stats.duplicates_ignored == 3
    assert reg.stats.terminal_conflicts == 0
    assert reg.stats.resolved_by_source == {"ws": 1, "http": 0, "rest": 0}


# -- early buffer ----------------------------------------------------------------


def test_event_before_register_resolves_at_register(reg: ConfirmationRegistry) -> None:
    cancelled = order(OrderStatus.CANCELLED)
    assert reg.resolve_from_event(cancelled, 1.0, channel_account=ACCOUNT) is None
    assert reg.early_count == 1

    waiter, created = reg.register("o1", 2.0, account_id=ACCOUNT)

    assert created
    assert waiter.done
    assert waiter.outcome is cancelled
    assert waiter.source == "ws"
    assert waiter.resolved_at == 2.0
    assert list(reg.pending()) == []
    assert reg.early_count == 0
    assert reg.stats.resolved_by_source["ws"] == 1


def test_early_buffer_keeps_the_source_that_proved_it(reg: ConfirmationRegistry) -> None:
    reg.resolve_from_rest(order(OrderStatus.FILLED), 1.0)
    waiter, _ = reg.register("o1", 2.0)
    assert waiter.source == "rest"
    assert waiter.account_id == ACCOUNT  # learned from the buffered order


def test_early_buffer_ignores_non_terminal_states(reg: ConfirmationRegistry) -> None:
    reg.resolve_from_event(order(OrderStatus.PENDING_CANCEL), 1.0)
    assert reg.early_count == 0
    waiter, _ = reg.register("o1", 2.0)
    assert not waiter.done
    assert waiter.last_known is None


def test_early_buffer_is_bounded_and_evicts_the_oldest() -> None:
    reg = ConfirmationRegistry(early_capacity=3)
    for i in range(5):
        reg.resolve_from_event(order(OrderStatus.CANCELLED, f"o{i}"), float(i))

    assert reg.early_count == 3
    assert reg.stats.early_buffered == 5
    assert reg.stats.early_evicted == 2
    assert not reg.register("o0", 9.0)[0].done
    assert not reg.register("o1", 9.0)[0].done
    assert all(reg.register(f"o{i}", 9.0)[0].done for i in (2, 3, 4))


def test_early_buffer_keeps_the_first_terminal_state() -> None:
    reg = ConfirmationRegistry(early_capacity=2)
    cancelled = order(OrderStatus.CANCELLED, "a")
    reg.resolve_from_event(cancelled, 1.0)
    reg.resolve_from_event(order(OrderStatus.CANCELLED, "b"), 2.0)
    reg.resolve_from_event(order(OrderStatus.FILLED, "a"), 3.0)  # conflicting repeat of "a"
    reg.resolve_from_event(order(OrderStatus.CANCELLED, "c"), 4.0)  # evicts "a", the oldest

    assert reg.stats.duplicates_ignored == 1
    assert not reg.register("a", 5.0)[0].done
    assert reg.register("b", 5.0)[0].done


def test_zero_capacity_early_buffer_keeps_nothing() -> None:
    reg = ConfirmationRegistry(early_capacity=0)
    reg.resolve_from_event(order(OrderStatus.CANCELLED), 1.0)
    assert reg.early_count == 0
    assert reg.stats.early_evicted == 1
    assert not reg.register("o1", 2.0)[0].done


def test_negative_early_capacity_is_refused() -> None:
    with pytest.raises(ValueError, match="early_capacity"):
        ConfirmationRegistry(early_capacity=-1)
    with pytest.raises(ValueError, match="settled_capacity"):
        ConfirmationRegistry(settled_capacity=-1)


def test_early_buffer_eviction_cost_does_not_grow_with_churn() -> None:
    # Timing is the benchmark's business; here: under heavy churn the buffer
    # never exceeds its capacity and each eviction removes exactly the oldest.
    cap = 1_000
    reg = ConfirmationRegistry(early_capacity=cap)
    events = [order(OrderStatus.CANCELLED, f"o{i}") for i in range(20 * cap)]
    for i, ev in enumerate(events):
        reg.resolve_from_event(ev, float(i))
        assert reg.early_count == min(i + 1, cap)
    assert reg.stats.early_evicted == 19 * cap
    assert reg.register(f"o{19 * cap - 1}", 0.0)[0].done is False
    assert reg.register(f"o{19 * cap}", 0.0)[0].done is True


def test_early_entry_for_another_account_does_not_resolve(reg: ConfirmationRegistry) -> None:
    reg.resolve_from_event(order(OrderStatus.CANCELLED, account=OTHER), 1.0)
    waiter, _ = reg.register("o1", 2.0, account_id=ACCOUNT)
    assert not waiter.done
    assert reg.stats.account_mismatches == 1
    assert reg.early_count == 0


def test_released_then_terminal_event_goes_to_the_early_buffer(
    reg: ConfirmationRegistry,
) -> None:
    waiter, _ = reg.register("o1", 0.0)
    reg.release(waiter)
    reg.resolve_from_event(order(OrderStatus.CANCELLED), 1.0)
    again, created = reg.register("o1", 2.0)
    assert created
    assert again is not waiter
    assert again.done


@pytest.fixture
def settling() -> ConfirmationRegistry:
    return ConfirmationRegistry(settled_capacity=100)


def test_by_default_an_event_trailing_a_settled_waiter_is_buffered(
    reg: ConfirmationRegistry,
) -> None:
    waiter, _ = reg.register("o1", 0.0)
    reg.resolve_from_http(order(OrderStatus.CANCELLED), 1.0)
    reg.release(waiter)
    reg.resolve_from_event(order(OrderStatus.CANCELLED), 2.0)
    assert reg.early_count == 1
    assert reg.register("o1", 3.0)[0].done


def test_event_trailing_a_resolved_and_released_waiter_is_a_duplicate_not_kept(
    settling: ConfirmationRegistry,
) -> None:
    reg = settling
    waiter, _ = reg.register("o1", 0.0, account_id=ACCOUNT)
    assert reg.resolve_from_http(order(OrderStatus.CANCELLED), 1.0) is waiter
    reg.release(waiter)

    assert reg.resolve_from_event(order(OrderStatus.CANCELLED), 2.0, ACCOUNT) is None
    assert reg.early_count == 0
    assert reg.stats.duplicates_ignored == 1
    assert reg.stats.terminal_conflicts == 0
    assert reg.stats.early_buffered == 0


def test_conflicting_event_after_a_settled_waiter_counts_as_a_conflict(
    settling: ConfirmationRegistry,
) -> None:
    reg = settling
    waiter, _ = reg.register("o1", 0.0)
    reg.resolve_from_http(order(OrderStatus.CANCELLED), 1.0)
    reg.release(waiter)
    reg.resolve_from_event(order(OrderStatus.FILLED), 2.0)
    assert reg.stats.terminal_conflicts == 1
    assert reg.early_count == 0


def test_register_after_a_settled_waiter_starts_afresh_and_later_events_resolve_it(
    settling: ConfirmationRegistry,
) -> None:
    reg = settling
    waiter, _ = reg.register("o1", 0.0)
    reg.resolve_from_http(order(OrderStatus.CANCELLED), 1.0)
    reg.release(waiter)

    again, created = reg.register("o1", 2.0)
    assert created
    assert not again.done
    assert reg.resolve_from_event(order(OrderStatus.CANCELLED), 3.0) is again
    reg.release(again)
    # once released again, the settled record is back: the next event is a duplicate
    reg.resolve_from_event(order(OrderStatus.CANCELLED), 4.0)
    assert reg.early_count == 0


def test_unresolved_waiter_that_left_is_not_settled(settling: ConfirmationRegistry) -> None:
    reg = settling
    waiter, _ = reg.register("o1", 0.0)
    reg.release(waiter)  # timed out or cancelled: a later event is real news
    reg.resolve_from_event(order(OrderStatus.CANCELLED), 1.0)
    assert reg.early_count == 1


def test_settled_ids_are_bounded() -> None:
    reg = ConfirmationRegistry(settled_capacity=2)
    for i in range(3):
        waiter, _ = reg.register(f"o{i}", 0.0)
        reg.resolve_from_http(order(OrderStatus.CANCELLED, f"o{i}"), 1.0)
        reg.release(waiter)
    # o0 was forgotten (oldest): its trailing event is buffered like any early one
    reg.resolve_from_event(order(OrderStatus.CANCELLED, "o0"), 2.0)
    reg.resolve_from_event(order(OrderStatus.CANCELLED, "o2"), 2.0)
    assert reg.early_count == 1
    assert reg.register("o0", 3.0)[0].done


# -- shared waiters and release ----------------------------------------------------


def test_concurrent_callers_share_one_waiter(reg: ConfirmationRegistry) -> None:
    first, created_first = reg.register("o1", 0.0)
    second, created_second = reg.register("o1", 0.5, account_id=ACCOUNT)

    assert (created_first, created_second) == (True, False)
    assert second is first
    assert first.refs == 2
    assert first.registered_at == 0.0
    assert first.account_id == ACCOUNT  # the second caller taught the account
    assert reg.pending_for_account(ACCOUNT) == [first]
    assert len(reg) == 1

    reg.resolve_from_event(order(OrderStatus.CANCELLED), 1.0)
    assert first.done


def test_release_keeps_the_waiter_until_the_last_caller_leaves(
    reg: ConfirmationRegistry,
) -> None:
    waiter, _ = reg.register("o1", 0.0, account_id=ACCOUNT)
    reg.register("o1", 0.0)

    reg.release(waiter)
    assert waiter.refs == 1
    assert reg.get("o1") is waiter
    assert list(reg.pending()) == [waiter]

    reg.release(waiter)
    assert waiter.refs == 0
    assert reg.get("o1") is None
    assert "o1" not in reg
    assert len(reg) == 0
    assert list(reg.pending()) == []
    assert reg.pending_for_account(ACCOUNT) == []
    assert reg.pending_count_for_account(ACCOUNT) == 0

    reg.release(waiter)  # a stray extra release changes nothing
    assert waiter.refs == 0


def test_late_caller_shares_an_already_resolved_waiter(reg: ConfirmationRegistry) -> None:
    waiter, _ = reg.register("o1", 0.0)
    reg.resolve_from_http(order(OrderStatus.CANCELLED), 1.0)
    again, created = reg.register("o1", 2.0)
    assert not created
    assert again is waiter
    assert again.done
    assert again.refs == 2


def test_stale_release_of_an_old_waiter_does_not_remove_the_new_one(
    reg: ConfirmationRegistry,
) -> None:
    old, _ = reg.register("o1", 0.0)
    reg.release(old)
    new, _ = reg.register("o1", 1.0)
    reg.release(old)
    assert reg.get("o1") is new


def test_handle_slot_is_left_alone(reg: ConfirmationRegistry) -> None:
    waiter, _ = reg.register("o1", 0.0)
    token = object()
    waiter.handle = token
    reg.resolve_from_event(order(OrderStatus.CANCELLED), 1.0)
    reg.release(waiter)
    assert waiter.handle is token


def test_waiter_has_no_instance_dict() -> None:
    waiter = Waiter("o1", 0.0)
    assert not hasattr(waiter, "__dict__")
    with pytest.raises(AttributeError):
        waiter.extra = 1  # type: ignore[attr-defined]
    assert "o1" in repr(waiter)
    assert "pending" in repr(waiter)


# -- accounts (reliability row 25) -------------------------------------------------


def test_payload_account_differing_from_channel_is_dropped(reg: ConfirmationRegistry) -> None:
    waiter, _ = reg.register("o1", 0.0)
    result = reg.resolve_from_event(
        order(OrderStatus.CANCELLED, account=OTHER), 1.0, channel_account=ACCOUNT
    )
    assert result is None
    assert not waiter.done
    assert reg.stats.account_mismatches == 1


def test_event_for_another_account_than_the_waiter_is_dropped(
    reg: ConfirmationRegistry,
) -> None:
    waiter, _ = reg.register("o1", 0.0, account_id=ACCOUNT)
    for source in ("ws", "http", "rest"):
        assert reg.observe(order(OrderStatus.CANCELLED, account=OTHER), source, 1.0) is None
    assert not waiter.done
    assert waiter.last_known is None
    assert reg.stats.account_mismatches == 3


def test_mismatched_event_without_waiter_is_not_buffered(reg: ConfirmationRegistry) -> None:
    reg.resolve_from_event(
        order(OrderStatus.CANCELLED, account=OTHER), 1.0, channel_account=ACCOUNT
    )
    assert reg.early_count == 0
    assert not reg.register("o1", 2.0)[0].done


def test_http_answer_teaches_the_account(reg: ConfirmationRegistry) -> None:
    waiter, _ = reg.register("o1", 0.0)
    assert reg.pending_for_account(ACCOUNT) == []
    reg.resolve_from_http(order(OrderStatus.PENDING_CANCEL), 1.0)
    assert waiter.account_id == ACCOUNT
    assert reg.pending_for_account(ACCOUNT) == [waiter]
    # from now on, another account's word is not evidence
    reg.resolve_from_rest(order(OrderStatus.CANCELLED, account=OTHER), 2.0)
    assert not waiter.done


def test_ws_event_does_not_teach_the_account(reg: ConfirmationRegistry) -> None:
    waiter, _ = reg.register("o1", 0.0)
    reg.resolve_from_event(order(OrderStatus.PENDING_CANCEL), 1.0, channel_account=ACCOUNT)
    assert waiter.account_id is None


def test_learn_account_indexes_a_pending_waiter(reg: ConfirmationRegistry) -> None:
    waiter, _ = reg.register("o1", 0.0)
    assert reg.learn_account(waiter, ACCOUNT) is True
    assert reg.learn_account(waiter, ACCOUNT) is True
    assert reg.pending_for_account(ACCOUNT) == [waiter]
    assert reg.pending_count_for_account(ACCOUNT) == 1


def test_learn_account_refuses_a_second_account(reg: ConfirmationRegistry) -> None:
    waiter, _ = reg.register("o1", 0.0, account_id=ACCOUNT)
    assert reg.learn_account(waiter, OTHER) is False
    assert waiter.account_id == ACCOUNT
    assert reg.pending_for_account(OTHER) == []
    assert reg.stats.account_mismatches == 1


def test_learn_account_on_a_resolved_waiter_does_not_index_it(
    reg: ConfirmationRegistry,
) -> None:
    waiter, _ = reg.register("o1", 0.0)
    reg.resolve_from_event(order(OrderStatus.CANCELLED), 1.0)
    reg.learn_account(waiter, ACCOUNT)
    assert waiter.account_id == ACCOUNT
    assert reg.pending_for_account(ACCOUNT) == []


# -- pending views -----------------------------------------------------------------


def test_pending_lists_only_unresolved_waiters(reg: ConfirmationRegistry) -> None:
    a, _ = reg.register("a", 0.0, account_id=ACCOUNT)
    b, _ = reg.register("b", 0.0, account_id=ACCOUNT)
    assert not b.done
    c, _ = reg.register("c", 0.0, account_id=OTHER)
    d, _ = reg.register("d", 0.0)
    reg.resolve_from_event(order(OrderStatus.CANCELLED, "b"), 1.0)

    assert b.done
    assert set(map(id, reg.pending())) == {id(a), id(c), id(d)}
    assert reg.pending_count == 3
    assert reg.pending_for_account(ACCOUNT) == [a]
    assert reg.pending_for_account(OTHER) == [c]
    assert reg.pending_for_account("nobody") == []
    counts = [reg.pending_count_for_account(a) for a in (ACCOUNT, OTHER, "nobody")]
    assert counts == [1, 1, 0]
    assert len(reg) == 4  # b is resolved but still held by its caller


def test_pending_is_a_snapshot_safe_to_resolve_while_iterating(
    reg: ConfirmationRegistry,
) -> None:
    for i in range(5):
        reg.register(f"o{i}", 0.0)
    resolved = [
        reg.resolve_from_rest(order(OrderStatus.CANCELLED, w.order_id), 1.0) for w in reg.pending()
    ]
    assert all(w is not None for w in resolved)
    assert list(reg.pending()) == []


def test_pending_for_account_only_touches_that_account(reg: ConfirmationRegistry) -> None:
    for i in range(1_000):
        reg.register(f"x{i}", 0.0, account_id=OTHER)
    mine, _ = reg.register("m", 0.0, account_id=ACCOUNT)
    # the account index holds only that account's waiters
    assert reg.pending_for_account(ACCOUNT) == [mine]
    assert len(reg._by_account[ACCOUNT]) == 1


# -- stats -------------------------------------------------------------------------


def test_stats_count_what_happened(reg: ConfirmationRegistry) -> None:
    w1, _ = reg.register("o1", 0.0, account_id=ACCOUNT)
    reg.register("o2", 0.0)
    reg.register("o3", 0.0)
    reg.resolve_from_event(order(OrderStatus.PENDING_CANCEL, "o1", updated_at=5), 1.0)
    reg.resolve_from_event(order(OrderStatus.OPEN, "o1", updated_at=4), 1.0)  # stale
    reg.resolve_from_event(order(OrderStatus.CANCELLED, "o1", updated_at=6), 1.0)  # ws
    reg.resolve_from_event(order(OrderStatus.CANCELLED, "o1", updated_at=6), 1.0)  # dup
    reg.resolve_from_http(order(OrderStatus.FILLED, "o2"), 1.0)  # http
    reg.resolve_from_rest(order(OrderStatus.EXPIRED, "o3"), 1.0)  # rest
    reg.resolve_from_event(order(OrderStatus.CANCELLED, "o1", account=OTHER), 1.0)  # mismatch
    reg.resolve_from_event(order(OrderStatus.CANCELLED, "e1"), 1.0)  # early
    reg.resolve_from_event(order(OrderStatus.OPEN, "nobody"), 1.0)  # ignored

    assert reg.stats.as_dict() == {
        "events_seen": 9,
        "resolved_by_source": {"ws": 1, "http": 1, "rest": 1},
        "stale_ignored": 1,
        "duplicates_ignored": 1,
        "terminal_conflicts": 0,
        "account_mismatches": 1,
        "early_buffered": 1,
        "early_evicted": 0,
    }
    assert "events_seen" in repr(reg.stats)
    assert w1.done


def test_observe_never_raises_on_odd_input(reg: ConfirmationRegistry) -> None:
    reg.register("", 0.0)
    assert reg.observe(order("", ""), "ws", 0.0) is None
    assert reg.observe(order(OrderStatus.CANCELLED, "", account=""), "ws", 0.0) is not None


def test_many_pending_waiters_resolve_each_by_its_own_event() -> None:
    reg = ConfirmationRegistry()
    waiters = [reg.register(f"o{i}", 0.0, account_id=ACCOUNT)[0] for i in range(2_000)]
    for i in reversed(range(2_000)):
        assert reg.resolve_from_event(order(OrderStatus.CANCELLED, f"o{i}"), 1.0) is waiters[i]
    assert reg.pending_count == 0
    assert reg.pending_for_account(ACCOUNT) == []
