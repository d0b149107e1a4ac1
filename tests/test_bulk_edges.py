"""cancel_many's workers drive each new job in their own task: the edges of a single call hold.

Proof ends an order's wait while its reply still travels; a caller who
joins an order a worker drives keeps its own deadline and the shared
request; cancelling the bulk never cuts a shared request short. Against the
simulator over real sockets; time bounds are upper bounds on events, never sleeps.
"""

from __future__ import annotations

import asyncio

import pytest
from support import client_for, other_tasks, waiters_held

from cadenza_async import CancelResult, ConfirmationTimeout
from cadenza_async.testing import CadenzaSimulator

STEP = 5.0
SLACK = 0.1


@pytest.fixture
async def client(cadenza_sim: CadenzaSimulator):
    async with client_for(cadenza_sim) as c:
        yield c


def cancels_of(sim: CadenzaSimulator, order_id: str) -> list[str]:
    return [via for oid, via in sim.cancel_requests if oid == order_id]


@pytest.mark.cadenza_sim(cancel_delay=0)
async def test_each_event_ends_its_orders_wait_while_the_replies_still_travel(cadenza_sim, client):
    orders = cadenza_sim.create_orders(3)
    cadenza_sim.delay_cancel_reply(3.0)
    loop = asyncio.get_running_loop()
    started = loop.time()

    results = await asyncio.wait_for(
        client.cancel_many([o.trade_order_id for o in orders], concurrency=3, timeout=STEP), STEP
    )

    assert loop.time() - started < 1.0  # not the 3 s the replies take
    for result in results:
        assert isinstance(result, CancelResult)
        assert (result.cancelled, result.source, result.acked_after) == (True, "ws", None)
    assert waiters_held(client) == 0  # a proven order's call is over, its reply or not
    cadenza_sim.delay_cancel_reply(0)


@pytest.mark.cadenza_sim(cancel_delay=0)
async def test_cancel_many_iter_yields_each_proof_before_its_reply(cadenza_sim, client):
    orders = cadenza_sim.create_orders(2)
    cadenza_sim.delay_cancel_reply(3.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    seen: list[float] = []

    async def consume() -> None:
        async for outcome in client.cancel_many_iter(
            [o.trade_order_id for o in orders], concurrency=2
        ):
            assert isinstance(outcome, CancelResult)
            assert outcome.source == "ws"
            seen.append(loop.time() - started)

    await asyncio.wait_for(consume(), STEP)

    assert len(seen) == 2
    assert max(seen) < 1.0
    cadenza_sim.delay_cancel_reply(0)


@pytest.mark.cadenza_sim(cancel_delay=0)
async def test_the_workers_still_reading_replies_end_with_the_client(cadenza_sim):
    orders = cadenza_sim.create_orders(4)
    cadenza_sim.delay_cancel_reply(2.0)
    async with client_for(cadenza_sim) as client:
        before = other_tasks()
        results = await client.cancel_many([o.trade_order_id for o in orders], concurrency=4)
        assert all(isinstance(r, CancelResult) and r.cancelled for r in results)
        # The bulk is over; its workers still wait for the replies, owned by the client.
        assert len(other_tasks() - before) >= 1
    assert not {t for t in other_tasks() if not t.done()} - before
    cadenza_sim.delay_cancel_reply(0)


@pytest.mark.cadenza_sim(cancel_delay=0.5)  # the reply says PENDING_CANCEL; the event comes later
async def test_cancelling_the_bulk_never_cuts_a_request_another_caller_shares(cadenza_sim, client):
    order = cadenza_sim.create_order()
    oid = order.trade_order_id
    cadenza_sim.delay_rest(0.3, endpoint="cancel")
    bulk = asyncio.ensure_future(client.cancel_many([oid], timeout=STEP))
    # The worker's request is in the simulator's hands (held 0.3 s before it is handled).
    await cadenza_sim.wait_for(lambda: oid in cadenza_sim.max_concurrent_cancels, timeout=STEP)
    joiner = asyncio.ensure_future(client.cancel_and_confirm(oid, timeout=STEP))
    await asyncio.sleep(0)
    bulk.cancel()  # during the HTTP request
    with pytest.raises(asyncio.CancelledError):
        await bulk

    result = await asyncio.wait_for(joiner, STEP)

    assert result.cancelled is True
    assert result.acked_after is not None  # the worker read the reply to its end
    assert cancels_of(cadenza_sim, oid) == ["http"]  # the one request, not cut and sent again
    assert cadenza_sim.max_concurrent_cancels[oid] == 1
    cadenza_sim.delay_rest(0, endpoint="cancel")


@pytest.mark.cadenza_sim(cancel_delay=0)
async def test_cancelling_the_bulk_stops_a_request_nobody_else_waits_for(cadenza_sim, client):
    orders = cadenza_sim.create_orders(3)
    cadenza_sim.delay_rest(2.0, endpoint="cancel")
    before = other_tasks()
    bulk = asyncio.ensure_future(
        client.cancel_many([o.trade_order_id for o in orders], concurrency=3, timeout=STEP)
    )
    await cadenza_sim.wait_for(lambda: len(cadenza_sim.max_concurrent_cancels) == 3, timeout=STEP)
    bulk.cancel()
    with pytest.raises(asyncio.CancelledError):
        await bulk

    assert other_tasks() <= before  # the workers ended with the caller
    assert waiters_held(client) == 0
    cadenza_sim.delay_rest(0, endpoint="cancel")


@pytest.mark.cadenza_sim(cancel_delay=0)
async def test_a_joiner_keeps_its_own_deadline_past_the_bulks(cadenza_sim, client):
    order = cadenza_sim.create_order()
    oid = order.trade_order_id
    cadenza_sim.delay_rest(1.0, endpoint="cancel")  # held 1 s before it is applied
    loop = asyncio.get_running_loop()
    started = loop.time()
    bulk = asyncio.ensure_future(client.cancel_many([oid], timeout=0.5))
    await cadenza_sim.wait_for(lambda: oid in cadenza_sim.max_concurrent_cancels, timeout=STEP)
    joiner = asyncio.ensure_future(client.cancel_and_confirm(oid, timeout=STEP))

    (outcome,) = await asyncio.wait_for(bulk, STEP)
    bulk_ended = loop.time() - started
    result = await asyncio.wait_for(joiner, STEP)

    assert isinstance(outcome, ConfirmationTimeout)  # the bulk's order ends at its own deadline
    assert bulk_ended < 0.5 + SLACK
    assert result.cancelled is True  # the joiner's job went on after the worker stopped
    assert cadenza_sim.get_order(oid).status == "CANCELLED"
    assert cadenza_sim.max_concurrent_cancels[oid] == 1
    cadenza_sim.delay_rest(0, endpoint="cancel")
