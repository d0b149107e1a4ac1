"""cancel_and_confirm against the simulator over loopback sockets, one test per confirmation rule.

Each test drives the real client (aiohttp + websockets) against
:class:`~cadenza_async.testing.CadenzaSimulator` and checks what proved the
terminal state (``source``), what the exchange saw (``sim.cancel_requests``,
``sim.rest_requests``, ``sim.cancels_applied``) and what the caller got.
Synchronisation is by the simulator's ``wait_for``, events and bounded
timeouts, never by sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from support import cancels_of, client_for, has_update_reader, waiters_held

import cadenza_async
from cadenza_async import (
    CadenzaClient,
    ConfirmationTimeout,
    OrderNotFoundError,
    ServerError,
    Timeouts,
)
from cadenza_async.testing import CadenzaSimulator
from cadenza_async.testing.faults import FaultProxy

# Generous bound for one await: a hang fails the test instead of the session.
STEP = 5.0


def lookups(sim: CadenzaSimulator) -> list[dict]:
    """The REST order look-ups (``GET .../list``) the simulator answered, as query dicts."""
    return [query for method, path, query in sim.rest_requests if method == "GET"]


async def wait_status(sim: CadenzaSimulator, order_id: str, status: str) -> None:
    await sim.wait_for(lambda: sim.get_order(order_id).status == status, timeout=STEP)


def background(coro) -> asyncio.Task:
    return asyncio.ensure_future(coro)


# --------------------------------------------------------------------------- rule 2: sources


@pytest.mark.cadenza_sim(cancel_delay=0.2)
async def test_exchange_delay_is_confirmed_by_the_event_after_a_pending_reply(
    cadenza_sim, open_client
):
    client = await open_client()
    order = cadenza_sim.create_order()

    result = await client.cancel_and_confirm(order.trade_order_id, timeout=STEP)

    assert result.cancelled is True
    assert result.status == "CANCELLED"
    assert result.source == "ws"
    # The HTTP reply (PENDING_CANCEL) came first; the event proved it later.
    assert result.acked_after is not None
    assert result.acked_after < result.latency
    assert cancels_of(cadenza_sim, order.trade_order_id) == ["http"]
    assert cadenza_sim.get_order(order.trade_order_id).status == "CANCELLED"
    assert lookups(cadenza_sim) == []


@pytest.mark.cadenza_sim(cancel_delay=0)
async def test_immediate_cancel_is_confirmed_by_the_http_reply(cadenza_sim, open_client):
    client = await open_client()
    order = cadenza_sim.create_order()
    cadenza_sim.pause_publications()  # only the HTTP reply can prove it

    result = await client.cancel_and_confirm(order.trade_order_id, timeout=STEP)

    assert (result.cancelled, result.status, result.source) == (True, "CANCELLED", "http")
    assert result.acked_after is not None
    assert lookups(cadenza_sim) == []


@pytest.mark.cadenza_sim(cancel_delay=0)
async def test_event_before_http_response_still_confirms(cadenza_sim):
    # REST goes through a proxy that holds every response 0.3 s; the WebSocket
    # is direct, so the CANCELLED event overtakes the HTTP answer.
    async with FaultProxy(target_host="127.0.0.1", target_port=cadenza_sim.port) as proxy:
        proxy.downstream.latency = 0.3
        async with CadenzaClient(
            token=cadenza_sim.token,
            api_url=proxy.url(cadenza_sim.api_url),
            ws_url=cadenza_sim.ws_url,
            trading_account_id=cadenza_sim.trading_account_id,
        ) as client:
            order = cadenza_sim.create_order()

            result = await client.cancel_and_confirm(order.trade_order_id, timeout=STEP)

    assert (result.cancelled, result.status, result.source) == (True, "CANCELLED", "ws")
    # Proven by the event before the cancel's own reply arrived: the call did
    # not wait for the reply (held 0.3 s by the proxy), and says it had none.
    assert result.acked_after is None
    assert result.latency < 0.3
    assert cancels_of(cadenza_sim, order.trade_order_id) == ["http"]


# --------------------------------------------------------------------------- fills


@pytest.mark.cadenza_sim(cancel_delay=0.05)
async def test_order_filled_before_the_cancel_is_a_result_not_an_error(cadenza_sim, open_client):
    client = await open_client()
    order = cadenza_sim.create_order()
    cadenza_sim.fill_on_next_cancel(order.trade_order_id)

    result = await client.cancel_and_confirm(order.trade_order_id, timeout=STEP)

    assert result.cancelled is False
    assert result.status == "FILLED"
    assert result.order.executed_quantity == result.order.quantity
    assert cadenza_sim.cancels_applied[order.trade_order_id] == 0


@pytest.mark.cadenza_sim(cancel_delay=30)
async def test_fill_during_the_exchange_delay_ends_filled(cadenza_sim, open_client):
    client = await open_client()
    order = cadenza_sim.create_order()
    task = background(client.cancel_and_confirm(order.trade_order_id, timeout=STEP))
    await wait_status(cadenza_sim, order.trade_order_id, "PENDING_CANCEL")

    cadenza_sim.fill(order.trade_order_id)
    result = await asyncio.wait_for(task, STEP)

    assert (result.cancelled, result.status, result.source) == (False, "FILLED", "ws")


# --------------------------------------------------------------------------- rule 3: cannot cancel


@pytest.mark.cadenza_sim(cancel_delay=0.05)
async def test_already_cancelled_order_is_a_success_proven_by_a_rest_lookup(
    cadenza_sim, open_client
):
    client = await open_client()
    order = cadenza_sim.create_order(status="CANCELLED")  # no event was ever published

    result = await client.cancel_and_confirm(order.trade_order_id, timeout=STEP)

    # The exchange answers "cannot cancel"; the look-up shows CANCELLED.
    assert (result.cancelled, result.status, result.source) == (True, "CANCELLED", "rest")
    assert cancels_of(cadenza_sim, order.trade_order_id) == ["http"]
    assert [q["tradeOrderId"] for q in lookups(cadenza_sim)] == [order.trade_order_id]


@pytest.mark.cadenza_sim(cancel_delay=0.05)
async def test_cancellation_seen_on_the_stream_confirms_without_sending_a_cancel(
    cadenza_sim, open_client
):
    # An order cancelled elsewhere while the client listens: the terminal
    # event waits in the early buffer, and a later cancel_and_confirm is
    # proven by it at once (an event is authoritative; nothing to send).
    client = await open_client()
    order = cadenza_sim.create_order()
    updates = client.order_updates()
    reader = background(updates.__anext__())
    await cadenza_sim.wait_for(lambda: has_update_reader(client), timeout=STEP)  # reader registered
    cadenza_sim.set_status(order.trade_order_id, "CANCELLED")
    seen = await asyncio.wait_for(reader, STEP)  # dispatched to the registry before readers
    assert seen.status == "CANCELLED"
    await updates.aclose()

    result = await client.cancel_and_confirm(order.trade_order_id, timeout=STEP)

    assert (result.cancelled, result.source) == (True, "ws")
    assert cadenza_sim.cancel_requests == []
    assert cadenza_sim.rest_requests == []


# --------------------------------------------------------------------------- errors


@pytest.mark.cadenza_sim(cancel_delay=0.05)
async def test_unknown_order_raises_order_not_found(cadenza_sim, open_client):
    client = await open_client()

    with pytest.raises(OrderNotFoundError) as info:
        await client.cancel_and_confirm("00000000-0000-4000-8000-00000000dead", timeout=STEP)

    assert info.value.order_id in (None, "00000000-0000-4000-8000-00000000dead")
    assert cancels_of(cadenza_sim, "00000000-0000-4000-8000-00000000dead") == ["http"]


@pytest.mark.parametrize(
    "bad_id",
    ["", " ", "a b", "../orders", "x" * 129, "id\n", "ordér", None, 42],
    ids=[
        "empty",
        "space",
        "inner-space",
        "path",
        "too-long",
        "newline",
        "non-ascii",
        "none",
        "int",
    ],
)
async def test_malformed_ids_raise_value_error_and_send_nothing(cadenza_sim, open_client, bad_id):
    client = await open_client()
    before = list(cadenza_sim.rest_requests)

    with pytest.raises(ValueError):
        await client.cancel_and_confirm(bad_id, timeout=STEP)

    assert cadenza_sim.cancel_requests == []
    assert cadenza_sim.rest_requests == before


# --------------------------------------------------------------------------- rule 6: timeout


@pytest.mark.cadenza_sim(cancel_delay=1000)
async def test_timeout_raises_with_the_last_known_state_after_one_final_lookup(
    cadenza_sim, open_client
):
    client = await open_client()
    order = cadenza_sim.create_order()
    cadenza_sim.pause_publications()

    started = time.monotonic()
    with pytest.raises(ConfirmationTimeout) as info:
        await client.cancel_and_confirm(order.trade_order_id, timeout=0.5)
    elapsed = time.monotonic() - started

    error = info.value
    assert error.order_id == order.trade_order_id
    assert error.last_known is not None
    assert error.last_known.status == "PENDING_CANCEL"
    assert elapsed >= 0.5
    # One cancel, then exactly one final look-up at the deadline.
    assert [(m, p) for m, p, _ in cadenza_sim.rest_requests] == [
        ("POST", "/api/v3/tradeOrder/cancel"),
        ("GET", "/api/v3/tradeOrder/list"),
    ]


# --------------------------------------------------------------------------- rule 5: the stream


@pytest.mark.cadenza_sim(cancel_delay=1000)
async def test_reconnect_with_recovery_confirms_by_the_recovered_event(cadenza_sim, open_client):
    client = await open_client()
    order = cadenza_sim.create_order()
    updates = client.order_updates()
    seen: list[str] = []
    all_seen = asyncio.Event()

    async def read() -> None:
        async for update in updates:
            if update.trade_order_id == order.trade_order_id:
                seen.append(update.status)
                if update.status == "CANCELLED":
                    all_seen.set()

    reader = background(read())
    await cadenza_sim.wait_for(lambda: has_update_reader(client), timeout=STEP)
    task = background(client.cancel_and_confirm(order.trade_order_id, timeout=STEP))
    await cadenza_sim.wait_for(lambda: "PENDING_CANCEL" in seen, timeout=STEP)

    # The exchange completes the cancel while the client is disconnected.
    cadenza_sim.pause_publications()
    await cadenza_sim.disconnect_all(3001)
    cadenza_sim.set_status(order.trade_order_id, "CANCELLED")
    cadenza_sim.resume_publications()

    result = await asyncio.wait_for(task, STEP)
    await asyncio.wait_for(all_seen.wait(), STEP)
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    await updates.aclose()

    assert (result.cancelled, result.source) == (True, "ws")
    assert cadenza_sim.connect_count == 2
    assert seen == ["PENDING_CANCEL", "CANCELLED"]  # each event once
    assert lookups(cadenza_sim) == []  # recovered: nothing to reconcile


@pytest.mark.cadenza_sim(cancel_delay=1000)
async def test_unrecovered_gap_reconciles_by_rest(cadenza_sim, open_client):
    client = await open_client()
    order = cadenza_sim.create_order()
    task = background(client.cancel_and_confirm(order.trade_order_id, timeout=STEP))
    await wait_status(cadenza_sim, order.trade_order_id, "PENDING_CANCEL")

    cadenza_sim.pause_publications()
    await cadenza_sim.disconnect_all(3001)
    cadenza_sim.set_status(order.trade_order_id, "CANCELLED")
    cadenza_sim.lose_history()
    cadenza_sim.resume_publications()

    result = await asyncio.wait_for(task, STEP)

    assert (result.cancelled, result.status, result.source) == (True, "CANCELLED", "rest")
    assert cadenza_sim.connect_count == 2
    assert [q["tradeOrderId"] for q in lookups(cadenza_sim)] == [order.trade_order_id]


@pytest.mark.parametrize("code", [3500, 3501, 3503])
@pytest.mark.cadenza_sim(cancel_delay=1000)
async def test_terminal_close_code_leaves_cancels_to_rest_without_reconnecting(
    cadenza_sim, open_client, code
):
    client = await open_client()
    order = cadenza_sim.create_order()
    task = background(client.cancel_and_confirm(order.trade_order_id, timeout=30))
    await wait_status(cadenza_sim, order.trade_order_id, "PENDING_CANCEL")

    await cadenza_sim.disconnect_all(code, "terminal")
    await cadenza_sim.wait_for(lambda: client.stats().degraded, timeout=STEP)
    # The exchange applies the cancel; no event can say so any more: REST does.
    cadenza_sim.set_status(order.trade_order_id, "CANCELLED")
    result = await asyncio.wait_for(task, STEP)
    assert (result.cancelled, result.source) == (True, "rest")

    # A later cancel is still sent, and proven by REST too.
    cadenza_sim.cancel_delay = 0
    other = cadenza_sim.create_order()
    result = await asyncio.wait_for(client.cancel_and_confirm(other.trade_order_id), STEP)
    assert (result.cancelled, result.source) in ((True, "http"), (True, "rest"))
    assert cancels_of(cadenza_sim, other.trade_order_id) == ["http"]
    # The client never tries to reconnect after a terminal close.
    with pytest.raises(TimeoutError):
        await cadenza_sim.wait_for(lambda: cadenza_sim.connect_count > 1, timeout=0.3)


@pytest.mark.cadenza_sim(cancel_delay=0.05, ping_interval=0.1, pong_timeout=0.5)
async def test_pings_are_answered_over_many_intervals_without_reconnecting(
    cadenza_sim, open_client
):
    client = await open_client()

    await cadenza_sim.wait_for(lambda: cadenza_sim.pings_sent >= 15, timeout=STEP)
    order = cadenza_sim.create_order()
    result = await client.cancel_and_confirm(order.trade_order_id, timeout=STEP)

    assert cadenza_sim.pongs_received >= 14
    assert cadenza_sim.connect_count == 1
    assert cadenza_sim.connections == 1
    assert (result.cancelled, result.source) == (True, "ws")


# --------------------------------------------------------------------------- event shapes


@pytest.mark.cadenza_sim(cancel_delay=0.05, event_shape="status_change", wire="legacy")
async def test_status_change_event_shape_confirms(cadenza_sim, open_client):
    client = await open_client()
    order = cadenza_sim.create_order()

    result = await client.cancel_and_confirm(order.trade_order_id, timeout=STEP)

    assert (result.cancelled, result.status, result.source) == (True, "CANCELLED", "ws")


@pytest.mark.cadenza_sim(cancel_delay=1000)
async def test_unknown_status_is_not_terminal_and_unknown_fields_are_ignored(
    cadenza_sim, open_client
):
    client = await open_client()
    order = cadenza_sim.create_order()
    task = background(client.cancel_and_confirm(order.trade_order_id, timeout=STEP))
    await wait_status(cadenza_sim, order.trade_order_id, "PENDING_CANCEL")
    base = cadenza_sim.get_order(order.trade_order_id)
    wire = {
        "tradeOrderId": base.trade_order_id,
        "tradingAccountId": base.trading_account_id,
        "quantity": base.quantity,
        "executedQuantity": base.executed_quantity,
    }

    def event(status: str, updated_at: int, **extra) -> dict:
        return {
            "metadata": {"eventId": f"e-{status}", "eventType": "event.trade_order.updated"},
            "data": {**wire, "status": status, "updatedAt": updated_at, **extra},
            "futureTopLevel": {"x": 1},
        }

    # A status this SDK has never heard of: not terminal, the wait goes on.
    cadenza_sim.publish_raw_order_update(None, event("HALTED_BY_VENUE", base.updated_at + 1))
    # Then the real end, with fields the SDK does not know.
    cadenza_sim.publish_raw_order_update(
        None, event("CANCELLED", base.updated_at + 2, venueTag="abc", nested={"a": [1]})
    )

    result = await asyncio.wait_for(task, STEP)

    # Had the unknown status resolved the waiter, it would be the result (terminal is sticky).
    assert (result.cancelled, result.status, result.source) == (True, "CANCELLED", "ws")
    assert client.bad_events == 0


# --------------------------------------------------------------------------- cancel_via


def _scenario_delay(sim):
    sim.cancel_delay = 0.05
    return sim.create_order().trade_order_id, ("result", True, "CANCELLED", {"ws"})


def _scenario_immediate(sim):
    sim.cancel_delay = 0
    sim.pause_publications()
    return sim.create_order().trade_order_id, ("result", True, "CANCELLED", {"http"})


def _scenario_filled(sim):
    sim.cancel_delay = 0.05
    order_id = sim.create_order().trade_order_id
    sim.fill_on_next_cancel(order_id)
    return order_id, ("result", False, "FILLED", {"ws", "rest"})


def _scenario_not_found(sim):
    return "00000000-0000-4000-8000-00000000dead", ("error", OrderNotFoundError)


def _scenario_already_cancelled(sim):
    order_id = sim.create_order(status="CANCELLED").trade_order_id
    return order_id, ("result", True, "CANCELLED", {"rest"})


@pytest.mark.parametrize("via", ["http", "ws"])
@pytest.mark.parametrize(
    "scenario",
    [
        _scenario_delay,
        _scenario_immediate,
        _scenario_filled,
        _scenario_not_found,
        _scenario_already_cancelled,
    ],
    ids=["delay", "immediate", "filled", "not-found", "already-cancelled"],
)
async def test_both_cancel_paths_give_the_same_results_and_errors(
    cadenza_sim, open_client, via, scenario
):
    client = await open_client(cancel_via=via)
    order_id, expected = scenario(cadenza_sim)
    account = cadenza_sim.trading_account_id

    if expected[0] == "error":
        with pytest.raises(expected[1]):
            await client.cancel_and_confirm(order_id, trading_account_id=account, timeout=STEP)
    else:
        result = await client.cancel_and_confirm(order_id, trading_account_id=account, timeout=STEP)
        _, cancelled, status, sources = expected
        assert (result.cancelled, result.status) == (cancelled, status)
        assert result.source in sources
    # The cancel went the configured way, once.
    assert cancels_of(cadenza_sim, order_id) == [via]


# --------------------------------------------------------------------------- accounts


@pytest.mark.cadenza_sim(cancel_delay=0.3)
async def test_account_learned_from_the_http_reply_is_subscribed_and_confirms(
    cadenza_sim, open_client
):
    client = await open_client(trading_account_id=None)  # subscribes nothing at start
    order = cadenza_sim.create_order()

    result = await client.cancel_and_confirm(order.trade_order_id, timeout=STEP)

    assert (result.cancelled, result.source) == (True, "ws")
    # No account known: one look-up by the order's id names it (the cancel must carry
    # it), then one look-up closes the gap between the HTTP answer and the subscription.
    account = {"tradingAccountId": cadenza_sim.trading_account_id}
    first = {"tradeOrderId": order.trade_order_id}
    assert lookups(cadenza_sim) == [first, first | account]

    # The account is now subscribed: the next cancel needs its account look-up only.
    second = cadenza_sim.create_order()
    result = await client.cancel_and_confirm(second.trade_order_id, timeout=STEP)
    assert (result.cancelled, result.source) == (True, "ws")
    assert lookups(cadenza_sim)[2:] == [{"tradeOrderId": second.trade_order_id}]


# --------------------------------------------------------------------------- sharing


@pytest.mark.cadenza_sim(cancel_delay=0.1)
async def test_concurrent_cancels_of_one_order_share_one_request_and_one_result(
    cadenza_sim, open_client
):
    client = await open_client()
    order = cadenza_sim.create_order()

    results = await asyncio.wait_for(
        asyncio.gather(
            *(client.cancel_and_confirm(order.trade_order_id, timeout=STEP) for _ in range(5))
        ),
        STEP,
    )

    assert cancels_of(cadenza_sim, order.trade_order_id) == ["http"]
    assert {(r.cancelled, r.status, r.source) for r in results} == {(True, "CANCELLED", "ws")}
    assert len({r.order.updated_at for r in results}) == 1
    assert client.stats().pending_cancels == 0
    assert waiters_held(client) == 0  # every caller released the shared waiter


@pytest.mark.cadenza_sim(cancel_delay=0.05)
async def test_sharer_is_confirmed_when_the_caller_that_sent_the_cancel_is_cancelled(
    cadenza_sim, open_client
):
    # The rate gate holds the first caller's cancel before it is sent; a
    # second caller joins; then the first caller is cancelled. The second
    # must still get the cancel sent and confirmed.
    client = await open_client(max_rate=1.0)
    await client.cancel(cadenza_sim.create_order().trade_order_id)  # spends the burst
    order_id = cadenza_sim.create_order().trade_order_id
    first = background(client.cancel_and_confirm(order_id, timeout=STEP))
    await cadenza_sim.wait_for(lambda: client.stats().pending_cancels == 1, timeout=STEP)
    second = background(client.cancel_and_confirm(order_id, timeout=STEP))
    await cadenza_sim.wait_for(lambda: client._registry.get(order_id).refs == 2, timeout=STEP)
    assert cancels_of(cadenza_sim, order_id) == []  # still held at the gate

    first.cancel()
    result = await asyncio.wait_for(second, STEP)

    assert first.cancelled()
    assert (result.cancelled, result.source) == (True, "ws")
    assert cancels_of(cadenza_sim, order_id) == ["http"]


@pytest.mark.cadenza_sim(cancel_delay=1000)
async def test_timeout_is_kept_while_the_cancel_reply_is_late(cadenza_sim, open_client):
    # The server holds the cancel request 3 s; the caller's 0.5 s deadline
    # must not wait for it (only the final look-up, answered at once, follows).
    client = await open_client()
    order = cadenza_sim.create_order()
    cadenza_sim.slow_rest(3.0)
    started = time.monotonic()
    task = background(client.cancel_and_confirm(order.trade_order_id, timeout=0.5))
    await cadenza_sim.wait_for(lambda: cadenza_sim.rest_requests, timeout=STEP)
    cadenza_sim.slow_rest(0)

    with pytest.raises(ConfirmationTimeout) as info:
        await asyncio.wait_for(task, STEP)
    elapsed = time.monotonic() - started

    assert elapsed < 2.0  # 0.5 s deadline + one quick look-up, far from the 3 s reply
    assert info.value.last_known is not None
    assert info.value.last_known.status == "OPEN"  # the held cancel has not landed yet
    assert len(lookups(cadenza_sim)) == 1


@pytest.mark.cadenza_sim(cancel_delay=0.05)
async def test_caller_sharing_a_subscription_survives_the_subscriber_being_cancelled(
    cadenza_sim,
):
    second_account = cadenza_sim.add_account()
    order = cadenza_sim.create_order(account_id=second_account)
    async with FaultProxy(target_host="127.0.0.1", target_port=cadenza_sim.port) as proxy:
        async with client_for(cadenza_sim, ws_url=proxy.url(cadenza_sim.ws_url)) as client:
            proxy.downstream.latency = 0.3  # the subscribe reply takes a while
            first = background(
                client.cancel_and_confirm(
                    order.trade_order_id, trading_account_id=second_account, timeout=STEP
                )
            )
            # The cancel went out first; the subscribe of its account is under way.
            await cadenza_sim.wait_for(
                lambda: cancels_of(cadenza_sim, order.trade_order_id), timeout=STEP
            )
            second = background(
                client.cancel_and_confirm(
                    order.trade_order_id, trading_account_id=second_account, timeout=STEP
                )
            )
            # One scheduling step (no I/O before it): the second caller now
            # waits on the first one's subscription.
            await asyncio.sleep(0)

            first.cancel()
            result = await asyncio.wait_for(second, STEP)

    assert first.cancelled()
    assert (result.cancelled, result.status) == (True, "CANCELLED")
    assert cancels_of(cadenza_sim, order.trade_order_id) == ["http"]


# --------------------------------------------------------------------------- rule 4: send failures


@pytest.mark.cadenza_sim(cancel_delay=0.05)
async def test_server_error_on_the_cancel_is_retried_and_applied_once(cadenza_sim, open_client):
    client = await open_client()
    order = cadenza_sim.create_order()
    cadenza_sim.fail_next_rest(1, status=503)

    result = await client.cancel_and_confirm(order.trade_order_id, timeout=STEP)

    assert (result.cancelled, result.source) == (True, "ws")
    assert cancels_of(cadenza_sim, order.trade_order_id) == ["http"]  # the 503 came first
    assert cadenza_sim.cancels_applied[order.trade_order_id] == 1


@pytest.mark.cadenza_sim(cancel_delay=0.05)
async def test_server_errors_past_the_retry_policy_are_sent_again_within_the_deadline(
    cadenza_sim, open_client
):
    client = await open_client()
    order = cadenza_sim.create_order()
    cadenza_sim.fail_next_rest(3, status=502)  # every attempt of the cancel's first send

    result = await client.cancel_and_confirm(order.trade_order_id, timeout=STEP)

    # Every answer was a 502: the cancel never reached the exchange; a cancel is a safety
    # operation, so it goes again after a backoff while the deadline allows (DESIGN rule 4).
    assert result.cancelled
    assert cadenza_sim.cancels_applied[order.trade_order_id] == 1


async def test_server_errors_until_the_deadline_raise_the_error_not_a_timeout(
    cadenza_sim, open_client
):
    client = await open_client()
    order = cadenza_sim.create_order()
    cadenza_sim.rest_outage(30.0, status=502, endpoints=["cancel"])

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ServerError) as info:
        await client.cancel_and_confirm(order.trade_order_id, timeout=1.0)

    # raised when no time was left for another send, as what it is: never sent
    assert loop.time() - started < 1.0
    assert info.value.order_id == order.trade_order_id
    assert info.value.maybe_sent is False
    assert cadenza_sim.cancels_applied.get(order.trade_order_id, 0) == 0
    assert cadenza_sim.get_order(order.trade_order_id).status == "OPEN"


@pytest.mark.cadenza_sim(cancel_delay=0.05)
async def test_gateway_timeouts_may_have_reached_the_api_so_it_reconciles_then_cancels_again(
    cadenza_sim, open_client
):
    client = await open_client()
    order = cadenza_sim.create_order()
    cadenza_sim.fail_next_rest(3, status=504)  # every attempt of the first send

    result = await client.cancel_and_confirm(order.trade_order_id, timeout=STEP)

    assert (result.cancelled, result.status) == (True, "CANCELLED")
    assert cadenza_sim.cancels_applied[order.trade_order_id] == 1
    # The look-up (rule 4) saw the order still open before the cancel went again.
    assert len(lookups(cadenza_sim)) == 1
    assert cancels_of(cadenza_sim, order.trade_order_id) == ["http"]


@pytest.mark.cadenza_sim(cancel_delay=0.05)
async def test_http_timeout_after_the_exchange_got_the_cancel_is_applied_once(
    cadenza_sim, open_client
):
    # The first request is held 0.6 s by the server and times out on the
    # client (0.2 s); the retry is answered at once. The held request then
    # reaches the exchange too: the cancel must still be applied only once.
    client = await open_client(timeouts=Timeouts(request=0.2, confirm=STEP))
    order = cadenza_sim.create_order()
    cadenza_sim.slow_rest(0.6)
    task = background(client.cancel_and_confirm(order.trade_order_id, timeout=STEP))
    await cadenza_sim.wait_for(lambda: cadenza_sim.rest_requests, timeout=STEP)
    cadenza_sim.slow_rest(0)

    result = await asyncio.wait_for(task, STEP)
    await cadenza_sim.wait_for(lambda: len(cancels_of(cadenza_sim, order.trade_order_id)) == 2)

    assert (result.cancelled, result.status) == (True, "CANCELLED")
    assert cadenza_sim.cancels_applied[order.trade_order_id] == 1


# --------------------------------------------------------------------------- order_updates()


@pytest.mark.cadenza_sim(cancel_delay=0.01)
async def test_order_updates_receives_the_updates_of_subscribed_accounts(cadenza_sim, open_client):
    client = await open_client()
    order = cadenza_sim.create_order()
    updates = client.order_updates()
    first = background(updates.__anext__())
    await cadenza_sim.wait_for(lambda: has_update_reader(client), timeout=STEP)

    await client.cancel_and_confirm(order.trade_order_id, timeout=STEP)
    got = [await asyncio.wait_for(first, STEP), await asyncio.wait_for(anext(updates), STEP)]
    await updates.aclose()

    assert [(o.trade_order_id, o.status) for o in got] == [
        (order.trade_order_id, "PENDING_CANCEL"),
        (order.trade_order_id, "CANCELLED"),
    ]


@pytest.mark.cadenza_sim(cancel_delay=0.01)
async def test_slow_update_reader_never_delays_confirmations_and_overflow_is_reported(
    cadenza_sim, open_client, caplog
):
    client = await open_client(order_updates_buffer=2)
    orders = cadenza_sim.create_orders(5)
    updates = client.order_updates()
    stuck = background(updates.__anext__())  # reads one update, then never again
    await cadenza_sim.wait_for(lambda: has_update_reader(client), timeout=STEP)

    with caplog.at_level(logging.WARNING, logger="cadenza_async.updates"):
        results = await asyncio.wait_for(
            client.cancel_many([o.trade_order_id for o in orders], timeout=STEP), STEP
        )

    assert [(r.cancelled, r.source) for r in results] == [(True, "ws")] * 5
    assert client.stats().updates_dropped > 0
    with pytest.deprecated_call():
        assert client.updates_dropped == client.stats().updates_dropped
    assert any("too slow" in r.getMessage() for r in caplog.records)
    await asyncio.wait_for(stuck, STEP)
    await updates.aclose()


# --------------------------------------------------------------------------- module level


@pytest.mark.cadenza_sim(cancel_delay=0.05)
async def test_module_level_cancel_and_confirm_uses_the_environment(cadenza_sim, monkeypatch):
    if not hasattr(cadenza_async, "cancel_and_confirm") or not hasattr(
        cadenza_async, "aclose_default_client"
    ):
        pytest.skip("cadenza_async.cancel_and_confirm is not exported yet")
    monkeypatch.setenv("CADENZA_TOKEN", cadenza_sim.token)
    monkeypatch.setenv("CADENZA_API_URL", cadenza_sim.api_url)
    monkeypatch.setenv("CADENZA_WS_URL", cadenza_sim.ws_url)
    monkeypatch.setenv("CADENZA_TRADING_ACCOUNT_ID", cadenza_sim.trading_account_id)
    first, second = cadenza_sim.create_orders(2)
    try:
        one = await cadenza_async.cancel_and_confirm(first.trade_order_id)
        two = await cadenza_async.cancel_and_confirm(second.trade_order_id)
    finally:
        await cadenza_async.aclose_default_client()

    assert (one.cancelled, one.source) == (True, "ws")
    assert (two.cancelled, two.source) == (True, "ws")
    assert cadenza_sim.connect_count == 1  # the default client is reused within the loop
