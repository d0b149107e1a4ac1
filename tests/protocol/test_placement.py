"""The placement registry's rules, one behaviour per test, and a state machine over random evidence."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from oracle import submit_verdict

from cadenza_async.models import OrderStatus, TradeOrder
from cadenza_async.protocol.placement import Placement, PlacementRegistry, verdict_of

ACCOUNT = "acct-1"
OTHER = "acct-2"
CID = "cid-1"


def order(
    status: str,
    order_id: str = "o1",
    *,
    client_order_id: str | None = CID,
    account: str = ACCOUNT,
    updated_at: int | None = 1_000,
    executed: str | None = None,
    reject_reason: str | None = None,
) -> TradeOrder:
    return TradeOrder(
        trade_order_id=order_id,
        trading_account_id=account,
        status=status,
        client_order_id=client_order_id,
        updated_at=updated_at,
        executed_quantity=executed,
        reject_reason=reject_reason,
    )


@pytest.fixture
def reg() -> PlacementRegistry:
    return PlacementRegistry()


def registered(reg: PlacementRegistry, cid: str = CID, account: str = ACCOUNT) -> Placement:
    placement, created = reg.register(cid, account, 0.0)
    assert created
    return placement


# -- what each status proves -------------------------------------------------------


@pytest.mark.parametrize(
    "status",
    [
        OrderStatus.ACCEPTED,
        OrderStatus.OPEN,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.FILLED,
        OrderStatus.REPLACED,
    ],
)
def test_statuses_that_show_the_exchange_holds_the_order_prove_acceptance(status: str) -> None:
    assert verdict_of(order(status)) is True


@pytest.mark.parametrize(
    "status", [OrderStatus.REJECTED, OrderStatus.EXPIRED, OrderStatus.CANCELLED, "REVOKED"]
)
def test_final_statuses_without_a_fill_prove_refusal(status: str) -> None:
    assert verdict_of(order(status)) is False
    assert verdict_of(order(status, executed="0")) is False


@pytest.mark.parametrize("status", [OrderStatus.CANCELLED, OrderStatus.EXPIRED])
def test_a_final_order_that_traded_was_accepted(status: str) -> None:
    assert verdict_of(order(status, executed="0.5")) is True


def test_a_rejection_is_a_refusal_even_with_an_odd_executed_quantity() -> None:
    assert verdict_of(order(OrderStatus.REJECTED, executed="1")) is False
    assert verdict_of(order(OrderStatus.CANCELLED, executed="not-a-number")) is False


@pytest.mark.parametrize(
    "status",
    [
        OrderStatus.CREATED,
        OrderStatus.PENDING,
        OrderStatus.SUBMITTED,
        OrderStatus.PENDING_CANCEL,
        OrderStatus.PENDING_REPLACE,
        OrderStatus.UNKNOWN,
        "SOMETHING_NEW",
    ],
)
def test_statuses_before_the_exchange_holds_the_order_prove_nothing(
    reg: PlacementRegistry, status: str
) -> None:
    assert verdict_of(order(status)) is None
    placement = registered(reg)
    assert reg.observe(order(status), "ws", 1.0) is None
    assert not placement.done
    assert placement.last_known is not None
    assert placement.last_known.status == status
    assert placement.order_id == "o1"  # learned even from a status that proves nothing


# -- matching ---------------------------------------------------------------------------


def test_an_event_before_the_reply_is_matched_by_client_order_id(reg: PlacementRegistry) -> None:
    placement = registered(reg)
    resolved = reg.resolve_from_event(order(OrderStatus.OPEN), 1.0, channel_account=ACCOUNT)
    assert resolved is placement
    assert placement.accepted is True
    assert placement.source == "ws"
    assert placement.order_id == "o1"
    assert reg.for_order("o1") is placement
    # the reply arriving afterwards is a duplicate
    assert reg.resolve_from_reply(placement, order(OrderStatus.SUBMITTED), 2.0) is None
    assert reg.stats.duplicates_ignored == 1


def test_once_bound_events_are_matched_by_trade_order_id_even_without_client_order_id(
    reg: PlacementRegistry,
) -> None:
    placement = registered(reg)
    assert reg.resolve_from_reply(placement, order(OrderStatus.SUBMITTED), 1.0) is None
    event = order(OrderStatus.OPEN, client_order_id=None, updated_at=2_000)
    assert reg.resolve_from_event(event, 2.0) is placement
    assert placement.source == "ws"


def test_the_reply_binds_the_order_even_when_it_does_not_echo_the_client_order_id(
    reg: PlacementRegistry,
) -> None:
    placement = registered(reg)
    reply = order(OrderStatus.OPEN, client_order_id=None)
    assert reg.resolve_from_reply(placement, reply, 1.0) is placement
    assert placement.source == "http"
    assert placement.order_id == "o1"


def test_a_second_order_under_the_same_client_order_id_is_never_taken_for_the_first(
    reg: PlacementRegistry,
) -> None:
    placement = registered(reg)
    reg.resolve_from_reply(placement, order(OrderStatus.SUBMITTED, "o1"), 1.0)
    assert reg.observe(order(OrderStatus.REJECTED, "o2"), "ws", 2.0) is None
    assert not placement.done
    assert reg.stats.foreign_orders == 1
    assert reg.resolve_from_reply(placement, order(OrderStatus.OPEN, "o3"), 3.0) is None
    assert reg.stats.foreign_orders == 2


def test_events_of_other_orders_and_unknown_client_ids_are_dropped(
    reg: PlacementRegistry,
) -> None:
    placement = registered(reg)
    assert reg.observe(order(OrderStatus.OPEN, "x", client_order_id=None), "ws", 1.0) is None
    assert reg.observe(order(OrderStatus.OPEN, "y", client_order_id="other"), "ws", 1.0) is None
    assert not placement.done
    assert reg.stats.unmatched == 2


def test_an_event_on_another_accounts_channel_is_dropped(reg: PlacementRegistry) -> None:
    placement = registered(reg)
    assert reg.resolve_from_event(order(OrderStatus.OPEN), 1.0, channel_account=OTHER) is None
    assert reg.observe(order(OrderStatus.OPEN, account=OTHER), "rest", 1.0) is None
    assert not placement.done
    assert reg.stats.account_mismatches == 1  # the second one simply matches nothing
    reg.resolve_from_reply(placement, order(OrderStatus.SUBMITTED), 1.0)
    assert reg.observe(order(OrderStatus.OPEN, account=OTHER), "ws", 2.0) is None
    assert reg.resolve_from_reply(placement, order(OrderStatus.OPEN, account=OTHER), 2.0) is None
    assert reg.stats.account_mismatches == 3


def test_client_order_ids_are_per_account(reg: PlacementRegistry) -> None:
    mine = registered(reg, account=ACCOUNT)
    theirs = registered(reg, account=OTHER)
    assert reg.observe(order(OrderStatus.OPEN, "o2", account=OTHER), "ws", 1.0) is theirs
    assert not mine.done


# -- stickiness and staleness ---------------------------------------------------------


def test_the_verdict_is_sticky(reg: PlacementRegistry) -> None:
    placement = registered(reg)
    assert reg.observe(order(OrderStatus.REJECTED, reject_reason="band"), "http", 1.0)
    assert reg.observe(order(OrderStatus.OPEN, updated_at=5_000), "ws", 2.0) is None
    assert placement.accepted is False
    assert placement.outcome is not None
    assert placement.outcome.reject_reason == "band"
    assert reg.stats.verdict_conflicts == 1


def test_an_older_non_final_state_never_replaces_a_newer_one(reg: PlacementRegistry) -> None:
    placement = registered(reg)
    reg.observe(order(OrderStatus.SUBMITTED, updated_at=2_000), "ws", 1.0)
    reg.observe(order(OrderStatus.CREATED, updated_at=1_000), "rest", 2.0)
    assert placement.last_known is not None
    assert placement.last_known.status == OrderStatus.SUBMITTED
    assert reg.stats.stale_ignored == 1
    reg.observe(order(OrderStatus.SUBMITTED, updated_at=2_000), "ws", 3.0)
    assert reg.stats.duplicates_ignored == 1


def test_a_verdict_with_an_older_timestamp_still_resolves(reg: PlacementRegistry) -> None:
    placement = registered(reg)
    reg.observe(order(OrderStatus.SUBMITTED, updated_at=2_000), "ws", 1.0)
    assert reg.observe(order(OrderStatus.OPEN, updated_at=1_500), "rest", 2.0) is placement
    assert placement.accepted is True
    assert placement.resolved_at == 2.0


# -- life of a placement ----------------------------------------------------------------


def test_concurrent_callers_of_one_client_order_id_share_the_placement(
    reg: PlacementRegistry,
) -> None:
    first = registered(reg)
    second, created = reg.register(CID, ACCOUNT, 1.0)
    assert second is first
    assert not created
    assert first.refs == 2
    reg.release(first)
    assert reg.get(CID, ACCOUNT) is first
    reg.release(first)
    assert reg.get(CID, ACCOUNT) is None
    reg.release(first)  # a no-op
    assert len(reg) == 0


def test_a_released_placement_leaves_every_index(reg: PlacementRegistry) -> None:
    placement = registered(reg)
    reg.resolve_from_reply(placement, order(OrderStatus.SUBMITTED), 1.0)
    assert reg.pending_count == 1
    assert reg.pending_for_account(ACCOUNT) == [placement]
    reg.release(placement)
    assert reg.pending_count == 0
    assert reg.pending_for_account(ACCOUNT) == []
    assert reg.for_order("o1") is None
    # a trailing event after the caller left is simply unmatched
    assert reg.observe(order(OrderStatus.OPEN), "ws", 2.0) is None
    assert list(reg.pending()) == []


def test_a_resolved_placement_leaves_the_pending_indexes_at_once(reg: PlacementRegistry) -> None:
    placement = registered(reg)
    reg.observe(order(OrderStatus.OPEN), "rest", 1.0)
    assert reg.pending_count == 0
    assert reg.pending_for_account(ACCOUNT) == []
    assert reg.get(CID, ACCOUNT) is placement  # still held by its caller
    assert reg.stats.resolved_by_source == {"ws": 0, "http": 0, "rest": 1}
    assert "rest" in repr(reg.stats)
    assert "OPEN" in repr(placement)


def test_bind_refuses_an_order_id_that_belongs_to_another_placement(
    reg: PlacementRegistry,
) -> None:
    first = registered(reg, "a")
    second = registered(reg, "b")
    assert reg.bind(first, "o1")
    assert reg.bind(first, "o1")  # again: the same
    assert not reg.bind(second, "o1")
    assert second.order_id is None


# -- random evidence ----------------------------------------------------------------------

STATUSES = [
    OrderStatus.CREATED,
    OrderStatus.SUBMITTED,
    OrderStatus.OPEN,
    OrderStatus.PARTIALLY_FILLED,
    OrderStatus.FILLED,
    OrderStatus.REJECTED,
    OrderStatus.CANCELLED,
    OrderStatus.PENDING_CANCEL,
    "SOMETHING_NEW",
]


class Evidence(RuleBasedStateMachine):
    """Submits, each answered by random evidence from random sources, in any order.

    The truth per submit is the sequence of states the exchange gave its one
    order; every source reports one of those states (or, once the order is
    known, a second order under the same key, or another account's). Invariants: a resolved placement's
    outcome is a state its own order really had, with a verdict matching that
    state; nothing foreign ever resolves it; the indexes stay consistent.
    """

    def __init__(self) -> None:
        super().__init__()
        self.reg = PlacementRegistry()
        self.truth: dict[str, list[TradeOrder]] = {}
        self.placements: dict[str, Placement] = {}
        self.clock = 0
        self.now = 0.0

    @rule(n=st.integers(0, 5))
    def submit(self, n: int) -> None:
        cid = f"cid-{n}"
        if cid in self.placements:
            return
        self.placements[cid] = registered(self.reg, cid)
        self.truth[cid] = []

    @precondition(lambda self: self.placements)
    @rule(pick=st.integers(0, 100), status=st.sampled_from(STATUSES))
    def exchange_moves(self, pick: int, status: str) -> None:
        cid = sorted(self.placements)[pick % len(self.placements)]
        self.clock += 1
        self.truth[cid].append(
            order(status, f"order-{cid}", client_order_id=cid, updated_at=self.clock)
        )

    @precondition(lambda self: any(self.truth.values()))
    @rule(
        pick=st.integers(0, 100),
        which=st.integers(0, 100),
        source=st.sampled_from(["ws", "http", "rest", "reply"]),
        echo=st.booleans(),
    )
    def report(self, pick: int, which: int, source: str, echo: bool) -> None:
        known = sorted(cid for cid, states in self.truth.items() if states)
        cid = known[pick % len(known)]
        state = self.truth[cid][which % len(self.truth[cid])]
        if not echo:
            state = TradeOrder(
                trade_order_id=state.trade_order_id,
                trading_account_id=state.trading_account_id,
                status=state.status,
                updated_at=state.updated_at,
            )
        self.now += 1.0
        placement = self.placements[cid]
        if source == "reply":
            self.reg.resolve_from_reply(placement, state, self.now)
        else:
            self.reg.observe(state, source, self.now)  # type: ignore[arg-type]

    @precondition(lambda self: self.placements)
    @rule(pick=st.integers(0, 100), status=st.sampled_from(STATUSES), other_account=st.booleans())
    def foreign(self, pick: int, status: str, other_account: bool) -> None:
        cid = sorted(self.placements)[pick % len(self.placements)]
        if not other_account and self.placements[cid].order_id is None:
            # Before any answer, the first order on the account under this key *is* the
            # submit's (the API places one order per key): a second one comes after.
            return
        account = OTHER if other_account else ACCOUNT
        self.reg.observe(
            order(status, f"foreign-{cid}", client_order_id=cid, account=account), "ws", self.now
        )

    @invariant()
    def outcomes_are_true(self) -> None:
        for cid, placement in self.placements.items():
            real = {(o.status, o.updated_at) for o in self.truth[cid]}
            if placement.order_id is not None:
                assert placement.order_id == f"order-{cid}"
            if placement.done:
                outcome = placement.outcome
                assert outcome is not None
                assert outcome.trade_order_id == f"order-{cid}"
                assert (outcome.status, outcome.updated_at) in real
                assert placement.accepted is submit_verdict(
                    outcome.status, outcome.executed_quantity
                )
                assert placement.accepted is not None

    @invariant()
    def indexes_agree(self) -> None:
        pending = {p.client_order_id for p in self.reg.pending()}
        assert pending == {cid for cid, p in self.placements.items() if not p.done}
        assert self.reg.pending_count == len(pending)
        assert {p.client_order_id for p in self.reg.pending_for_account(ACCOUNT)} == pending


TestEvidence = Evidence.TestCase
TestEvidence.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=list(HealthCheck)
)
