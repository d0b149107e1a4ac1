"""The confirmation registry: which orders someone waits on, and when each wait is over.

Sans-I/O: no sockets, no clock, no asyncio. The caller passes ``now`` in and
owns whatever it attaches to :attr:`Waiter.handle` (the async client keeps an
``asyncio.Future`` there and sets it when an ``observe`` call returns the
waiter). Every evidence source feeds the same :meth:`ConfirmationRegistry.observe`:

=================  ==========================================================
source             what it is
=================  ==========================================================
``"ws"``           an order-update event on ``tradingAccount:{id}``
``"http"``         the cancel's own reply (or the RPC reply with ``cancel_via="ws"``)
``"rest"``         a look-up of the order (gap reconcile, "cannot cancel", timeout)
=================  ==========================================================

The rules (DESIGN.md, "Confirmation rules"):

* A terminal status (``models.TERMINAL_STATUSES``) from any source resolves the
  waiter; non-terminal and unknown statuses only update ``last_known``.
* Terminal is sticky: once resolved, nothing changes the outcome.
* An observation older (by ``updatedAt``) than ``last_known`` never replaces it;
  one without ``updatedAt`` is unordered and replaces nothing.
* An observation whose account disagrees with the channel or with the waiter
  is dropped and counted (``stats.account_mismatches``).
* A terminal observation nobody waits for yet goes to a bounded early buffer
  (oldest evicted), so an event that beats ``register`` still confirms.
* With ``settled_capacity`` > 0, a terminal observation for an order whose
  waiter was resolved and has left (the event trailing the HTTP reply that
  already proved it) is a duplicate: the last ``settled_capacity`` ids settled
  that way are remembered and their trailing events dropped instead of
  buffered (keeping them would hold a whole TradeOrder per cancel for
  nothing). A later ``register`` of such an id starts afresh.
* Every call is O(1) in the number of pending waiters, except the snapshot
  calls :meth:`~ConfirmationRegistry.pending` and
  :meth:`~ConfirmationRegistry.pending_for_account` (O(result)).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Final, Literal

from ..models import TERMINAL_STATUSES, TradeOrder
from ._counters import Counters

__all__ = [
    "ConfirmationRegistry",
    "RegistryStats",
    "SourceName",
    "Waiter",
]

SourceName = Literal["ws", "http", "rest"]


_TERMINAL: Final = TERMINAL_STATUSES


class Waiter:
    """One pending order id, shared by every concurrent caller waiting on that order.

    ``outcome`` is the terminal order once resolved (sticky), ``done`` is True
    from then on, ``source`` what proved it, ``last_known`` the freshest state
    seen (by ``updatedAt``). Only the registry writes these.
    ``handle`` belongs to the I/O layer; the registry never reads or writes it.
    ``refs`` counts the callers sharing the waiter (see
    :meth:`ConfirmationRegistry.release`).
    """

    __slots__ = (
        "account_id",
        "done",
        "handle",
        "last_known",
        "last_updated",
        "order_id",
        "outcome",
        "refs",
        "registered_at",
        "resolved_at",
        "source",
    )

    order_id: str
    account_id: str | None
    last_known: TradeOrder | None
    last_updated: int | None
    outcome: TradeOrder | None
    done: bool
    source: SourceName | None
    registered_at: float
    resolved_at: float | None
    handle: object | None
    refs: int

    def __init__(self, order_id: str, registered_at: float, account_id: str | None = None) -> None:
        self.order_id = order_id
        self.account_id = account_id
        self.last_known = None
        self.last_updated = None
        self.outcome = None
        self.done = False
        self.source = None
        self.registered_at = registered_at
        self.resolved_at = None
        self.handle = None
        self.refs = 1

    def __repr__(self) -> str:
        state = self.outcome.status if self.outcome is not None else "pending"
        return (
            f"Waiter(order_id={self.order_id!r}, account_id={self.account_id!r}, "
            f"state={state}, source={self.source!r}, refs={self.refs})"
        )


class RegistryStats(Counters):
    """Counters of what the registry saw and did; cheap enough for the hot path.

    ``duplicates_ignored`` counts observations that changed nothing (a repeat
    of the known state, or anything arriving after the outcome);
    ``terminal_conflicts`` is the subset of those that named a *different*
    terminal status than the outcome (worth a warning: a source disagreed).
    """

    __slots__ = (
        "account_mismatches",
        "duplicates_ignored",
        "early_buffered",
        "early_evicted",
        "events_seen",
        "resolved_by_source",
        "stale_ignored",
        "terminal_conflicts",
    )

    def __init__(self) -> None:
        self.events_seen = 0
        self.resolved_by_source: dict[str, int] = {"ws": 0, "http": 0, "rest": 0}
        self.stale_ignored = 0
        self.duplicates_ignored = 0
        self.terminal_conflicts = 0
        self.account_mismatches = 0
        self.early_buffered = 0
        self.early_evicted = 0


class ConfirmationRegistry:
    """Order id -> waiter; decides from observed order states when a wait is over.

    Not thread-safe; meant to be driven from one event loop. Nothing here
    raises on bad evidence: a mismatched, stale or duplicate observation is
    dropped and counted in :attr:`stats`.
    """

    __slots__ = (
        "_by_account",
        "_early",
        "_early_capacity",
        "_pending",
        "_settled",
        "_settled_capacity",
        "_waiters",
        "stats",
    )

    def __init__(self, *, early_capacity: int = 10_000, settled_capacity: int = 0) -> None:
        """``early_capacity`` bounds the early buffer, ``settled_capacity`` the settled ids.

        Raises ``ValueError`` when either is negative.
        """
        if early_capacity < 0:
            raise ValueError("early_capacity must be >= 0")
        if settled_capacity < 0:
            raise ValueError("settled_capacity must be >= 0")
        self._early_capacity = early_capacity
        self._settled_capacity = settled_capacity
        # every registered waiter (pending or resolved) still held by a caller
        self._waiters: dict[str, Waiter] = {}
        # the unresolved subset, for REST reconciliation after a gap
        self._pending: dict[str, Waiter] = {}
        # account -> {order id: waiter}, unresolved waiters with a known account only
        self._by_account: dict[str, dict[str, Waiter]] = {}
        # order id -> (terminal order, source): evidence nobody waited for yet
        self._early: OrderedDict[str, tuple[TradeOrder, SourceName]] = OrderedDict()
        # order id -> terminal status, for waiters that were resolved and left: the
        # events trailing them are duplicates (keeping them would hold a whole
        # TradeOrder per cancel for nothing)
        self._settled: OrderedDict[str, str | None] = OrderedDict()
        self.stats = RegistryStats()

    # -- waiters ---------------------------------------------------------------

    def register(
        self, order_id: str, now: float, *, account_id: str | None = None
    ) -> tuple[Waiter, bool]:
        """Start waiting on ``order_id``; call it *before* sending the cancel.

        Returns ``(waiter, created)``. A waiter already held for that id is
        shared (``refs`` goes up, ``created`` is False), resolved or not: a
        terminal state is final. A new waiter picks up a terminal state from the
        early buffer, in which case it comes back already ``done`` with the
        buffered source. Pair every call with one :meth:`release`.
        """
        waiter = self._waiters.get(order_id)
        if waiter is not None:
            waiter.refs += 1
            if account_id is not None and waiter.account_id is None:
                self.learn_account(waiter, account_id)
            return waiter, False
        waiter = Waiter(order_id, now, account_id)
        self._waiters[order_id] = waiter
        if self._settled:
            self._settled.pop(order_id, None)
        early = self._early.pop(order_id, None) if self._early else None
        if early is not None:
            order, source = early
            if account_id is not None and order.trading_account_id != account_id:
                self.stats.account_mismatches += 1
            else:
                if account_id is None:
                    waiter.account_id = order.trading_account_id
                waiter.last_known = order
                waiter.last_updated = order.updated_at
                waiter.outcome = order
                waiter.done = True
                waiter.source = source
                waiter.resolved_at = now
                self.stats.resolved_by_source[source] += 1
                return waiter, True
        self._pending[order_id] = waiter
        if account_id is not None:
            bucket = self._by_account.get(account_id)
            if bucket is None:
                self._by_account[account_id] = bucket = {}
            bucket[order_id] = waiter
        return waiter, True

    def release(self, waiter: Waiter) -> None:
        """One caller stops waiting (done, timed out or cancelled).

        At the last release the waiter leaves the registry; a later
        :meth:`register` for that id starts afresh. Releasing a waiter that
        already left is a no-op.
        """
        if waiter.refs <= 0:
            return
        waiter.refs -= 1
        if waiter.refs:
            return
        order_id = waiter.order_id
        outcome = waiter.outcome
        if self._waiters.get(order_id) is waiter:
            del self._waiters[order_id]
            if outcome is not None and self._settled_capacity:
                settled = self._settled
                if len(settled) >= self._settled_capacity:
                    settled.popitem(last=False)
                settled[order_id] = outcome.status
        if outcome is None:  # a resolved waiter left the pending indexes when resolved
            self._unpend(waiter)

    def learn_account(self, waiter: Waiter, account_id: str) -> bool:
        """Bind a waiter to its account (learned from the HTTP answer).

        Returns True when the waiter is (now) bound to ``account_id``; False,
        counted as an account mismatch, when it is already bound to another.
        """
        current = waiter.account_id
        if current == account_id:
            return True
        if not account_id:
            return False  # a payload that did not name its account (optional in the RPC models)
        if current is not None:
            self.stats.account_mismatches += 1
            return False
        waiter.account_id = account_id
        if waiter.outcome is None and self._pending.get(waiter.order_id) is waiter:
            self._index(account_id, waiter)
        return True

    def get(self, order_id: str) -> Waiter | None:
        """The waiter held for ``order_id`` (pending or resolved), or None."""
        return self._waiters.get(order_id)

    def pending(self) -> Iterator[Waiter]:
        """The unresolved waiters, as a snapshot: safe to observe while iterating."""
        return iter(list(self._pending.values()))

    def pending_for_account(self, account_id: str) -> list[Waiter]:
        """The unresolved waiters bound to ``account_id``; O(their number)."""
        bucket = self._by_account.get(account_id)
        return list(bucket.values()) if bucket else []

    def pending_count_for_account(self, account_id: str) -> int:
        """How many unresolved waiters are bound to ``account_id``; O(1)."""
        bucket = self._by_account.get(account_id)
        return len(bucket) if bucket else 0

    def __len__(self) -> int:
        return len(self._waiters)

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._waiters

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    @property
    def early_count(self) -> int:
        """How many terminal states wait in the early buffer."""
        return len(self._early)

    # -- evidence --------------------------------------------------------------

    def observe(
        self,
        order: TradeOrder,
        source: SourceName,
        now: float,
        *,
        channel_account: str | None = None,
    ) -> Waiter | None:
        """Apply one observed order state; returns the waiter iff this call resolved it.

        ``channel_account`` is the account of the channel the event came on;
        an order whose ``tradingAccountId`` differs from it, or from the
        waiter's account, is dropped. An HTTP or REST answer binds a waiter
        without a known account to the order's account. Never raises.
        """
        # One of the two hot paths allowed above CC 15 (with
        # CentrifugoProtocol.receive_frame): every observation of every source
        # comes here, so the rules run inline, in the order of the docstring's
        # table, without a method call per rule.
        stats = self.stats
        stats.events_seen += 1
        account = order.trading_account_id
        if channel_account is not None and channel_account != account:
            stats.account_mismatches += 1
            return None
        order_id = order.trade_order_id
        waiter = self._waiters.get(order_id)
        status = order.status
        terminal = status in _TERMINAL
        if waiter is None:
            if terminal:
                settled = self._settled.get(order_id) if self._settled else None
                if settled is not None:
                    stats.duplicates_ignored += 1
                    if status != settled:
                        stats.terminal_conflicts += 1
                    return None
                self._buffer_early(order_id, order, source)
            return None
        known_account = waiter.account_id
        if known_account is None:
            if source != "ws":
                self.learn_account(waiter, account)
        elif known_account != account and account:  # ("": the payload did not name it)
            stats.account_mismatches += 1
            return None
        outcome = waiter.outcome
        if outcome is not None:
            stats.duplicates_ignored += 1
            if terminal and status != outcome.status:
                stats.terminal_conflicts += 1  # (a stale non-terminal one is no conflict)
            return None
        if terminal:
            # A terminal state is final at the exchange: no non-terminal state can
            # truly be newer, so a smaller updatedAt here is clock skew between
            # sources, not staleness. It resolves and becomes last_known.
            waiter.last_known = order
            waiter.last_updated = order.updated_at
            waiter.outcome = order
            waiter.done = True
            waiter.source = source
            waiter.resolved_at = now
            stats.resolved_by_source[source] += 1
            # leaves the pending indexes (as _unpend, inlined: once per cancel)
            pending = self._pending
            if pending.get(order_id) is waiter:
                del pending[order_id]
            account_id = waiter.account_id
            if account_id is not None:
                bucket = self._by_account.get(account_id)
                if bucket is not None and bucket.get(order_id) is waiter:
                    del bucket[order_id]
                    if not bucket:
                        del self._by_account[account_id]
            return waiter
        updated = order.updated_at
        last_updated = waiter.last_updated
        # (the waiter mirrors last_known.updated_at so the old order is not touched)
        if updated is None or (last_updated is not None and updated <= last_updated):
            last = waiter.last_known
            if last is None:
                waiter.last_known = order
            elif updated == last_updated and order == last:
                stats.duplicates_ignored += 1
            else:
                stats.stale_ignored += 1
            return None
        waiter.last_known = order
        waiter.last_updated = updated
        return None

    def resolve_from_event(
        self, order: TradeOrder, now: float, channel_account: str | None = None
    ) -> Waiter | None:
        """:meth:`observe` for an order-update event on ``tradingAccount:{channel_account}``."""
        return self.observe(order, "ws", now, channel_account=channel_account)

    def resolve_from_http(self, order: TradeOrder, now: float) -> Waiter | None:
        """:meth:`observe` for the order in the cancel's own reply."""
        return self.observe(order, "http", now)

    def resolve_from_rest(self, order: TradeOrder, now: float) -> Waiter | None:
        """:meth:`observe` for the order a REST look-up returned."""
        return self.observe(order, "rest", now)

    # -- internals -------------------------------------------------------------

    def _index(self, account_id: str, waiter: Waiter) -> None:
        bucket = self._by_account.get(account_id)
        if bucket is None:
            self._by_account[account_id] = bucket = {}
        bucket[waiter.order_id] = waiter

    def _unpend(self, waiter: Waiter) -> None:
        order_id = waiter.order_id
        if self._pending.get(order_id) is waiter:
            del self._pending[order_id]
        account_id = waiter.account_id
        if account_id is not None:
            bucket = self._by_account.get(account_id)
            if bucket is not None and bucket.get(order_id) is waiter:
                del bucket[order_id]
                if not bucket:
                    del self._by_account[account_id]

    def _buffer_early(self, order_id: str, order: TradeOrder, source: SourceName) -> None:
        early = self._early
        if order_id in early:
            # terminal is sticky here too: the first terminal state seen stays
            self.stats.duplicates_ignored += 1
            return
        if self._early_capacity == 0:
            self.stats.early_evicted += 1
            return
        if len(early) >= self._early_capacity:
            early.popitem(last=False)
            self.stats.early_evicted += 1
        early[order_id] = (order, source)
        self.stats.early_buffered += 1
