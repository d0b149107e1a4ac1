"""Random interleavings of cancels, replies, events, reconnects and timeouts over the registry.

The test keeps the exchange's true order states, the event log it published
and what each source reported, so that the invariants say something real:
every cancel ends in exactly one outcome, that outcome is terminal, it is an
order a source actually reported, it agrees with the exchange (never FILLED
when the exchange cancelled it, or the reverse), and after a reconnect
without recovery nothing the exchange finished stays pending.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import msgspec
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from oracle import is_final

from cadenza_async.models import OrderStatus, TradeOrder
from cadenza_async.protocol.confirm import ConfirmationRegistry, Waiter

A = "acct-a"
B = "acct-b"
EVIL = "acct-evil"
ORDER_ACCOUNTS = {"o0": A, "o1": A, "o2": B}
ORDER_IDS = sorted(ORDER_ACCOUNTS)
CANCELLABLE = {
    OrderStatus.OPEN,
    OrderStatus.PARTIALLY_FILLED,
    "SOMETHING_NEW",
}

order_ids = st.sampled_from(ORDER_IDS)
picks = st.integers(min_value=0, max_value=1_000)


@dataclass
class Caller:
    """One cancel_and_confirm call in flight."""

    order_id: str
    waiter: Waiter
    outcome: TradeOrder | None = None


class Exchange:
    """The exchange's truth: order states, a clock, and the published event log."""

    def __init__(self) -> None:
        self.clock = 0
        self.state = {
            oid: TradeOrder(
                trade_order_id=oid, trading_account_id=acct, status=OrderStatus.OPEN, updated_at=0
            )
            for oid, acct in ORDER_ACCOUNTS.items()
        }
        self.log: list[TradeOrder] = []

    def move(self, oid: str, status: str) -> TradeOrder:
        self.clock += 1
        new = msgspec.structs.replace(self.state[oid], status=status, updated_at=self.clock)
        self.state[oid] = new
        self.log.append(new)
        return new

    def receive_cancel(self, oid: str, immediate: bool) -> TradeOrder | None:
        """Apply a cancel request; the reply's order, or None for "cannot cancel"."""
        current = self.state[oid]
        if is_final(current.status):
            return None
        if current.status == OrderStatus.PENDING_CANCEL:
            return current
        return self.move(oid, OrderStatus.CANCELLED if immediate else OrderStatus.PENDING_CANCEL)


class RegistryMachine(RuleBasedStateMachine):
    @initialize(capacity=st.integers(min_value=0, max_value=2))
    def setup(self, capacity: int) -> None:
        self.reg = ConfirmationRegistry(early_capacity=capacity)
        self.capacity = capacity
        # what the early buffer must hold: order id -> source, oldest first
        self.early_model: OrderedDict[str, str] = OrderedDict()
        self.exchange = Exchange()
        self.now = 0.0
        self.callers: list[Caller] = []
        self.finished: list[Caller] = []
        # ids of every order object a source truthfully reported (kept alive in `evidence`)
        self.evidence: list[TradeOrder] = []
        self.evidence_ids: set[int] = set()
        self.delivered: set[int] = set()  # log positions the stream already delivered
        self.outcome_statuses: dict[str, set[str]] = {oid: set() for oid in ORDER_IDS}
        # newest updatedAt reported to each pending waiter (by id(waiter))
        self.newest_seen: dict[int, int] = {}

    # -- helpers -----------------------------------------------------------------

    def tick(self) -> float:
        self.now += 1.0
        return self.now

    def report(self, order: TradeOrder, source: str, channel: str | None = None) -> None:
        """A truthful source reports ``order``; feed it to the registry."""
        self.evidence.append(order)
        self.evidence_ids.add(id(order))
        oid = order.trade_order_id
        if (
            is_final(order.status)
            and not any(c.order_id == oid for c in self.callers)
            and oid not in self.early_model
            and self.capacity
        ):
            if len(self.early_model) == self.capacity:
                self.early_model.popitem(last=False)
            self.early_model[oid] = source
        before = self.reg.get(oid)
        was_done = before is not None and before.done
        if before is not None and not was_done and order.updated_at is not None:
            key = id(before)
            self.newest_seen[key] = max(self.newest_seen.get(key, -1), order.updated_at)
        resolved = self.reg.observe(order, source, self.tick(), channel_account=channel)  # type: ignore[arg-type]
        if resolved is not None:
            assert resolved is before
            assert not was_done  # a waiter resolves once
            assert resolved.outcome is order
            assert resolved.source == source
        self.collect()

    def deliver(self, position: int) -> None:
        order = self.exchange.log[position]
        self.delivered.add(position)
        self.report(order, "ws", channel=order.trading_account_id)

    def rest_lookup(self, oid: str) -> None:
        self.report(self.exchange.state[oid], "rest")

    def collect(self) -> None:
        """Each caller takes the outcome the first time its waiter is done."""
        for caller in self.callers:
            outcome = caller.waiter.outcome
            if outcome is not None and caller.outcome is None:
                caller.outcome = outcome
                self.outcome_statuses[caller.order_id].add(outcome.status)

    def pick(self, i: int) -> Caller:
        return self.callers[i % len(self.callers)]

    def reconcile_everything_by_rest(self) -> None:
        for waiter in self.reg.pending():
            self.rest_lookup(waiter.order_id)

    # -- the client's side -------------------------------------------------------

    @rule(oid=order_ids, knows_account=st.booleans())
    def start_cancel(self, oid: str, knows_account: bool) -> None:
        """register() before the cancel goes out."""
        sharing = [c for c in self.callers if c.order_id == oid]
        account = ORDER_ACCOUNTS[oid] if knows_account else None
        waiter, created = self.reg.register(oid, self.tick(), account_id=account)
        if sharing:
            assert not created
            assert waiter is sharing[0].waiter
        else:
            assert created
            # a terminal state that beat the register resolves it, if still buffered
            early_source = self.early_model.pop(oid, None)
            assert waiter.done == (early_source is not None)
            assert waiter.source == early_source
        assert self.reg.early_count == len(self.early_model)
        self.callers.append(Caller(oid, waiter))
        self.collect()

    @precondition(lambda self: self.callers)
    @rule(i=picks, immediate=st.booleans())
    def http_reply(self, i: int, immediate: bool) -> None:
        """The cancel reaches the exchange; its reply (PENDING_CANCEL or terminal) is evidence."""
        caller = self.pick(i)
        reply = self.exchange.receive_cancel(caller.order_id, immediate)
        if reply is None:
            # "Cannot cancel": look the order up (rule 3)
            self.rest_lookup(caller.order_id)
        else:
            self.report(reply, "http")
        assert caller.waiter.account_id == ORDER_ACCOUNTS[caller.order_id]

    @precondition(lambda self: self.callers)
    @rule(i=picks, final_lookup=st.booleans())
    def timeout(self, i: int, final_lookup: bool) -> None:
        """A caller gives up: optionally one last REST look-up (rule 6), then release."""
        caller = self.pick(i)
        if final_lookup:
            self.rest_lookup(caller.order_id)
        refs = caller.waiter.refs
        self.reg.release(caller.waiter)
        assert caller.waiter.refs == refs - 1
        self.callers.remove(caller)
        self.finished.append(caller)

    # -- the exchange ------------------------------------------------------------

    @rule(oid=order_ids)
    def exchange_processes_cancel(self, oid: str) -> None:
        if self.exchange.state[oid].status == OrderStatus.PENDING_CANCEL:
            self.exchange.move(oid, OrderStatus.CANCELLED)

    @rule(oid=order_ids, full=st.booleans())
    def exchange_fills(self, oid: str, full: bool) -> None:
        """A fill races the cancel (PENDING_CANCEL can still fill)."""
        status = self.exchange.state[oid].status
        if status in CANCELLABLE or status == OrderStatus.PENDING_CANCEL:
            if full:
                self.exchange.move(oid, OrderStatus.FILLED)
            elif status != OrderStatus.PENDING_CANCEL:
                self.exchange.move(oid, OrderStatus.PARTIALLY_FILLED)

    @rule(oid=order_ids)
    def exchange_sends_unknown_status(self, oid: str) -> None:
        if self.exchange.state[oid].status in CANCELLABLE:
            self.exchange.move(oid, "SOMETHING_NEW")

    # -- the stream --------------------------------------------------------------

    @precondition(lambda self: len(self.delivered) < len(self.exchange.log))
    @rule(i=picks)
    def ws_event(self, i: int) -> None:
        """Any undelivered event, so events can overtake each other (stale updatedAt)."""
        waiting = [p for p in range(len(self.exchange.log)) if p not in self.delivered]
        self.deliver(waiting[i % len(waiting)])

    @precondition(lambda self: self.delivered)
    @rule(i=picks)
    def ws_duplicate(self, i: int) -> None:
        seen = sorted(self.delivered)
        self.deliver(seen[i % len(seen)])

    @precondition(lambda self: self.callers)
    @rule(i=picks, status=st.sampled_from([OrderStatus.CANCELLED, OrderStatus.FILLED]))
    def ws_event_for_another_account(self, i: int, status: str) -> None:
        """A forged or misrouted event: it must resolve nothing (not evidence)."""
        caller = self.pick(i)
        oid = caller.order_id
        fake = TradeOrder(
            trade_order_id=oid, trading_account_id=EVIL, status=status, updated_at=10**9
        )
        # The waiter knows its account: a consistent channel for the wrong account.
        # It does not: the payload disagrees with the channel it came on.
        channel = EVIL if caller.waiter.account_id is not None else ORDER_ACCOUNTS[oid]
        mismatches = self.reg.stats.account_mismatches
        assert self.reg.observe(fake, "ws", self.tick(), channel_account=channel) is None
        assert self.reg.stats.account_mismatches == mismatches + 1
        self.collect()

    @rule(start=picks)
    def reconnect_with_recovery(self, start: int) -> None:
        """Recovery replays the log from some position at or before the first missed one."""
        log = self.exchange.log
        if not log:
            return
        missed = [p for p in range(len(log)) if p not in self.delivered]
        first_missed = missed[0] if missed else len(log)
        begin = start % (first_missed + 1)
        for position in range(begin, len(log)):
            self.deliver(position)

    @rule()
    def reconnect_without_recovery(self) -> None:
        """The history is gone: missed events are lost; every pending waiter is looked up."""
        self.delivered.update(range(len(self.exchange.log)))
        self.reconcile_everything_by_rest()
        for waiter in self.reg.pending():
            assert not is_final(self.exchange.state[waiter.order_id].status)

    # -- invariants --------------------------------------------------------------

    @invariant()
    def outcomes_are_terminal_backed_by_evidence_and_true(self) -> None:
        for caller in self.callers:
            outcome = caller.waiter.outcome
            if outcome is None:
                assert caller.waiter.source is None
                assert not caller.waiter.done
                continue
            assert caller.waiter.done
            assert caller.waiter.source in ("ws", "http", "rest")
            assert is_final(outcome.status)
            assert id(outcome) in self.evidence_ids
            assert outcome.trade_order_id == caller.order_id
            assert outcome.trading_account_id == ORDER_ACCOUNTS[caller.order_id]
            # terminal is final at the exchange, so a true outcome is its current state
            assert outcome.status == self.exchange.state[caller.order_id].status

    @invariant()
    def last_known_is_the_newest_state_reported(self) -> None:
        for caller in self.callers:
            waiter = caller.waiter
            last = waiter.last_known
            if waiter.done:
                assert last is waiter.outcome
            elif id(waiter) in self.newest_seen:
                assert last is not None
                assert id(last) in self.evidence_ids
                assert last.updated_at == self.newest_seen[id(waiter)]
            else:
                assert last is None

    @invariant()
    def each_cancel_has_at_most_one_outcome(self) -> None:
        for caller in self.callers + self.finished:
            if caller.outcome is not None:
                assert caller.waiter.outcome is caller.outcome
        for statuses in self.outcome_statuses.values():
            assert len(statuses) <= 1  # never both FILLED and CANCELLED

    @invariant()
    def registry_matches_the_callers(self) -> None:
        by_order: dict[str, list[Caller]] = {}
        for caller in self.callers:
            by_order.setdefault(caller.order_id, []).append(caller)
        assert len(self.reg) == len(by_order)
        for oid, sharing in by_order.items():
            waiter = self.reg.get(oid)
            assert waiter is not None
            assert all(c.waiter is waiter for c in sharing)
            assert waiter.refs == len(sharing)
        for oid in ORDER_IDS:
            if oid not in by_order:
                assert self.reg.get(oid) is None
        expected = {id(c.waiter) for c in self.callers if not c.waiter.done}
        assert {id(w) for w in self.reg.pending()} == expected
        assert self.reg.pending_count == len(expected)
        for account in (A, B, EVIL):
            indexed = {id(w) for w in self.reg.pending_for_account(account)}
            assert indexed == {
                id(c.waiter)
                for c in self.callers
                if not c.waiter.done and c.waiter.account_id == account
            }

    def teardown(self) -> None:
        """Let everything settle: every cancel still waiting must end with the exchange's truth."""
        if not hasattr(self, "reg"):
            return
        for caller in list(self.callers):
            reply = self.exchange.receive_cancel(caller.order_id, immediate=False)
            if reply is None:
                self.rest_lookup(caller.order_id)
            else:
                self.report(reply, "http")
        for oid in ORDER_IDS:
            self.exchange_processes_cancel(oid)
        for position in range(len(self.exchange.log)):
            if position not in self.delivered:
                self.deliver(position)
        for caller in self.callers:
            assert caller.outcome is not None
            assert caller.outcome.status == self.exchange.state[caller.order_id].status
            self.reg.release(caller.waiter)
        assert len(self.reg) == 0
        assert list(self.reg.pending()) == []
        self.each_cancel_has_at_most_one_outcome()


RegistryMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_confirmation_registry_state_machine = RegistryMachine.TestCase
