"""Rules of the proof engine (cancels and submits alike), pinned through what a caller sees.

Each test names one behaviour the engine's rewrite must keep; most run against the
simulator over loopback, the pure rules are checked as tables.
"""

from __future__ import annotations

import asyncio
import math

import pytest
from support import cancels_of, client_for

from cadenza_async import ConfirmationTimeout
from cadenza_async.cancels import final_slice
from cadenza_async.testing import CadenzaSimulator

QUOTE = {
    "instrument_id": "BINANCE:BTC/USDT",
    "order_side": "BUY",
    "order_type": "LIMIT",
    "quantity": "0.01",
    "limit_price": "50000",
}


@pytest.mark.parametrize(
    ("timeout", "reserved"),
    [(0.2, 0.1), (0.5, 0.25), (1.0, 0.25), (2.0, 0.5), (4.0, 1.0), (10.0, 1.0)],
)
def test_the_final_look_up_gets_a_quarter_of_the_timeout_between_its_floor_and_a_second(
    timeout: float, reserved: float
) -> None:
    """A quarter of the timeout, at least 0.25 s (half of a timeout under 0.5 s), at most 1 s."""
    assert final_slice(timeout) == pytest.approx(reserved)


# --------------------------------------------------------------------------- a late channel


def list_requests(sim: CadenzaSimulator) -> int:
    """REST listings the simulator answered (a look-up by id is a listing too)."""
    return sum(1 for _, path, _ in sim.rest_requests if path.endswith("/list"))


async def late_channel(sim: CadenzaSimulator) -> str:
    """Another account whose channel goes live only when the test says so (see below).

    Until then its subscribe waits unanswered and every REST look-up answers 503: the
    order's event, published meanwhile, reaches nobody, and no poll can see it.
    """
    other = sim.add_account()
    sim.delay_subscribe_replies(math.inf)
    sim.rest_outage(3600, endpoints=["list"])
    return other


async def go_live(sim: CadenzaSimulator, polls_failed: int) -> int:
    """After ``polls_failed`` failed look-ups: REST answers again and the subscribe goes
    live at once. Returns the listings so far. (The job's next poll is then at least
    0.4 s away: the backoff doubles from 0.1 s.)"""
    await sim.wait_for(lambda: sim.rest_outage_answers >= polls_failed)
    sim.rest_outage(0, endpoints=["list"])
    sim.delay_subscribe_replies(0)
    return list_requests(sim)


@pytest.mark.cadenza_sim(accept_delay=0.05)
async def test_a_channel_live_only_after_the_submit_went_out_gets_one_look_up_at_once(
    cadenza_sim, open_client
):
    """The acceptance event came before the channel was live: one look-up, made as soon
    as the channel is live, proves the submit (without it, only the final look-up would)."""
    client = await open_client()
    other = await late_channel(cadenza_sim)
    task = asyncio.ensure_future(
        client.submit_and_confirm(**QUOTE, trading_account_id=other, timeout=10.0)
    )
    await cadenza_sim.wait_for(
        lambda: [o.status for o in cadenza_sim.live_orders_of(account_id=other)] == ["OPEN"]
    )
    before = await go_live(cadenza_sim, polls_failed=3)
    result = await asyncio.wait_for(task, 15.0)

    assert (result.accepted, result.status, result.source) == (True, "OPEN", "rest")
    assert result.latency < 10.0 - final_slice(10.0)  # not the final look-up's proof
    assert list_requests(cadenza_sim) == before + 1


@pytest.mark.cadenza_sim(cancel_delay=0.05)
async def test_a_channel_live_only_after_the_cancel_went_out_gets_one_look_up_at_once(
    cadenza_sim, open_client
):
    client = await open_client()
    other = await late_channel(cadenza_sim)
    order = cadenza_sim.create_order(account_id=other)
    task = asyncio.ensure_future(
        client.cancel_and_confirm(order.trade_order_id, trading_account_id=other, timeout=10.0)
    )
    await cadenza_sim.wait_for(
        lambda: cadenza_sim.get_order(order.trade_order_id).status == "CANCELLED"
    )
    before = await go_live(cadenza_sim, polls_failed=3)
    result = await asyncio.wait_for(task, 15.0)

    assert (result.cancelled, result.source) == (True, "rest")
    assert result.latency < 10.0 - final_slice(10.0)
    assert list_requests(cadenza_sim) == before + 1


# --------------------------------------------------------------------------- a bulk's order


@pytest.mark.cadenza_sim(cancel_delay=1.5)  # the reply says PENDING_CANCEL, CANCELLED at 1.5 s
async def test_an_order_a_bulk_drives_is_kept_alive_for_the_latest_joiners_deadline(cadenza_sim):
    """Two callers join an order a bulk's worker drives: the first with a long deadline, the
    second with one shorter than the cancel takes. With the stream down only the job's polls
    can prove it: after the bulk and the second caller end, the job goes on for the first
    (proven by a poll, long before that caller's own final look-up)."""
    await cadenza_sim.refuse_websocket(503)
    order = cadenza_sim.create_order()
    oid = order.trade_order_id
    async with client_for(cadenza_sim) as client:
        bulk = asyncio.ensure_future(client.cancel_many([oid], timeout=0.8))
        await cadenza_sim.wait_for(lambda: cancels_of(cadenza_sim, oid))
        longest = asyncio.ensure_future(client.cancel_and_confirm(oid, timeout=10.0))
        shorter = asyncio.ensure_future(client.cancel_and_confirm(oid, timeout=0.9))

        (outcome,) = await asyncio.wait_for(bulk, 5.0)
        with pytest.raises(ConfirmationTimeout):
            await asyncio.wait_for(shorter, 5.0)
        result = await asyncio.wait_for(longest, 15.0)

    assert isinstance(outcome, ConfirmationTimeout)
    assert (result.cancelled, result.source) == (True, "rest")
    assert result.latency < 10.0 - final_slice(10.0)
    assert cancels_of(cadenza_sim, oid) == ["http"]  # one request for the three callers
