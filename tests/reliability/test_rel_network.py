"""Reliability matrix rows 1-6 and 9: the network misbehaves between the client and the exchange.

The client talks to the simulator through a :class:`FaultProxy` (latency,
slicing, bandwidth cap, reset mid-frame, blackhole) or a handshake gate
that fails the first WebSocket upgrades.
"""

from __future__ import annotations

import asyncio
import os
import random

import pytest
from rel_support import (
    STEP,
    HandshakeGate,
    UpdateLog,
    assert_consistent,
    client_on,
    seed_stream_rng,
    wait_until,
)
from support import cancels_of

from cadenza_async.config import Timeouts
from cadenza_async.protocol.centrifugo import reconnect_delays
from cadenza_async.testing import CadenzaSimulator
from cadenza_async.testing.faults import FaultProxy

FAST_RECONNECT = {"reconnect_min_delay": 0.01, "reconnect_max_delay": 0.05}


def via(px: FaultProxy, sim: CadenzaSimulator, *, api: bool = True, ws: bool = True) -> dict:
    """Client URL options that route REST and/or the WebSocket through ``px``."""
    options = {}
    if api:
        options["api_url"] = px.url(sim.api_url)
    if ws:
        options["ws_url"] = px.url(sim.ws_url)
    return options


# --------------------------------------------------------------------------- row 1


@pytest.mark.cadenza_sim(cancel_delay=0.05, ping_interval=0.25, pong_timeout=2.0)
async def test_row01_300ms_latency_both_ways_confirms_without_false_timeouts(cadenza_sim):
    async with FaultProxy("127.0.0.1", cadenza_sim.port) as px:
        px.latency = 0.3
        async with client_on(cadenza_sim, **via(px, cadenza_sim)) as client:
            orders = cadenza_sim.create_orders(6)
            ids = [o.trade_order_id for o in orders]

            results = await asyncio.wait_for(client.cancel_many(ids, timeout=4.0), 3 * STEP)

            assert [(r.cancelled, r.status) for r in results] == [(True, "CANCELLED")] * 6
            for order_id, result in zip(ids, results, strict=True):
                assert_consistent(cadenza_sim, order_id, result)
                assert cancels_of(cadenza_sim, order_id) == ["http"]
            assert cadenza_sim.pongs_received >= 1  # pings crossed the slow link
            assert cadenza_sim.connect_count == 1
            assert client.stats().stream_reconnects == 0


# --------------------------------------------------------------------------- row 2


@pytest.mark.cadenza_sim(cancel_delay=0.02)
async def test_row02_one_byte_writes_and_joined_frames_give_the_same_events_as_unsliced(
    cadenza_sim,
):
    async with FaultProxy("127.0.0.1", cadenza_sim.port) as px:
        px.downstream.slice_size = 1
        px.upstream.slice_size = 3
        async with (
            client_on(cadenza_sim) as direct,
            client_on(cadenza_sim, **via(px, cadenza_sim, api=False)) as sliced,
            UpdateLog(direct) as plain,
            UpdateLog(sliced) as cut,
        ):
            orders = cadenza_sim.create_orders(8, quantity="2")
            # Filled in one go: the simulator joins the ready pushes with "\n" in one frame.
            for order in orders:
                cadenza_sim.fill(order.trade_order_id, "1")
            expected = [(o.trade_order_id, "PARTIALLY_FILLED") for o in orders]
            await plain.wait(lambda: len(plain.seen) >= 8)
            await cut.wait(lambda: len(cut.seen) >= 8)

            results = await sliced.cancel_many([o.trade_order_id for o in orders], timeout=STEP)
            await cut.wait(lambda: len(cut.seen) >= 16)
            await plain.wait(lambda: len(plain.seen) >= 16)

            assert plain.seen[:8] == expected
            assert cut.seen == plain.seen
            assert [(r.cancelled, r.source) for r in results] == [(True, "ws")] * 8
            assert sliced.stats().stream_reconnects == 0


# --------------------------------------------------------------------------- row 3


@pytest.mark.cadenza_sim(cancel_delay=0, ping_interval=0.2, pong_timeout=5.0, history_size=300)
async def test_row03_bandwidth_cap_during_a_big_recovery_reply_is_not_a_missing_ping(
    cadenza_sim,
):
    async with FaultProxy("127.0.0.1", cadenza_sim.port) as px:
        async with client_on(
            cadenza_sim, **via(px, cadenza_sim, api=False), **FAST_RECONNECT, ping_grace=0.4
        ) as client:
            # 200 updates go into history while the client is away: one ~80 KB recovery reply.
            cadenza_sim.pause_publications()
            orders = [
                cadenza_sim.create_order(publish=True, client_order_id=os.urandom(100).hex())
                for _ in range(200)
            ]
            await cadenza_sim.disconnect_all(3001)
            cadenza_sim.resume_publications()
            px.downstream.bandwidth = 40_000  # ~2 s for the reply; silence limit is 0.6 s
            async with UpdateLog(client) as log:
                # ends at all 200 updates, or at the first spurious reconnect
                await wait_until(
                    lambda: len(log.seen) >= 200 or client.stats().stream_reconnects >= 2,
                    timeout=4 * STEP,
                )
            px.downstream.bandwidth = None

            assert [oid for oid, _ in log.seen] == [o.trade_order_id for o in orders]
            # the 3001 only: no spurious "no ping" drop
            assert client.stats().stream_reconnects == 1
            assert cadenza_sim.connect_count == 2


# --------------------------------------------------------------------------- row 4


@pytest.mark.cadenza_sim(cancel_delay=0.15)
async def test_row04_reset_mid_push_reconnects_with_backoff_and_confirms_each_event_once(
    cadenza_sim,
):
    async with FaultProxy("127.0.0.1", cadenza_sim.port) as px:
        async with (
            client_on(cadenza_sim, **via(px, cadenza_sim, api=False)) as client,
            UpdateLog(client) as log,
        ):
            orders = cadenza_sim.create_orders(3)
            ids = [o.trade_order_id for o in orders]
            loop = asyncio.get_running_loop()
            fired = px.reset_after(40)  # inside the first PENDING_CANCEL push
            task = asyncio.ensure_future(client.cancel_many(ids, timeout=STEP))
            await asyncio.wait_for(fired.wait(), STEP)
            reset_at = loop.time()
            await px.wait_for_connections(2, timeout=STEP)
            reconnect_gap = loop.time() - reset_at
            results = await asyncio.wait_for(task, 2 * STEP)
            await log.wait(lambda: all(log.of(i)[-1:] == ["CANCELLED"] for i in ids))

            assert reconnect_gap >= 0.1  # the client waited (backoff floor), not a hot loop
            for order_id, result in zip(ids, results, strict=True):
                assert_consistent(cadenza_sim, order_id, result)
                assert result.cancelled
                assert cadenza_sim.cancels_applied[order_id] == 1
                # each update delivered once, the cut one included (recovered, not lost)
                assert log.of(order_id) == ["PENDING_CANCEL", "CANCELLED"]
            assert cadenza_sim.connect_count == 2


# --------------------------------------------------------------------------- row 5


@pytest.mark.cadenza_sim(cancel_delay=0.05, ping_interval=0.2, pong_timeout=30.0)
async def test_row05_half_open_link_is_detected_within_ping_plus_grace_and_cancel_resolves(
    cadenza_sim,
):
    grace = 0.3
    async with FaultProxy("127.0.0.1", cadenza_sim.port) as px:
        async with client_on(
            cadenza_sim, **via(px, cadenza_sim, api=False), **FAST_RECONNECT, ping_grace=grace
        ) as client:
            order = cadenza_sim.create_order()
            loop = asyncio.get_running_loop()
            px.blackhole()  # no FIN, no RST: the socket looks alive
            silent_at = loop.time()
            task = asyncio.ensure_future(client.cancel_and_confirm(order.trade_order_id))
            await wait_until(
                lambda: not client.stats().stream_connected, what="half-open link detected"
            )
            detected = loop.time() - silent_at
            await px.wait_for_connections(2)  # it dials again (held by the blackhole)
            px.restore()
            result = await asyncio.wait_for(task, STEP)

            # ping interval + grace = 0.5 s; the bound leaves room for a loaded machine
            assert detected < 0.2 + grace + 2.0
            assert_consistent(cadenza_sim, order.trade_order_id, result)
            assert result.cancelled
            assert cadenza_sim.cancels_applied[order.trade_order_id] == 1
            await wait_until(
                lambda: client.stats().stream_connected and client.stats().stream_reconnects >= 1
            )


# --------------------------------------------------------------------------- row 6


@pytest.mark.cadenza_sim(cancel_delay=0.05, ping_interval=0.2, pong_timeout=30.0)
async def test_row06_server_that_stops_pinging_is_dropped_within_a_bounded_time(
    cadenza_sim,
):
    grace = 0.3
    async with client_on(cadenza_sim, **FAST_RECONNECT, ping_grace=grace) as client:
        loop = asyncio.get_running_loop()
        await wait_until(lambda: cadenza_sim.pongs_received >= 1)
        cadenza_sim.stop_pinging()
        stopped_at = loop.time()
        await wait_until(lambda: cadenza_sim.connect_count >= 2, what="reconnected")
        detected = loop.time() - stopped_at
        cadenza_sim.resume_pinging()
        order = cadenza_sim.create_order()
        result = await client.cancel_and_confirm(order.trade_order_id)

        # last ping at most one interval before the stop, then interval + grace of silence
        assert detected < 2 * 0.2 + grace + 2.0
        assert (result.cancelled, result.source) == (True, "ws")
        assert client.stats().stream_reconnects >= 1


# --------------------------------------------------------------------------- row 9


@pytest.mark.cadenza_sim(cancel_delay=0.05)
async def test_row09_failing_handshakes_back_off_with_full_jitter_and_a_cap_one_socket_at_a_time(
    cadenza_sim, monkeypatch
):
    seed, low, high = 7, 0.02, 0.4
    seed_stream_rng(monkeypatch, random.Random(seed))
    script = ["503", "close", "503", "503", "close", "503", "503"]
    drawn = reconnect_delays(low, high, random.Random(seed))
    expected = [next(drawn) for _ in script]
    async with HandshakeGate(cadenza_sim.port, script) as gate:
        async with client_on(
            cadenza_sim,
            ws_url=gate.url(),
            timeouts=Timeouts(connect=STEP, request=2.0, confirm=STEP),
            reconnect_min_delay=low,
            reconnect_max_delay=high,
        ) as client:
            # The client entered at the first refusal (degraded); the stream keeps trying.
            await wait_until(lambda: client.stats().stream_connected, what="connected")
            order = cadenza_sim.create_order()
            result = await client.cancel_and_confirm(order.trade_order_id)

        gaps = [b - a for a, b in zip(gate.attempts, gate.attempts[1:], strict=False)]
        assert len(gate.attempts) == len(script) + 1
        assert gate.max_live == 1  # never a second socket while one is open
        # Each wait lasted at least the drawn full-jitter delay (so they grow with the
        # attempt count), and no wait ran away past the cap (generous margin for load).
        for gap, delay in zip(gaps, expected, strict=True):
            assert gap >= delay - 0.005
            assert gap < high + 1.5
        assert max(expected) <= high
        assert expected[-1] > expected[0]
        assert (result.cancelled, result.source) == (True, "ws")
        # row 21 (compression bombs): the client never offers permessage-deflate
        assert all(b"permessage-deflate" not in head.lower() for head in gate.heads)
