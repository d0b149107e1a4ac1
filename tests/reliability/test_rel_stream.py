"""Reliability matrix rows 7, 8, 13-17 and 21-26: the stream is mute, lossy, hostile or wrong.

Each test keeps a cancel pending while the fault happens and checks that
it still ends in exactly one outcome that agrees with the simulator.
"""

from __future__ import annotations

import asyncio
import os

import msgspec
import pytest
from aiohttp import WSMsgType
from rel_support import (
    STEP,
    UpdateLog,
    assert_consistent,
    client_on,
    lookups,
    wait_until,
)
from support import has_update_reader

from cadenza_async.errors import (
    AuthenticationError,
    ConfirmationTimeout,
    StreamError,
)
from cadenza_async.testing import CadenzaSimulator


def pending_cancel(client, order_id: str, timeout: float = STEP) -> asyncio.Task:
    return asyncio.ensure_future(client.cancel_and_confirm(order_id, timeout=timeout))


async def pending_on_exchange(sim: CadenzaSimulator, order_id: str) -> None:
    await wait_until(lambda: sim.get_order(order_id).status == "PENDING_CANCEL")


def wire(order) -> dict:
    return msgspec.to_builtins(order)


def event(data: object) -> dict:
    """An order-update publication as the exchange sends it."""
    return {"metadata": {"eventId": "e-1", "eventType": "event.trade_order.updated"}, "data": data}


def push(sim: CadenzaSimulator, data: dict, offset: int) -> str:
    channel = f"tradingAccount:{sim.trading_account_id}"
    return msgspec.json.encode(
        {"push": {"channel": channel, "pub": {"data": data, "offset": offset}}}
    ).decode()


# --------------------------------------------------------------------------- row 7


@pytest.mark.parametrize(
    ("cancel_delay", "expected"),
    [(0.05, "rest"), (1000, "timeout")],
    ids=["exchange-done-rest-proves-it", "still-pending-typed-timeout"],
)
async def test_row07_mute_stream_ends_in_a_rest_lookup_or_a_typed_timeout(cancel_delay, expected):
    async with CadenzaSimulator(cancel_delay=cancel_delay) as sim, client_on(sim) as client:
        order = sim.create_order()
        sim.pause_publications()  # connected, pinging, but no publication ever arrives

        try:
            outcome: object = await asyncio.wait_for(
                client.cancel_and_confirm(order.trade_order_id, timeout=0.4), STEP
            )
        except ConfirmationTimeout as exc:
            outcome = exc

        assert_consistent(sim, order.trade_order_id, outcome)
        if expected == "rest":
            assert outcome.source == "rest"
            assert outcome.cancelled
        else:
            assert isinstance(outcome, ConfirmationTimeout)
            assert outcome.last_known is not None
            assert outcome.last_known.status == "PENDING_CANCEL"  # not invented as CANCELLED
        assert lookups(sim) == [order.trade_order_id]  # the deadline's one look-up


# --------------------------------------------------------------------------- row 8


@pytest.mark.cadenza_sim(cancel_delay=0.01)
async def test_row08_stuck_update_reader_keeps_a_bounded_buffer_and_confirmations_flow(
    cadenza_sim,
):
    async with client_on(cadenza_sim, order_updates_buffer=4) as client:
        stuck = client.order_updates()
        first = asyncio.ensure_future(stuck.__anext__())  # reads one, then never again
        await wait_until(lambda: has_update_reader(client))
        orders = cadenza_sim.create_orders(40)

        results = await asyncio.wait_for(
            client.cancel_many([o.trade_order_id for o in orders], timeout=STEP), 2 * STEP
        )

        assert [(r.cancelled, r.source) for r in results] == [(True, "ws")] * 40
        readers = list(client._updates._readers)
        assert readers
        assert all(len(reader.buffer) <= 4 for reader in readers)  # memory bounded
        assert client.stats().updates_dropped >= 40 * 2 - 4 - 1  # overflow counted, not silent
        await asyncio.wait_for(first, STEP)
        await stuck.aclose()


# --------------------------------------------------------------------------- row 13


@pytest.mark.cadenza_sim(cancel_delay=1000)
async def test_row13_duplicated_and_replayed_publications_are_applied_once(cadenza_sim):
    async with client_on(cadenza_sim) as client, UpdateLog(client) as log:
        orders = cadenza_sim.create_orders(3)
        ids = [o.trade_order_id for o in orders]
        tasks = [pending_cancel(client, i) for i in ids]
        await log.wait(lambda: all(log.of(i) == ["PENDING_CANCEL"] for i in ids))
        _epoch, top = cadenza_sim.channel_position()
        # Replays of what was seen, at their old offsets (an overlapping recovery reply).
        for offset, order_id in enumerate(ids, start=top - 2):
            pending = wire(cadenza_sim.get_order(order_id))
            await cadenza_sim.send_raw(push(cadenza_sim, pending, offset))
        cadenza_sim.duplicate_next_publications(3)
        cadenza_sim.pause_publications()
        cadenza_sim.set_status(ids[0], "CANCELLED")
        await cadenza_sim.disconnect_all(3001)  # the recovery replays ids[0]'s end
        cadenza_sim.resume_publications()
        cadenza_sim.set_status(ids[1], "CANCELLED")  # live, delivered twice
        cadenza_sim.set_status(ids[2], "CANCELLED")

        results = await asyncio.wait_for(asyncio.gather(*tasks), STEP)
        await log.wait(lambda: all(log.of(i)[-1:] == ["CANCELLED"] for i in ids))

        for order_id, result in zip(ids, results, strict=True):
            assert_consistent(cadenza_sim, order_id, result)
            assert log.of(order_id) == ["PENDING_CANCEL", "CANCELLED"]  # each event once
        assert lookups(cadenza_sim) == []  # nothing was lost, so nothing to reconcile


# --------------------------------------------------------------------------- row 14


@pytest.mark.cadenza_sim(cancel_delay=1000)
async def test_row14_unrecovered_position_reconciles_every_pending_cancel_by_rest(cadenza_sim):
    async with client_on(cadenza_sim) as client:
        orders = cadenza_sim.create_orders(5)
        ids = [o.trade_order_id for o in orders]
        tasks = [pending_cancel(client, i) for i in ids]
        for order_id in ids:
            await pending_on_exchange(cadenza_sim, order_id)
        await wait_until(lambda: client.stats().pending_cancels == 5)

        cadenza_sim.pause_publications()
        await cadenza_sim.disconnect_all(3001)
        cadenza_sim.set_status(ids[0], "CANCELLED")
        cadenza_sim.fill(ids[1])
        cadenza_sim.set_status(ids[2], "CANCELLED")
        cadenza_sim.set_status(ids[3], "CANCELLED")
        cadenza_sim.lose_history()  # new epoch: the server answers recovered: false
        cadenza_sim.resume_publications()
        # ids[4] stays PENDING_CANCEL on the exchange: it must not be invented as final.

        _done, still = await asyncio.wait(tasks[:4], timeout=STEP)
        assert not still
        results = [t.result() for t in tasks[:4]]
        for order_id, result in zip(ids[:4], results, strict=True):
            assert_consistent(cadenza_sim, order_id, result)
            assert result.source == "rest"
        assert [r.status for r in results] == ["CANCELLED", "FILLED", "CANCELLED", "CANCELLED"]
        assert client.stats().pending_cancels == 1
        cadenza_sim.set_status(ids[4], "CANCELLED")
        last = await asyncio.wait_for(tasks[4], STEP)
        assert_consistent(cadenza_sim, ids[4], last)
        assert client.stats().pending_cancels == 0  # nothing stuck pending


# --------------------------------------------------------------------------- row 15


@pytest.mark.cadenza_sim(cancel_delay=1000)
async def test_row15_offset_gap_on_a_live_connection_is_reconciled_not_accepted(cadenza_sim):
    async with client_on(cadenza_sim) as client:
        first, second = cadenza_sim.create_orders(2)
        tasks = [pending_cancel(client, o.trade_order_id) for o in (first, second)]
        for order in (first, second):
            await pending_on_exchange(cadenza_sim, order.trade_order_id)
        await wait_until(lambda: client.stats().pending_cancels == 2)
        before = len(lookups(cadenza_sim))

        # Offsets n+1 and n+2 arrive as n+2, n+1: the first is a gap, the second a stale replay.
        cadenza_sim.reorder_next_publications(2)
        cadenza_sim.set_status(first.trade_order_id, "CANCELLED")
        cadenza_sim.set_status(second.trade_order_id, "CANCELLED")

        one, two = await asyncio.wait_for(asyncio.gather(*tasks), STEP)

        assert_consistent(cadenza_sim, first.trade_order_id, one)
        assert_consistent(cadenza_sim, second.trade_order_id, two)
        assert two.source == "ws"
        assert one.source == "rest"  # its event was skipped over: REST proved it
        assert first.trade_order_id in lookups(cadenza_sim)[before:]


# --------------------------------------------------------------------------- row 16


@pytest.mark.parametrize("code", [3001, 3011, 3012])
@pytest.mark.cadenza_sim(cancel_delay=1000)
async def test_row16_reconnect_close_codes_reconnect_and_the_cancel_confirms(cadenza_sim, code):
    async with client_on(cadenza_sim) as client:
        order = cadenza_sim.create_order()
        task = pending_cancel(client, order.trade_order_id)
        await pending_on_exchange(cadenza_sim, order.trade_order_id)

        await cadenza_sim.disconnect_all(code, "reconnect")
        await wait_until(lambda: cadenza_sim.connect_count == 2 and cadenza_sim.connections == 1)
        cadenza_sim.set_status(order.trade_order_id, "CANCELLED")
        result = await asyncio.wait_for(task, STEP)

        assert_consistent(cadenza_sim, order.trade_order_id, result)
        assert (result.cancelled, result.source) == (True, "ws")


@pytest.mark.parametrize("code", [3500, 3501, 3503])
@pytest.mark.cadenza_sim(cancel_delay=1000)
async def test_row16_terminal_close_codes_leave_every_waiter_to_rest_proof_without_reconnecting(
    cadenza_sim, code
):
    async with client_on(cadenza_sim) as client:
        orders = cadenza_sim.create_orders(3)
        tasks = [pending_cancel(client, o.trade_order_id, timeout=30) for o in orders]
        last = cadenza_sim.create_order()
        handle = client.cancel_nowait(last.trade_order_id, timeout=30)
        for order in [*orders, last]:
            await pending_on_exchange(cadenza_sim, order.trade_order_id)

        await cadenza_sim.disconnect_all(code, "terminal")
        await wait_until(lambda: client.stats().degraded)
        # The exchange applies every cancel; no event can tell: REST polling does.
        loop = asyncio.get_running_loop()
        applied_at = loop.time()
        for order in [*orders, last]:
            cadenza_sim.set_status(order.trade_order_id, "CANCELLED")
        outcomes = await asyncio.wait_for(asyncio.gather(*tasks, handle), STEP)
        elapsed = loop.time() - applied_at

        assert all((o.cancelled, o.source) == (True, "rest") for o in outcomes), outcomes
        assert elapsed < 3.0  # polling backs off from 0.1 s up to 2 s between look-ups
        assert cadenza_sim.connect_count == 1
        # every REST request made to prove them is counted, each once (one listing of the
        # account serves its four polling cancels)
        assert client.stats().rest_polls == len(lookups(cadenza_sim)) >= 1


# --------------------------------------------------------------------------- row 17


@pytest.mark.cadenza_sim(cancel_delay=0.05)
async def test_row17_expired_tokens_are_refreshed_through_the_provider_without_a_loop(
    cadenza_sim,
):
    issued: list[str] = []
    expired_first = cadenza_sim.issue_token()
    cadenza_sim.expire_token(expired_first)

    def provider() -> str:
        # 1st: already expired (connect answers 109); then short-lived tokens (ttl refresh).
        token = expired_first if not issued else cadenza_sim.issue_token(ttl=1.5)
        issued.append(token)
        return token

    async with client_on(cadenza_sim, token=provider) as client:
        assert len(issued) == 2  # 109 -> one refresh -> connected
        first = cadenza_sim.create_order()
        assert (await client.cancel_and_confirm(first.trade_order_id)).cancelled

        # The live token expires on the server: close 3005 on the socket, 401 on REST.
        cadenza_sim.expire_token(issued[-1])
        second = cadenza_sim.create_order()
        result = await client.cancel_and_confirm(second.trade_order_id)
        assert_consistent(cadenza_sim, second.trade_order_id, result)
        assert result.cancelled
        await wait_until(lambda: client.stats().stream_connected)

        # The ttl-based refresh runs on the open connection (no reconnect needed).
        count = len(issued)
        reconnects = client.stats().stream_reconnects
        await wait_until(lambda: len(issued) > count, timeout=STEP)
        assert client.stats().stream_reconnects == reconnects
        third = cadenza_sim.create_order()
        assert (await client.cancel_and_confirm(third.trade_order_id)).cancelled
        assert len(issued) <= 6  # a handful of refreshes, never a loop


@pytest.mark.cadenza_sim(cancel_delay=1000)
async def test_row17_failing_token_provider_ends_in_a_typed_auth_error(cadenza_sim):
    calls = []

    def provider() -> str:
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("the vault is down")
        return live

    live = cadenza_sim.issue_token()
    async with client_on(cadenza_sim, token=provider) as client:
        order = cadenza_sim.create_order()
        task = pending_cancel(client, order.trade_order_id, timeout=30)
        await pending_on_exchange(cadenza_sim, order.trade_order_id)

        cadenza_sim.expire_token(live)  # 3005: the stream needs a new token and cannot get one
        with pytest.raises((StreamError, AuthenticationError)):
            await asyncio.wait_for(task, STEP)
        other = cadenza_sim.create_order()
        with pytest.raises((StreamError, AuthenticationError)):
            await asyncio.wait_for(client.cancel_and_confirm(other.trade_order_id), STEP)
        # No refresh loop: the first token, the stream's one refresh, then one
        # refresh per REST caller that met the 401 (the pending cancel, the new one).
        assert len(calls) <= 4


# --------------------------------------------------------------------------- row 21


@pytest.mark.cadenza_sim(cancel_delay=1000)
async def test_row21_frame_over_max_size_closes_reconnects_and_recovers(cadenza_sim):
    async with client_on(cadenza_sim) as client:
        order = cadenza_sim.create_order()
        task = pending_cancel(client, order.trade_order_id)
        await pending_on_exchange(cadenza_sim, order.trade_order_id)

        # 1.5 MiB of random text (incompressible) against the client's 1 MiB max_size.
        await cadenza_sim.send_raw(os.urandom(768 * 1024).hex())
        await wait_until(
            lambda: client.stats().stream_reconnects >= 1 and client.stats().stream_connected
        )
        cadenza_sim.set_status(order.trade_order_id, "CANCELLED")
        result = await asyncio.wait_for(task, STEP)

        assert_consistent(cadenza_sim, order.trade_order_id, result)
        assert result.cancelled
        assert cadenza_sim.connect_count == 2  # one reconnect, no loop


# --------------------------------------------------------------------------- rows 22, 23


BAD_FRAMES = {
    "invalid-json": "{not json",
    "binary": b"\x00\x01binary",
    "blank-line": "{}\n\n{}",
    "empty": "",
    "null": "null",
    "deeply-nested": "[" * 30_000 + "]" * 30_000,
    "nested-object": '{"a":' * 30_000 + "1" + "}" * 30_000,
}


@pytest.mark.parametrize("frame", list(BAD_FRAMES.values()), ids=list(BAD_FRAMES))
@pytest.mark.cadenza_sim(cancel_delay=1000)
async def test_row22_23_bad_frame_is_rejected_and_the_reader_reconnects_cleanly(
    cadenza_sim, frame, caplog
):
    async with client_on(cadenza_sim) as client:
        order = cadenza_sim.create_order()
        task = pending_cancel(client, order.trade_order_id)
        await pending_on_exchange(cadenza_sim, order.trade_order_id)

        await cadenza_sim.send_raw(frame)
        cadenza_sim.set_status(order.trade_order_id, "CANCELLED")  # maybe while reconnecting
        result = await asyncio.wait_for(task, STEP)

        assert_consistent(cadenza_sim, order.trade_order_id, result)
        assert result.cancelled
        await wait_until(
            lambda: client.stats().stream_reconnects == 1 and client.stats().stream_connected
        )
        assert any("reconnecting" in r.getMessage() for r in caplog.records)  # never silent
        second = cadenza_sim.create_order()
        cadenza_sim.cancel_delay = 0.01
        assert (await client.cancel_and_confirm(second.trade_order_id)).source == "ws"


@pytest.mark.cadenza_sim(cancel_delay=1000)
async def test_row22_invalid_utf8_text_frame_is_rejected_and_the_reader_reconnects(cadenza_sim):
    async with client_on(cadenza_sim) as client:
        order = cadenza_sim.create_order()
        task = pending_cancel(client, order.trade_order_id)
        await pending_on_exchange(cadenza_sim, order.trade_order_id)

        (conn,) = list(cadenza_sim._conns)  # no public fault sends a broken text frame
        await conn._ws.send_frame(b'{"push":"\xff\xfe"}', WSMsgType.TEXT)
        await wait_until(
            lambda: client.stats().stream_reconnects == 1 and client.stats().stream_connected
        )
        cadenza_sim.set_status(order.trade_order_id, "CANCELLED")
        result = await asyncio.wait_for(task, STEP)

        assert_consistent(cadenza_sim, order.trade_order_id, result)
        assert result.cancelled


@pytest.mark.cadenza_sim(cancel_delay=1000)
async def test_row23_deeply_nested_publication_data_is_dropped_without_a_reconnect_loop(
    cadenza_sim,
):
    async with client_on(cadenza_sim) as client:
        order = cadenza_sim.create_order()
        task = pending_cancel(client, order.trade_order_id, timeout=1.0)
        await pending_on_exchange(cadenza_sim, order.trade_order_id)

        # A poisoned publication in the channel's history: a reconnect replays it.
        cadenza_sim.publish_raw_order_update(None, b"[" * 30_000 + b"]" * 30_000)
        cadenza_sim.set_status(order.trade_order_id, "CANCELLED")
        result = await asyncio.wait_for(task, STEP)

        assert_consistent(cadenza_sim, order.trade_order_id, result)
        assert result.cancelled
        assert cadenza_sim.connect_count <= 2  # at most one reconnect, never a loop
        assert client.stats().stream_connected


# --------------------------------------------------------------------------- row 24


BAD_UPDATES = {
    "status-not-a-string": {"status": 5},
    "status-an-object": {"status": {"x": 1}},
    "time-not-a-time": {"updatedAt": "yesterday"},
    "id-not-a-string": {"tradeOrderId": 12},
    "quantity-object": {"quantity": {"x": 1}},
    "data-is-a-list": None,
}


@pytest.mark.parametrize("change", list(BAD_UPDATES.values()), ids=list(BAD_UPDATES))
@pytest.mark.cadenza_sim(cancel_delay=1000)
async def test_row24_malformed_update_never_resolves_and_valid_data_does_later(cadenza_sim, change):
    async with client_on(cadenza_sim) as client, UpdateLog(client) as log:
        order = cadenza_sim.create_order()
        marker = cadenza_sim.create_order()
        task = pending_cancel(client, order.trade_order_id)
        await pending_on_exchange(cadenza_sim, order.trade_order_id)

        if change is None:
            bad: object = [wire(cadenza_sim.get_order(order.trade_order_id)) | {"status": "X"}]
        else:
            base = wire(cadenza_sim.get_order(order.trade_order_id))
            base["status"] = "CANCELLED"
            base["updatedAt"] = base["updatedAt"] + 1
            bad = {k: v for k, v in (base | change).items() if v is not None}
        cadenza_sim.publish_raw_order_update(None, event(bad))
        cadenza_sim.fill(marker.trade_order_id)  # a valid update after the bad one
        await log.wait(lambda: log.of(marker.trade_order_id) == ["FILLED"])

        assert not task.done()  # the bad update proved nothing
        assert client.bad_events >= 1
        cadenza_sim.set_status(order.trade_order_id, "CANCELLED")
        result = await asyncio.wait_for(task, STEP)
        assert_consistent(cadenza_sim, order.trade_order_id, result)
        assert (result.cancelled, result.source) == (True, "ws")


# --------------------------------------------------------------------------- row 25


@pytest.mark.cadenza_sim(cancel_delay=1000)
async def test_row25_update_naming_another_account_is_dropped_with_a_warning(cadenza_sim, caplog):
    other_account = cadenza_sim.add_account()
    async with client_on(cadenza_sim) as client, UpdateLog(client) as log:
        order = cadenza_sim.create_order()
        marker = cadenza_sim.create_order()
        task = pending_cancel(client, order.trade_order_id)
        await pending_on_exchange(cadenza_sim, order.trade_order_id)
        forged = wire(cadenza_sim.get_order(order.trade_order_id))
        forged.update(
            status="CANCELLED", updatedAt=forged["updatedAt"] + 1, tradingAccountId=other_account
        )

        cadenza_sim.publish_raw_order_update(None, event(forged))  # our channel, another account
        cadenza_sim.publish_raw_order_update(other_account, event(forged))  # channel not joined
        cadenza_sim.fill(marker.trade_order_id)
        await log.wait(lambda: log.of(marker.trade_order_id) == ["FILLED"])

        assert not task.done()
        assert log.of(order.trade_order_id) == ["PENDING_CANCEL"]  # the forgery never surfaced
        assert any("another account" in r.getMessage() for r in caplog.records)
        cadenza_sim.set_status(order.trade_order_id, "CANCELLED")
        result = await asyncio.wait_for(task, STEP)
        assert_consistent(cadenza_sim, order.trade_order_id, result)


# --------------------------------------------------------------------------- row 26


@pytest.mark.cadenza_sim(cancel_delay=1000)
async def test_row26_unknown_pushes_fields_and_statuses_are_ignored_without_error(cadenza_sim):
    async with client_on(cadenza_sim) as client:
        order = cadenza_sim.create_order()
        task = pending_cancel(client, order.trade_order_id)
        await pending_on_exchange(cadenza_sim, order.trade_order_id)
        channel = f"tradingAccount:{cadenza_sim.trading_account_id}"

        for frame in (
            {"push": {"channel": channel, "message": {"data": {"hello": 1}}}},
            {"push": {"channel": channel, "join": {"info": {"user": "u"}}}},
            {"push": {"channel": channel, "somethingNew": {"v": 2}}},
            {"push": {"channel": "elsewhere", "pub": {"data": {"x": 1}, "offset": 9}}},
            {"futureTopLevel": True, "push": {"channel": channel, "leave": {}}},
        ):
            await cadenza_sim.send_raw(msgspec.json.encode(frame).decode())
        base = wire(cadenza_sim.get_order(order.trade_order_id))
        cadenza_sim.publish_raw_order_update(
            None,
            {
                "metadata": {"eventType": "event.trade_order.updated", "new": [1]},
                "data": base | {"status": "PAUSED_BY_VENUE", "updatedAt": base["updatedAt"] + 1},
            },
        )
        final = wire(cadenza_sim.set_status(order.trade_order_id, "CANCELLED", publish=False))
        final["updatedAt"] = max(final["updatedAt"], base["updatedAt"] + 2)
        cadenza_sim.publish_raw_order_update(None, event(final | {"venueExtra": {"k": [1]}}))
        result = await asyncio.wait_for(task, STEP)

        assert_consistent(cadenza_sim, order.trade_order_id, result)
        assert (result.cancelled, result.status, result.source) == (True, "CANCELLED", "ws")
        assert client.bad_events == 0
        assert client.stats().stream_reconnects == 0
        assert cadenza_sim.connect_count == 1
