"""Properties of the portfolio merge rules: any order of delivery ends in the newest state."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from cadenza_async.account.models import Balance, Position
from cadenza_async.protocol.portfolio import PortfolioSync, PortfolioUpdate

SYMBOLS = ("USDT", "BTC", "ETH")
POSITIONS = ("p1", "p2")


def synced() -> PortfolioSync:
    sync = PortfolioSync()
    sync.set_live("e", 0)
    token = sync.take_reload_request()
    assert sync.rest_snapshot(token, PortfolioUpdate(None, [], [], None, 0), 0.0)
    return sync


updates = st.lists(
    st.tuples(st.sampled_from(SYMBOLS), st.integers(1, 1000), st.integers(0, 10**6)),
    min_size=1,
    max_size=40,
    unique_by=lambda u: (u[0], u[1]),
)


@given(updates, st.randoms())
def test_deltas_in_any_order_end_with_the_newest_balance_of_each_symbol(items, rnd):
    shuffled = list(items)
    rnd.shuffle(shuffled)
    sync = synced()
    for symbol, at, value in shuffled:
        balance = Balance(security_symbol=symbol, free=Decimal(value), updated_at=at)
        sync.publication(None, PortfolioUpdate("DELTA", [balance], None, None, at), 0.0)
    newest: dict[str, tuple[int, int]] = {}
    for symbol, at, value in items:
        if symbol not in newest or at > newest[symbol][0]:
            newest[symbol] = (at, value)
    assert {s: b.free for s, b in sync.balances.items()} == {
        s: Decimal(v) for s, (_, v) in newest.items()
    }
    assert sync.updated_at == max(at for _, at, _ in items)
    assert sync.usable


position_updates = st.lists(
    st.tuples(st.sampled_from(POSITIONS), st.integers(1, 1000), st.booleans()),
    min_size=1,
    max_size=30,
    unique_by=lambda u: (u[0], u[1]),
)


@given(position_updates, st.randoms())
def test_a_position_ends_open_or_closed_as_its_newest_update_says(items, rnd):
    shuffled = list(items)
    rnd.shuffle(shuffled)
    sync = synced()
    for pid, at, closed in shuffled:
        position = Position(
            position_id=pid,
            status="CLOSED" if closed else "OPEN",
            quantity=Decimal(1),
            updated_at=at,
        )
        sync.publication(None, PortfolioUpdate("DELTA", None, [position], None, at), 0.0)
    newest: dict[str, tuple[int, bool]] = {}
    for pid, at, closed in items:
        if pid not in newest or at > newest[pid][0]:
            newest[pid] = (at, closed)
    assert set(sync.positions) == {pid for pid, (_, closed) in newest.items() if not closed}
