"""The portfolio merge and continuity rules (protocol/portfolio.py), one test per row of its table."""

from __future__ import annotations

from decimal import Decimal

from cadenza_async.account.models import Balance, PortfolioSummary, Position
from cadenza_async.protocol.portfolio import PortfolioSync, PortfolioUpdate


def bal(symbol, free, at=None):
    return Balance(security_symbol=symbol, free=Decimal(free), total=Decimal(free), updated_at=at)


def pos(pid, qty, status="OPEN", at=None):
    return Position(position_id=pid, quantity=Decimal(qty), status=status, updated_at=at)


def snap(*balances, positions=(), at=None, mode="SNAPSHOT", summary=None):
    return PortfolioUpdate(mode, list(balances), list(positions), summary, at)


def delta(*balances, positions=(), at=None, summary=None):
    return PortfolioUpdate("DELTA", list(balances), list(positions), summary, at)


def synced(*balances, at=100):
    sync = PortfolioSync()
    sync.set_live("e1", 0)
    token = sync.take_reload_request()
    assert sync.rest_snapshot(token, snap(*balances, at=at), 0.0)
    return sync


def free(sync, symbol):
    return sync.balances[symbol].free


def test_first_live_wants_a_load_and_buffers_deltas():
    sync = PortfolioSync()
    sync.set_live("e1", 0)
    assert sync.state == "loading"
    assert sync.reload_wanted
    assert not sync.usable
    sync.publication(1, delta(bal("USDT", "5"), at=10), 0.0)
    assert sync.buffered == 1
    assert not sync.balances


def test_a_snapshot_event_replaces_everything_and_proves_the_portfolio():
    sync = PortfolioSync()
    sync.set_live("e1", 0)
    sync.publication(1, snap(bal("USDT", "5"), positions=[pos("p1", "1")], at=10), 0.0)
    assert sync.usable
    assert free(sync, "USDT") == 5
    assert "p1" in sync.positions
    sync.publication(2, snap(bal("BTC", "1"), at=11), 0.0)
    assert set(sync.balances) == {"BTC"}
    assert not sync.positions


def test_an_update_without_mode_is_a_whole_portfolio():
    sync = synced(bal("USDT", "5"))
    sync.publication(1, snap(bal("BTC", "2"), at=200, mode=None), 0.0)
    assert set(sync.balances) == {"BTC"}


def test_a_delta_merges_balances_by_symbol_and_positions_by_id():
    sync = synced(bal("USDT", "5"), bal("BTC", "1"))
    summary = PortfolioSummary(currency="USDT", equity=Decimal(7))
    sync.publication(
        1, delta(bal("USDT", "4"), positions=[pos("p1", "2")], at=101, summary=summary), 1.0
    )
    assert free(sync, "USDT") == 4
    assert free(sync, "BTC") == 1
    assert sync.positions["p1"].quantity == 2
    assert sync.summary == summary
    assert sync.updated_at == 101
    assert sync.source == "event"
    assert sync.deltas == 1


def test_a_closed_position_goes_and_an_older_update_does_not_bring_it_back():
    sync = synced(bal("USDT", "5"))
    sync.publication(1, delta(positions=[pos("p1", "2", at=101)], at=101), 0.0)
    sync.publication(2, delta(positions=[pos("p1", "0", "CLOSED", at=103)], at=103), 0.0)
    assert "p1" not in sync.positions
    sync.publication(3, delta(positions=[pos("p1", "2", at=102)], at=102), 0.0)
    assert "p1" not in sync.positions
    assert sync.entries_skipped == 1


def test_an_older_entry_never_overwrites_a_newer_one():
    sync = synced(bal("USDT", "5", at=100))
    sync.publication(1, delta(bal("USDT", "3", at=105), at=105), 0.0)
    sync.publication(2, delta(bal("USDT", "9", at=104), at=104), 0.0)
    assert free(sync, "USDT") == 3
    assert sync.entries_skipped == 1


def test_an_entry_without_its_key_or_an_unknown_mode_is_never_merged_and_reloads():
    sync = synced(bal("USDT", "5"))
    sync.publication(1, delta(bal(None, "1"), at=101), 0.0)
    assert sync.reloads == {"unmergeable": 1}
    assert not sync.usable
    assert sync.reload_wanted
    assert free(sync, "USDT") == 5
    other = synced(bal("USDT", "5"))
    other.publication(1, PortfolioUpdate("PATCH", [], [], None, 101), 0.0)
    assert other.reloads == {"unmergeable": 1}


def test_an_offset_skip_is_a_gap_even_on_another_event():
    sync = synced(bal("USDT", "5"))
    sync.publication(1, None, 0.0)
    assert sync.usable
    sync.publication(3, None, 0.0)  # offset 2 was lost: it may have been a portfolio update
    assert sync.reloads == {"gap": 1}
    assert not sync.usable


def test_gaps_from_the_stream_and_a_new_epoch_reload():
    sync = synced(bal("USDT", "5"))
    sync.gap("not_recovered")
    assert sync.reloads == {"not_recovered": 1}
    again = synced(bal("USDT", "5"))
    again.set_live("e2", 0)
    assert again.reloads == {"epoch": 1}
    moved = synced(bal("USDT", "5"))
    moved.set_live("e1", 7)
    assert moved.reloads == {"gap": 1}


def test_not_live_is_not_usable_and_live_again_at_the_same_position_is():
    sync = synced(bal("USDT", "5"))
    sync.set_not_live()
    assert not sync.usable
    assert sync.state == "synced"
    sync.set_live("e1", 0)
    assert sync.usable


def test_a_load_replays_only_the_deltas_that_arrived_after_it_was_asked():
    sync = synced(bal("USDT", "5"))
    sync.gap("gap")
    sync.publication(None, delta(bal("USDT", "1", at=150), at=150), 0.0)  # before the request
    token = sync.take_reload_request()
    sync.publication(None, delta(bal("BTC", "7", at=210), at=210), 0.0)  # after it
    assert sync.rest_snapshot(token, snap(bal("USDT", "2", at=200), at=200), 1.0)
    assert free(sync, "USDT") == 2
    assert free(sync, "BTC") == 7
    assert sync.updated_at == 210


def test_a_load_asked_before_a_later_loss_is_refused():
    sync = synced(bal("USDT", "5"))
    sync.gap("gap")
    token = sync.take_reload_request()
    sync.gap("gap")
    assert not sync.rest_snapshot(token, snap(bal("USDT", "1"), at=300), 0.0)
    assert sync.loads_refused == 1
    assert sync.reload_wanted
    assert free(sync, "USDT") == 5


def test_a_failed_load_is_wanted_again():
    sync = PortfolioSync()
    sync.set_live(None, None)
    token = sync.take_reload_request()
    assert not sync.reload_wanted
    sync.reload_failed(token)
    assert sync.reload_wanted


def test_a_buffer_overflow_asks_for_another_load():
    sync = PortfolioSync(max_buffer=2)
    sync.set_live(None, None)
    token = sync.take_reload_request()
    for n in range(3):
        sync.publication(None, delta(bal("USDT", str(n + 1)), at=n), 0.0)
    assert sync.reloads == {"overflow": 1}
    assert not sync.rest_snapshot(token, snap(bal("USDT", "9"), at=1), 0.0)


def test_bad_data_reloads():
    sync = synced(bal("USDT", "5"))
    sync.bad_data()
    assert sync.reloads == {"bad_data": 1}


def test_changes_are_collected_when_asked():
    sync = synced(bal("USDT", "5"))
    sync.changes = []
    update = delta(bal("USDT", "1"), at=101)
    sync.publication(1, update, 0.0)
    assert sync.changes == [update]
