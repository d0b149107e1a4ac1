"""One side of the book against a model of exact decimals: any rows, any spellings, any order.

The side keeps levels by the wire's spelling, scaled integer keys, and a
bounded cache of parsed spellings; the model is a plain ``dict`` of
:class:`~decimal.Decimal` prices. After every ``apply`` they hold the same
levels, best first, and ``apply`` says True exactly when a row added a new
best price (the only way a diff can cross a book).
"""

from __future__ import annotations

from decimal import Decimal
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cadenza_async.protocol import book as book_module
from cadenza_async.protocol.book import BookDataError, BookSide

D = Decimal

ZEROS = ["0", "0.0", "00", "0.000", ".0", "0."]


@st.composite
def price_text(draw: st.DrawFn) -> str:
    """A price from a small range, spelled with 0-3 decimals and extra trailing zeros."""
    decimals = draw(st.integers(0, 3))
    ticks = draw(st.integers(1, 40))
    value = D(ticks).scaleb(-decimals) + 7
    text = f"{value:.{decimals}f}"
    pad = draw(st.integers(0, 2))
    if pad:
        text += ("" if "." in text else ".") + "0" * pad
    return text


quantity_text = st.one_of(
    st.sampled_from(ZEROS),
    st.integers(1, 10**6).map(lambda n: str(D(n).scaleb(-3))),
    st.integers(1, 50).map(str),
)
rows_strategy = st.lists(st.tuples(price_text(), quantity_text), max_size=6)


def apply_to_model(model: dict[Decimal, Decimal], rows, descending: bool) -> bool:
    """The rule, written plainly: returns whether a row added a new best price."""
    new_best = False
    for price_s, qty_s in rows:
        price, qty = D(price_s), D(qty_s)
        if qty == 0:
            model.pop(price, None)
            continue
        if price not in model:
            best = (max if descending else min)(model) if model else None
            if best is None or (price > best if descending else price < best):
                new_best = True
        model[price] = qty
    return new_best


@pytest.mark.parametrize("cache_size", [0, 4096])
@pytest.mark.parametrize("descending", [True, False])
@settings(max_examples=150, deadline=None)
@given(batches=st.lists(rows_strategy, max_size=25))
def test_a_side_holds_what_the_model_holds_best_first_and_reports_new_bests(
    cache_size, descending, batches
):
    side = BookSide(descending)
    model: dict[Decimal, Decimal] = {}
    with mock.patch.object(book_module, "_PARSED_MAX", cache_size):
        for rows in batches:
            said = side.apply([list(r) for r in rows])
            assert said == apply_to_model(model, rows, descending)
            assert side.as_dict() == model
            prices = [lv.price for lv in side.top()]
            assert prices == sorted(model, reverse=descending)
            for price in model:
                assert side.quantity_at(price) == model[price]
                longer = str(price) + ("0" if "." in str(price) else ".0")
                assert side.quantity_at(longer) == model[price]


def test_a_removal_in_another_spelling_after_the_scale_grew_removes_the_level():
    side = BookSide(False)
    side.apply([["1.5", "2"]])
    side.apply([["1.25", "3"]])  # two decimals now: every key rescaled
    side.apply([["1.500", "0"]])
    assert side.as_dict() == {D("1.25"): D("3")}


def test_an_update_or_a_removal_is_never_a_new_best():
    side = BookSide(True)
    assert side.apply([["100", "1"], ["99", "1"]])  # 100 was the first level: a new best
    assert not side.apply([["100", "2"], ["99", "0"], ["98", "1"]])
    assert not side.apply([["100", "0"]])  # the best went (99 moved up; not a new price)
    assert side.apply([["101", "1"]])


@pytest.mark.parametrize("qty", ["\u0660", "1.\u0665", "\uff11"])  # non-ASCII digits
def test_a_quantity_in_other_digits_is_refused(qty):
    # "\u0660" is an Arabic-Indic zero: Decimal reads it as 0, a held level would be empty
    with pytest.raises(BookDataError):
        BookSide(True).apply([["1", qty]])


def test_a_price_in_other_digits_is_refused():
    with pytest.raises(BookDataError):
        BookSide(True).apply([["\u0661\u0660", "1"]])


def test_a_price_with_more_digits_than_int_reads_is_refused_and_changes_nothing():
    side = BookSide(False)
    side.apply([["1.5", "1"]])
    with pytest.raises(BookDataError):
        side.apply([["1." + "1" * 5000, "1"]])
    assert side.scale == 1
    assert side.as_dict() == {D("1.5"): D("1")}
