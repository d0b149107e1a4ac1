"""The placement registry: which submits someone waits on, and when each wait is over.

Sans-I/O: no sockets, no clock, no asyncio. The caller passes ``now`` in and
owns whatever it attaches to :attr:`Placement.handle`. A submit is known by
its ``clientOrderId`` (the API's idempotency key, chosen before sending) and,
once an answer names it, by its ``tradeOrderId`` too: an event that beats the
submit's reply is matched by ``clientOrderId``, and from then on both keys
lead to the same placement. Every evidence source feeds
:meth:`PlacementRegistry.observe`:

=================  ==========================================================
source             what it is
=================  ==========================================================
``"ws"``           an order-update event on ``tradingAccount:{id}``
``"http"``         the submit's own reply (or the RPC reply with ``submit_via="ws"``)
``"rest"``         a look-up of the order (by id, or found by ``clientOrderId``)
=================  ==========================================================

What a status proves (:func:`verdict_of`):

=====================================  =======================================
status                                 verdict
=====================================  =======================================
ACCEPTED, OPEN, PARTIALLY_FILLED,      accepted (``True``): the exchange holds
FILLED, REPLACED                       (or held) the order
REJECTED                               refused (``False``)
CANCELLED, EXPIRED, REVOKED            refused (``False``): dropped before it
                                       was accepted; accepted (``True``) when
                                       ``executedQuantity`` > 0 (it traded)
CREATED, PENDING, SUBMITTED,           nothing yet (``None``): only
PENDING_CANCEL, PENDING_REPLACE,       ``last_known`` moves
UNKNOWN, any status not known here
=====================================  =======================================

The rules, as :class:`~cadenza_async.protocol.confirm.ConfirmationRegistry`'s:

* A verdict from any source resolves the placement; the outcome is sticky.
* An observation older (by ``updatedAt``) than ``last_known`` never replaces
  it; one without ``updatedAt`` is unordered and replaces nothing.
* An observation whose account disagrees with the channel or with the
  placement is dropped (``stats.account_mismatches``).
* An order that carries a placement's ``clientOrderId`` but another
  ``tradeOrderId`` than the one already bound is a second order under one
  idempotency key: it is dropped and counted (``stats.foreign_orders``),
  never taken for the first.
* Evidence nobody waits for is dropped: a submit registers before sending,
  so nothing can beat registration, and a trailing event after the
  placement left is a duplicate.
* Every call is O(1) in the number of pending placements, except
  :meth:`~PlacementRegistry.pending` and
  :meth:`~PlacementRegistry.pending_for_account` (O(result)).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import Final

from ..models import OrderStatus, TradeOrder
from ._counters import Counters
from .confirm import SourceName

__all__ = [
    "Placement",
    "PlacementRegistry",
    "PlacementStats",
    "verdict_of",
]

_ACCEPTED: Final = frozenset(
    {
        OrderStatus.ACCEPTED,
        OrderStatus.OPEN,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.FILLED,
        OrderStatus.REPLACED,
    }
)
_REFUSED: Final = frozenset({OrderStatus.REJECTED})
#: Final without having been seen accepted: refused, unless it traded first.
_DROPPED: Final = frozenset({OrderStatus.CANCELLED, OrderStatus.EXPIRED, OrderStatus.REVOKED})


def _traded(order: TradeOrder) -> bool:
    executed = order.executed_quantity
    if not executed:
        return False
    try:
        return Decimal(executed) > 0
    except InvalidOperation:
        return False


def verdict_of(order: TradeOrder) -> bool | None:
    """What ``order``'s status proves about its submit: accepted, refused, or nothing yet (None)."""
    status = order.status
    if status in _ACCEPTED:
        return True
    if status in _REFUSED:
        return False
    if status in _DROPPED:
        return _traded(order)
    return None


class Placement:
    """One pending submit, shared by every concurrent caller with the same ``clientOrderId``.

    ``order_id`` is the ``tradeOrderId`` once an answer named it. ``outcome``
    is the order that proved the verdict (sticky) and ``accepted`` the
    verdict; ``done`` is True from then on, ``source`` says what proved it,
    ``last_known`` is the freshest state seen. Only the registry writes these.
    ``handle`` belongs to the I/O layer. ``refs`` counts the callers.
    """

    __slots__ = (
        "accepted",
        "account_id",
        "client_order_id",
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

    client_order_id: str
    account_id: str
    order_id: str | None
    last_known: TradeOrder | None
    last_updated: int | None
    outcome: TradeOrder | None
    accepted: bool | None
    done: bool
    source: SourceName | None
    registered_at: float
    resolved_at: float | None
    handle: object | None
    refs: int

    def __init__(self, client_order_id: str, account_id: str, registered_at: float) -> None:
        self.client_order_id = client_order_id
        self.account_id = account_id
        self.order_id = None
        self.last_known = None
        self.last_updated = None
        self.outcome = None
        self.accepted = None
        self.done = False
        self.source = None
        self.registered_at = registered_at
        self.resolved_at = None
        self.handle = None
        self.refs = 1

    def __repr__(self) -> str:
        state = "pending" if self.outcome is None else self.outcome.status
        return (
            f"Placement(client_order_id={self.client_order_id!r}, order_id={self.order_id!r}, "
            f"state={state}, accepted={self.accepted}, source={self.source!r}, refs={self.refs})"
        )


class PlacementStats(Counters):
    """Counters of what the registry saw and did."""

    __slots__ = (
        "account_mismatches",
        "duplicates_ignored",
        "events_seen",
        "foreign_orders",
        "resolved_by_source",
        "stale_ignored",
        "unmatched",
        "verdict_conflicts",
    )

    def __init__(self) -> None:
        self.events_seen = 0
        self.resolved_by_source: dict[str, int] = {"ws": 0, "http": 0, "rest": 0}
        self.stale_ignored = 0
        self.duplicates_ignored = 0
        self.verdict_conflicts = 0
        self.account_mismatches = 0
        self.foreign_orders = 0
        self.unmatched = 0


_Key = tuple[str, str]  # (trading account id, clientOrderId)


class PlacementRegistry:
    """(account, clientOrderId) and tradeOrderId -> placement; decides when a submit is proven.

    Not thread-safe; meant to be driven from one event loop. Nothing here
    raises on bad evidence: it is dropped and counted in :attr:`stats`.
    """

    __slots__ = ("_by_account", "_by_client", "_by_order", "_pending", "stats")

    def __init__(self) -> None:
        # every registered placement (pending or resolved) still held by a caller
        self._by_client: dict[_Key, Placement] = {}
        # the same placements, by tradeOrderId once known
        self._by_order: dict[str, Placement] = {}
        # the unresolved subset
        self._pending: dict[_Key, Placement] = {}
        # account -> {key: placement}, the unresolved ones
        self._by_account: dict[str, dict[_Key, Placement]] = {}
        self.stats = PlacementStats()

    # -- placements ------------------------------------------------------------

    def register(self, client_order_id: str, account_id: str, now: float) -> tuple[Placement, bool]:
        """Start waiting on the submit of ``client_order_id``; call it *before* sending.

        Returns ``(placement, created)``: a placement already held for that
        account and id is shared (``refs`` goes up, ``created`` is False),
        resolved or not. Pair every call with one :meth:`release`.
        """
        key = (account_id, client_order_id)
        placement = self._by_client.get(key)
        if placement is not None:
            placement.refs += 1
            return placement, False
        placement = Placement(client_order_id, account_id, now)
        self._by_client[key] = placement
        self._pending[key] = placement
        bucket = self._by_account.get(account_id)
        if bucket is None:
            self._by_account[account_id] = bucket = {}
        bucket[key] = placement
        return placement, True

    def release(self, placement: Placement) -> None:
        """One caller stops waiting; at the last release the placement leaves every index.

        Releasing a placement that already left is a no-op.
        """
        if placement.refs <= 0:
            return
        placement.refs -= 1
        if placement.refs:
            return
        key = (placement.account_id, placement.client_order_id)
        if self._by_client.get(key) is placement:
            del self._by_client[key]
        order_id = placement.order_id
        if order_id is not None and self._by_order.get(order_id) is placement:
            del self._by_order[order_id]
        self._unpend(placement)

    def get(self, client_order_id: str, account_id: str) -> Placement | None:
        """The placement held for that account and ``clientOrderId``, or None."""
        return self._by_client.get((account_id, client_order_id))

    def for_order(self, order_id: str) -> Placement | None:
        """The placement whose submit placed ``order_id`` (once known), or None."""
        return self._by_order.get(order_id)

    def bind(self, placement: Placement, order_id: str) -> bool:
        """Record that ``placement``'s submit placed ``order_id`` (the reply said so).

        Returns False, counted as a foreign order, when it is already bound
        to another order id, or ``order_id`` belongs to another placement.
        """
        current = placement.order_id
        if current == order_id:
            return True
        holder = self._by_order.get(order_id)
        if current is not None or (holder is not None and holder is not placement):
            self.stats.foreign_orders += 1
            return False
        placement.order_id = order_id
        if placement.refs > 0:
            self._by_order[order_id] = placement
        return True

    def pending(self) -> Iterator[Placement]:
        """The unresolved placements, as a snapshot."""
        return iter(list(self._pending.values()))

    def pending_for_account(self, account_id: str) -> list[Placement]:
        """The unresolved placements of ``account_id``; O(their number)."""
        bucket = self._by_account.get(account_id)
        return list(bucket.values()) if bucket else []

    def pending_count_for_account(self, account_id: str) -> int:
        """How many of the account's placements wait for a verdict (O(1))."""
        return len(self._by_account.get(account_id, ()))

    def __len__(self) -> int:
        return len(self._by_client)

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    # -- evidence --------------------------------------------------------------

    def observe(
        self,
        order: TradeOrder,
        source: SourceName,
        now: float,
        *,
        channel_account: str | None = None,
    ) -> Placement | None:
        """Apply one observed order state; returns the placement iff this call resolved it.

        The order is matched by ``tradeOrderId``, else by its account and
        ``clientOrderId`` (binding the placement to its ``tradeOrderId``).
        Never raises.
        """
        stats = self.stats
        stats.events_seen += 1
        account = order.trading_account_id
        if channel_account is not None and channel_account != account:
            stats.account_mismatches += 1
            return None
        placement = self._by_order.get(order.trade_order_id)
        if placement is None:
            client_id = order.client_order_id
            placement = None if client_id is None else self._by_client.get((account, client_id))
            if placement is None:
                stats.unmatched += 1
                return None
            if not self.bind(placement, order.trade_order_id):
                return None
        elif placement.account_id != account:
            stats.account_mismatches += 1
            return None
        return self._apply(placement, order, source, now)

    def resolve_from_reply(
        self, placement: Placement, order: TradeOrder, now: float
    ) -> Placement | None:
        """:meth:`observe` for the submit's own reply: it names the placement's order for sure.

        A reply for another account, or naming another order than the one
        already bound, is dropped and counted.
        """
        self.stats.events_seen += 1
        if order.trading_account_id != placement.account_id:
            self.stats.account_mismatches += 1
            return None
        if not self.bind(placement, order.trade_order_id):
            return None
        return self._apply(placement, order, "http", now)

    def resolve_from_event(
        self, order: TradeOrder, now: float, channel_account: str | None = None
    ) -> Placement | None:
        """:meth:`observe` for an order-update event on ``tradingAccount:{channel_account}``."""
        return self.observe(order, "ws", now, channel_account=channel_account)

    def resolve_from_rest(self, order: TradeOrder, now: float) -> Placement | None:
        """:meth:`observe` for an order a REST look-up returned."""
        return self.observe(order, "rest", now)

    # -- internals -------------------------------------------------------------

    def _apply(
        self, placement: Placement, order: TradeOrder, source: SourceName, now: float
    ) -> Placement | None:
        stats = self.stats
        verdict = verdict_of(order)
        if placement.outcome is not None:
            stats.duplicates_ignored += 1
            if verdict is not None and verdict != placement.accepted:
                stats.verdict_conflicts += 1
            return None
        if verdict is not None:
            # A verdict is a fact about the exchange at some moment (it held the
            # order, or refused it): an older updatedAt is clock skew, not staleness.
            placement.last_known = order
            placement.last_updated = order.updated_at
            placement.outcome = order
            placement.accepted = verdict
            placement.done = True
            placement.source = source
            placement.resolved_at = now
            stats.resolved_by_source[source] += 1
            self._unpend(placement)
            return placement
        updated = order.updated_at
        last_updated = placement.last_updated
        if updated is None or (last_updated is not None and updated <= last_updated):
            last = placement.last_known
            if last is None:
                placement.last_known = order
            elif updated == last_updated and order == last:
                stats.duplicates_ignored += 1
            else:
                stats.stale_ignored += 1
            return None
        placement.last_known = order
        placement.last_updated = updated
        return None

    def _unpend(self, placement: Placement) -> None:
        key = (placement.account_id, placement.client_order_id)
        if self._pending.get(key) is placement:
            del self._pending[key]
        bucket = self._by_account.get(placement.account_id)
        if bucket is not None and bucket.get(key) is placement:
            del bucket[key]
            if not bucket:
                del self._by_account[placement.account_id]
