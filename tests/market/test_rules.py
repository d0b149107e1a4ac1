"""Instrument rules: exact rounding, and orders breaking a rule refused before any I/O."""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_UP, Decimal

import pytest
from conftest import BTC, market_client
from hypothesis import given
from hypothesis import strategies as st

from cadenza_async.errors import CadenzaError
from cadenza_async.market import Instrument, InstrumentRuleError

D = Decimal
INST = Instrument(
    instrument_id=BTC,
    venue="BINANCE",
    symbol="BTC/USDT",
    status="ACTIVE",
    lot_size="0.001",
    pip_size="0.01",
    min_quantity="0.002",
    max_quantity="100",
    min_notional="10",
    max_notional="1000000",
    order_types=["LIMIT", "MARKET", None],
    time_in_force_options=["GTC", "IOC"],
)
MODES = {"down": ROUND_DOWN, "up": ROUND_UP, "nearest": ROUND_HALF_EVEN}

decimals = st.decimals(min_value=D("0.000000001"), max_value=D("1e12"), places=9)


@given(decimals, st.sampled_from(sorted(MODES)), st.sampled_from(["1", "0.1", "0.001", "1e-8"]))
def test_rounding_to_a_power_of_ten_step_is_decimal_quantize(value, mode, step):
    inst = Instrument(instrument_id=BTC, lot_size=step, pip_size=step)
    expected = value.quantize(D(step), rounding=MODES[mode])
    assert inst.round_quantity(value, mode) == expected
    assert inst.round_price(str(value), mode) == expected


@given(decimals, st.sampled_from(["0.5", "0.25", "3", "0.0025"]))
def test_rounding_to_any_step_is_exact_and_brackets_the_value(value, step):
    inst = Instrument(instrument_id=BTC, lot_size=step)
    down, up = inst.round_quantity(value, "down"), inst.round_quantity(value, "up")
    assert down <= value <= up
    assert up - down in (0, D(step))
    assert down % D(step) == 0
    assert up % D(step) == 0
    nearest = inst.round_quantity(value, "nearest")
    assert nearest in (down, up)
    assert abs(nearest - value) <= abs(value - down)
    assert abs(nearest - value) <= abs(up - value)


def test_rounding_keeps_the_steps_exponent_and_refuses_floats_and_unknown_modes():
    assert str(INST.round_price("1.5", "down")) == "1.50"
    with pytest.raises(TypeError):
        INST.round_price(1.5, "down")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rounding"):
        INST.round_price("1.5", "half")


@pytest.mark.parametrize(
    ("order", "rule", "nearest"),
    [
        ({"order_type": "STOP"}, "order_type", ()),
        ({"time_in_force": "FOK"}, "time_in_force", ()),
        ({"quantity": "0.0105"}, "lot_size", (D("0.010"), D("0.011"))),
        ({"quantity": "0.001"}, "min_quantity", (D("0.002"),)),
        ({"quantity": "101"}, "max_quantity", (D("100.000"),)),
        ({"limit_price": "50000.005"}, "pip_size", (D("50000.00"), D("50000.01"))),
        ({"quantity": "0.002", "limit_price": "1000"}, "min_notional", (D("0.010"),)),
        ({"quantity": "99", "limit_price": "20000"}, "max_notional", (D("50.000"),)),
    ],
)
def test_an_order_breaking_a_rule_names_the_rule_and_the_nearest_valid_values(order, rule, nearest):
    fields = {"order_type": "LIMIT", "quantity": "0.01", "limit_price": "50000"} | order
    with pytest.raises(InstrumentRuleError) as info:
        INST.check_order(**fields)
    assert info.value.rule == rule
    assert info.value.nearest == nearest
    assert rule in str(info.value)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, CadenzaError)


def test_a_closed_instrument_takes_no_order_and_a_valid_order_passes():
    INST.check_order(order_type="LIMIT", quantity="0.01", limit_price="50000", time_in_force="GTC")
    closed = Instrument(instrument_id=BTC, status="DELISTED")
    with pytest.raises(InstrumentRuleError, match="status"):
        closed.check_order(order_type="LIMIT", quantity="1")


async def test_a_cached_instrument_refuses_a_bad_order_before_any_request():
    async with market_client() as (sim, client):
        await client.instrument(BTC)
        before = list(sim.rest_requests)
        bad = {
            "instrument_id": BTC,
            "order_side": "BUY",
            "order_type": "LIMIT",
            "quantity": "0.000015",  # lot size 0.00001
            "limit_price": "50000",
        }
        with pytest.raises(InstrumentRuleError) as info:
            await client.submit_and_confirm(**bad)
        assert info.value.rule == "lot_size"
        with pytest.raises(InstrumentRuleError):
            await client.replace_and_confirm("00000000-0000-4000-8000-000000000001", **bad)
        good = dict(bad, quantity="0.001")
        with pytest.raises(InstrumentRuleError, match="order 1"):
            await client.submit_many([good, bad])
        assert sim.rest_requests == before  # 0 requests
        assert sim.submit_requests == []


async def test_without_a_cached_instrument_nothing_is_fetched_and_the_order_goes_out():
    async with market_client() as (sim, client):
        result = await client.submit_and_confirm(
            instrument_id=BTC,
            order_side="BUY",
            order_type="LIMIT",
            quantity="0.000015",
            limit_price="50000",
        )
        assert result.order is not None
        assert not any("/market/" in path for _, path, _ in sim.rest_requests)


async def test_instruments_are_cached_and_refreshed_on_demand():
    async with market_client() as (sim, client):
        first = await client.instruments("BINANCE")
        assert {i.instrument_id for i in first} >= {BTC}
        await client.instruments("BINANCE")
        await client.instrument(BTC)
        calls = [p for _, p, _ in sim.rest_requests if p.endswith("instrument/list")]
        assert len(calls) == 1
        await client.instruments(refresh=True)
        calls = [p for _, p, _ in sim.rest_requests if p.endswith("instrument/list")]
        assert len(calls) == 2
        inst = await client.instrument(BTC)
        assert inst.lot_size_decimal == D("0.00001")
