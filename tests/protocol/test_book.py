"""The book core: merge rules per side, and the continuity rules that decide when it is usable."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cadenza_async.protocol.book import BookDataError, BookSide, BookSync, Level

D = Decimal


def synced(bids=(("100", "1"),), asks=(("101", "2"),)) -> BookSync:
    book = BookSync()
    book.set_live("e1", 0)
    book.publication("SNAPSHOT", [list(r) for r in bids], [list(r) for r in asks], 1, 1, 0.0)
    return book


# ---------------------------------------------------------------- one side


def test_bids_are_best_first_and_asks_too():
    bids, asks = BookSide(True), BookSide(False)
    bids.replace([["99", "1"], ["101", "2"], ["100", "3"]])
    asks.replace([["103", "1"], ["102", "2"]])
    assert [lv.price for lv in bids.top()] == [D("101"), D("100"), D("99")]
    assert [lv.price for lv in asks.top(1)] == [D("102")]
    assert bids.best() == Level(D("101"), D("2"))


def test_zero_quantity_removes_a_level_in_any_spelling():
    side = BookSide(False)
    side.replace([["1.50", "3"], ["2", "1"]])
    side.apply([["1.5", "0.000"]])
    assert side.as_dict() == {D("2"): D("1")}


def test_the_same_price_spelled_twice_is_one_level():
    side = BookSide(True)
    side.apply([["1.50", "3"], ["1.5", "4"], ["1.500", "5"]])
    assert len(side) == 1
    assert side.quantity_at("1.5") == D("5")


def test_removing_an_unknown_level_changes_nothing():
    side = BookSide(True)
    side.apply([["7", "1"]])
    side.apply([["8", "0"]])
    assert side.as_dict() == {D("7"): D("1")}


@pytest.mark.parametrize("qty", ["-1", "abc", "", ".", "1.2.3", "1e5", "nan"])
def test_a_quantity_that_is_not_a_non_negative_decimal_is_refused(qty):
    with pytest.raises(BookDataError):
        BookSide(True).apply([["1", qty]])


@pytest.mark.parametrize("price", ["0", "-1", "x", "Infinity", "NaN"])
def test_a_price_that_is_not_positive_is_refused(price):
    with pytest.raises(BookDataError):
        BookSide(True).apply([[price, "1"]])


def test_extra_columns_are_ignored():
    side = BookSide(False)
    side.apply([["5", "1", "3"], ["6", "2", "4", "x"]])
    assert side.as_dict() == {D("5"): D("1"), D("6"): D("2")}


# ---------------------------------------------------------------- continuity


def test_a_book_is_not_usable_before_any_snapshot_and_wants_one():
    book = BookSync()
    book.set_live("e", 0)
    book.publication("DIFF", [["100", "1"]], [], 5, 1, 0.0)
    assert not book.usable
    assert book.snapshot_wanted
    assert book.buffered == 1


def test_a_published_snapshot_makes_it_usable_and_diffs_apply():
    book = synced()
    assert book.usable
    book.publication("DIFF", [["100", "0"], ["99", "4"]], [["101", "1"]], 2, 2, 0.0)
    assert book.bids.top() == [Level(D("99"), D("4"))]
    assert book.asks.best() == Level(D("101"), D("1"))
    assert book.timestamp == 2


def test_an_offset_gap_makes_it_unusable_and_counts_a_gap():
    book = synced()
    book.publication("DIFF", [["100", "2"]], [], 3, 3, 0.0)  # offset 2 lost
    assert not book.usable
    assert book.resyncs == {"gap": 1}
    assert book.snapshot_wanted


def test_a_delta_is_never_applied():
    book = synced()
    book.publication("DELTA", [["100", "9"]], [], 2, 2, 0.0)
    assert not book.usable
    assert book.resyncs == {"delta": 1}
    assert book.bids.best() == Level(D("100"), D("1"))


def test_a_diff_that_crosses_the_book_forces_a_resync():
    book = synced()
    book.publication("DIFF", [["102", "1"]], [], 2, 2, 0.0)
    assert not book.usable
    assert book.resyncs == {"crossed": 1}


def test_bad_data_forces_a_resync():
    book = synced()
    book.publication("DIFF", [["100", "oops"]], [], 2, 2, 0.0)
    assert book.resyncs == {"bad_data": 1}


def test_not_live_is_not_usable_and_a_recovered_resubscribe_is_usable_again():
    book = synced()
    book.set_not_live()
    assert not book.usable
    book.publication("DIFF", [["100", "5"]], [], 2, 2, 0.0)  # replayed by the recovery
    book.set_live("e1", 2)
    assert book.usable
    assert book.resyncs == {}


def test_an_epoch_change_forces_a_resync():
    book = synced()
    book.set_not_live()
    book.set_live("e2", 7)
    assert not book.usable
    assert book.resyncs == {"epoch": 1}


def test_a_resubscribe_past_the_last_offset_fed_forces_a_resync():
    book = synced()
    book.set_not_live()
    book.set_live("e1", 5)
    assert book.resyncs == {"gap": 1}


def test_a_stream_gap_is_counted_with_its_reason():
    book = synced()
    book.gap("not_recovered")
    assert book.resyncs == {"not_recovered": 1}


def test_a_snapshot_asked_after_the_gap_proves_the_book_and_replays_newer_diffs():
    book = synced()
    book.gap("not_recovered")
    token = book.take_snapshot_request()
    assert not book.snapshot_wanted  # one in flight
    book.publication("DIFF", [["98", "1"]], [], 10, 2, 0.0)  # older than the snapshot
    book.publication("DIFF", [["97", "1"]], [], 20, 3, 0.0)  # same ms: replayed
    book.publication("DIFF", [["96", "1"]], [], 30, 4, 0.0)
    assert book.rest_snapshot(token, [["98", "1"], ["100", "1"]], [["101", "1"]], 20, 1.0)
    assert book.usable
    assert book.diffs_dropped == 1
    assert [lv.price for lv in book.bids.top()] == [D("100"), D("98"), D("97"), D("96")]
    assert book.timestamp == 30


def test_a_snapshot_asked_before_a_later_gap_is_refused_unless_newer_than_the_buffer():
    book = synced()
    book.gap()
    token = book.take_snapshot_request()
    book.publication("DIFF", [["99", "1"]], [], 50, 2, 0.0)
    book.publication("DIFF", [["98", "1"]], [], 60, 4, 0.0)  # 3 lost: buffer restarts here
    assert not book.rest_snapshot(token, [["100", "1"]], [["101", "1"]], 55, 1.0)
    assert book.snapshots_refused == 1
    assert book.snapshot_wanted
    token = book.take_snapshot_request()
    book.publication("DIFF", [["97", "1"]], [], 70, 5, 0.0)
    # a snapshot asked before the newest gap is still proven by its timestamp
    assert book.rest_snapshot(token - 1, [["100", "1"]], [["101", "1"]], 60, 1.0)
    assert [lv.price for lv in book.bids.top()] == [D("100"), D("98"), D("97")]


def test_a_crossed_rest_snapshot_is_not_usable_and_another_is_wanted():
    book = synced()
    book.gap()
    token = book.take_snapshot_request()
    assert not book.rest_snapshot(token, [["105", "1"]], [["101", "1"]], 9, 1.0)
    assert not book.usable
    assert book.snapshot_wanted
    assert book.resyncs == {"gap": 1, "crossed": 1}


def test_a_rest_snapshot_after_a_published_one_is_ignored():
    book = BookSync()
    book.set_live("e", 0)
    token = book.take_snapshot_request()
    book.publication("SNAPSHOT", [["1", "1"]], [["2", "1"]], 5, 1, 0.0)
    assert not book.rest_snapshot(token, [["9", "9"]], [["10", "9"]], 4, 1.0)
    assert book.bids.best() == Level(D("1"), D("1"))


def test_a_full_buffer_is_dropped_and_needs_a_newer_snapshot():
    book = BookSync(max_buffer=2)
    book.set_live("e", 0)
    token = book.take_snapshot_request()
    for offset in range(1, 4):
        book.publication("DIFF", [[str(90 + offset), "1"]], [], offset, offset, 0.0)
    assert book.buffer_overflows == 1
    assert book.buffered == 1
    assert not book.rest_snapshot(token, [["1", "1"]], [["200", "1"]], 2, 1.0)


def test_a_failed_fetch_makes_a_snapshot_wanted_again():
    book = BookSync()
    token = book.take_snapshot_request()
    assert not book.snapshot_wanted
    book.snapshot_failed(token)
    assert book.snapshot_wanted


def test_changes_are_collected_when_asked():
    book = synced()
    book.changes = []
    book.publication("DIFF", [["100", "3"]], [], 2, 2, 0.0)
    assert [c.kind for c in book.changes] == ["diff"]


def test_a_diff_older_than_the_applied_rest_snapshot_is_dropped_not_applied_over_it():
    book = synced()
    book.gap()
    token = book.take_snapshot_request()
    assert book.rest_snapshot(token, [["100", "7"]], [["101", "1"]], 50, 1.0)
    book.publication("DIFF", [["100", "3"]], [], 40, 2, 1.0)  # in flight, already in it
    assert book.bids.best() == Level(D("100"), D("7"))
    book.publication("DIFF", [["100", "4"]], [], 50, 3, 1.0)  # same ms: applied again
    assert book.bids.best() == Level(D("100"), D("4"))
    assert book.usable
