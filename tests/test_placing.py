"""submit_and_confirm, replace_and_confirm and submit_many against the simulator, over real sockets.

Each test names one behaviour: what proves a submit (the event, the reply, a
REST look-up; both event shapes), an event that beats the reply, failures
after the order was placed (one order, the right result), 5xx bursts,
rejections, deadlines, and the replace's "never two live orders".
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter

import pytest
from support import DEADLINE_SLACK, client_for

from cadenza_async import (
    CadenzaError,
    ClientClosedError,
    ConfirmationTimeout,
    InvalidRequestError,
    NewOrder,
    OrderNotFoundError,
    SubmitConfirmationTimeout,
    SubmitResult,
    TransportError,
    Unlisted,
)
from cadenza_async.testing import CadenzaSimulator

INSTRUMENT = "BINANCE:BTC/USDT"
BUY = {"instrument_id": INSTRUMENT, "order_side": "BUY", "order_type": "LIMIT", "quantity": "0.01"}


def quote(price: str = "50000", **extra: object) -> dict[str, object]:
    return {**BUY, "limit_price": price, "time_in_force": "GTC", **extra}


def orders_with(sim: CadenzaSimulator, client_order_id: str) -> int:
    return sum(1 for o in sim.orders if o.client_order_id == client_order_id)


def submits_of(sim: CadenzaSimulator) -> list[str]:
    return [path for method, path, _ in sim.rest_requests if path.endswith("/submit")]


def no_duplicate_client_ids(sim: CadenzaSimulator) -> bool:
    counts = Counter(o.client_order_id for o in sim.orders if o.client_order_id)
    return all(n == 1 for n in counts.values())


# --------------------------------------------------------------------------- proof sources


@pytest.mark.cadenza_sim(accept_delay=0.05)
async def test_an_acceptance_after_the_reply_is_proven_by_the_event(cadenza_sim, open_client):
    client = await open_client()
    result = await client.submit_and_confirm(**quote())

    assert isinstance(result, SubmitResult)
    assert (result.accepted, result.status, result.source) == (True, "OPEN", "ws")
    assert result.acked_after is not None
    assert result.acked_after < result.latency  # the reply (SUBMITTED) came first
    assert result.latency >= 0.05
    assert result.order.client_order_id == result.client_order_id
    placed = cadenza_sim.find_by_client_order_id(result.client_order_id)
    assert placed is not None
    assert placed.trade_order_id == result.order_id


@pytest.mark.cadenza_sim(accept_delay=0.05)
async def test_the_placer_hears_order_events_only_while_a_submit_is_held(open_client):
    """Each event calls every listener: the placer listens only while it waits for proof."""
    client = await open_client()
    stream = client._stream
    idle = (client._canceller.observe_event,)
    assert stream._on_order == idle
    heard = []
    observe = client._placer.observe_event

    def spy(order, account):
        heard.append(order.status)
        observe(order, account)

    client._placer.observe_event = spy  # (the listener the placer adds from now on)
    first = asyncio.ensure_future(client.submit_and_confirm(**quote()))
    second = asyncio.ensure_future(client.submit_and_confirm(**quote()))
    done = await asyncio.gather(first, second)
    assert [r.source for r in done] == ["ws", "ws"]  # proven by events the placer heard
    assert "OPEN" in heard
    assert stream._on_order == idle  # and it stopped listening after the last one
    await client.cancel_and_confirm(done[0].order_id)
    assert "CANCELLED" not in heard


async def test_a_reply_that_already_shows_the_order_open_proves_it(cadenza_sim, open_client):
    client = await open_client()
    result = await client.submit_and_confirm(**quote())

    assert (result.accepted, result.status, result.source) == (True, "OPEN", "http")
    assert result.acked_after == pytest.approx(result.latency)


@pytest.mark.cadenza_sim(accept_delay=0.05)
async def test_without_the_stream_the_acceptance_is_proven_by_rest_polling(cadenza_sim):
    await cadenza_sim.refuse_websocket(503)
    async with client_for(cadenza_sim) as client:
        result = await client.submit_and_confirm(**quote(), timeout=5.0)
        assert not client.stats().stream_connected

    assert (result.accepted, result.status, result.source) == (True, "OPEN", "rest")


@pytest.mark.parametrize(
    ("wire", "shape"), [("current", "order"), ("legacy", "order"), ("legacy", "status_change")]
)
async def test_every_event_form_proves_acceptance_and_rejection(wire, shape):
    async with CadenzaSimulator(accept_delay=0.03, event_shape=shape, wire=wire) as sim:
        sim.set_price_band("1", "60000")
        async with client_for(sim) as client:
            accepted = await client.submit_and_confirm(**quote("50000"))
            rejected = await client.submit_and_confirm(**quote("70000"))

    assert (accepted.accepted, accepted.status, accepted.source) == (True, "OPEN", "ws")
    assert (rejected.accepted, rejected.status, rejected.source) == (False, "REJECTED", "ws")
    assert rejected.reject_reason is not None
    assert "out of band" in rejected.reject_reason


async def test_an_event_that_beats_the_reply_is_matched_by_client_order_id(
    cadenza_sim, open_client
):
    client = await open_client()
    cadenza_sim.delay_submit_reply(0.3)
    result = await client.submit_and_confirm(**quote(), client_order_id="quote-1")

    # Proven by the event, long before the reply: nothing named the tradeOrderId yet.
    assert (result.accepted, result.source, result.client_order_id) == (True, "ws", "quote-1")
    assert result.latency < 0.25
    assert result.acked_after is None
    assert result.order_id == cadenza_sim.find_by_client_order_id("quote-1").trade_order_id
    assert cadenza_sim.submit_requests == [("quote-1", "http")]


@pytest.mark.cadenza_sim(accept_delay=0.02)
async def test_submit_via_ws_sends_the_rpc_and_is_proven_alike(cadenza_sim, open_client):
    client = await open_client(submit_via="ws")
    result = await client.submit_and_confirm(**quote())

    assert (result.accepted, result.source) == (True, "ws")
    assert cadenza_sim.submit_requests == [(result.client_order_id, "ws")]
    assert submits_of(cadenza_sim) == []  # no HTTP submit at all


async def test_submit_via_ws_falls_back_to_http_while_the_stream_is_down(cadenza_sim):
    await cadenza_sim.refuse_websocket(503)
    async with client_for(cadenza_sim, submit_via="ws") as client:
        result = await client.submit_and_confirm(**quote(), timeout=5.0)

    assert result.accepted
    assert cadenza_sim.submit_requests == [(result.client_order_id, "http")]


@pytest.mark.cadenza_sim(accept_delay=0.3)
async def test_a_websocket_dropped_while_a_submit_waits_still_proves_it_by_the_recovered_event(
    cadenza_sim, open_client
):
    client = await open_client()
    # REST cannot tell meanwhile: the proof can only be the event, live or recovered
    # from the channel's history once the stream is back.
    cadenza_sim.rest_outage(3600, endpoints=["list"])
    task = asyncio.ensure_future(client.submit_and_confirm(**quote(), timeout=5.0))
    await cadenza_sim.wait_for(lambda: cadenza_sim.submits_applied == 1)
    connects = cadenza_sim.connect_count
    await cadenza_sim.disconnect_all(3001)
    result = await task

    assert (result.accepted, result.status, result.source) == (True, "OPEN", "ws")
    assert cadenza_sim.connect_count > connects
    cadenza_sim.rest_outage(0, endpoints=["list"])


@pytest.mark.cadenza_sim(accept_delay=0.1)
async def test_an_acceptance_lost_in_a_stream_gap_is_found_by_a_look_up(cadenza_sim, open_client):
    client = await open_client()
    cadenza_sim.pause_publications()  # the OPEN event goes to history only...
    task = asyncio.ensure_future(client.submit_and_confirm(**quote(), timeout=5.0))
    await cadenza_sim.wait_for(lambda: [o.status for o in cadenza_sim.live_orders_of()] == ["OPEN"])
    cadenza_sim.lose_history()  # ...and the history is lost: no recovery can bring it back
    cadenza_sim.resume_publications()
    await cadenza_sim.disconnect_all(3001)
    result = await task

    assert (result.accepted, result.status, result.source) == (True, "OPEN", "rest")


@pytest.mark.cadenza_sim(accept_delay=0.3)
async def test_a_websocket_refused_while_a_submit_waits_leaves_the_proof_to_rest(
    cadenza_sim, open_client
):
    client = await open_client()
    task = asyncio.ensure_future(client.submit_and_confirm(**quote(), timeout=5.0))
    await cadenza_sim.wait_for(lambda: cadenza_sim.submits_applied == 1)
    await cadenza_sim.refuse_websocket(503)
    result = await task

    assert (result.accepted, result.status, result.source) == (True, "OPEN", "rest")
    assert not client.stats().stream_connected


# --------------------------------------------------------------------------- idempotency


async def test_a_transport_error_after_the_order_was_placed_ends_with_one_order(
    cadenza_sim, open_client
):
    client = await open_client()
    cadenza_sim.lose_next_submit_replies(1)  # placed, then the connection drops unanswered
    result = await client.submit_and_confirm(**quote(), client_order_id="lost-1")

    assert (result.accepted, result.status) == (True, "OPEN")
    assert orders_with(cadenza_sim, "lost-1") == 1
    assert cadenza_sim.submits_applied == 1
    assert cadenza_sim.duplicate_submits == 0


async def test_after_a_lost_reply_the_listing_finds_the_order_and_nothing_is_resent(
    cadenza_sim, open_client
):
    client = await open_client()
    cadenza_sim.pause_publications()  # no event: only the listing can tell
    cadenza_sim.lose_next_submit_replies(1)
    result = await client.submit_and_confirm(**quote(), client_order_id="lost-2")

    assert (result.accepted, result.status, result.source) == (True, "OPEN", "rest")
    assert cadenza_sim.submit_requests == [("lost-2", "http")]
    lists = [query for _, path, query in cadenza_sim.rest_requests if path.endswith("/list")]
    assert lists
    assert lists[0]["tradingAccountId"] == cadenza_sim.trading_account_id
    assert lists[0]["ascending"] == "false"
    assert "startTime" in lists[0]
    assert orders_with(cadenza_sim, "lost-2") == 1


async def test_a_timed_out_submit_the_server_applies_late_still_ends_with_one_order(
    cadenza_sim, open_client
):
    # Each attempt times out (0.1 s) while the server holds it (0.3 s) and then applies it:
    # the listing between attempts finds nothing yet, so the submit goes again, with the
    # same clientOrderId, and the server answers the repeat with the order already placed.
    client = await open_client(timeouts={"request": 0.1, "connect": 5.0, "confirm": 5.0})
    cadenza_sim.pause_publications()
    cadenza_sim.delay_rest(0.3, endpoint="submit")
    task = asyncio.ensure_future(client.submit_and_confirm(**quote(), client_order_id="retry-1"))
    await cadenza_sim.wait_for(lambda: len(submits_of(cadenza_sim)) >= 2)
    cadenza_sim.delay_rest(0, endpoint="submit")
    result = await task

    assert result.accepted
    assert orders_with(cadenza_sim, "retry-1") == 1
    bodies = [body for _, path, body in cadenza_sim.rest_requests if path.endswith("/submit")]
    assert {body["clientOrderId"] for body in bodies} == {"retry-1"}
    paths = [path.rsplit("/", 1)[1] for _, path, _ in cadenza_sim.rest_requests]
    assert paths.index("list") < len(paths) - 1 - paths[::-1].index("submit")  # listed first
    await cadenza_sim.wait_for(lambda: len(cadenza_sim.submit_requests) == len(bodies))
    assert cadenza_sim.submits_applied == 1


@pytest.mark.cadenza_sim(accept_delay=0.05)
async def test_a_5xx_after_the_order_was_placed_ends_with_one_order(cadenza_sim, open_client):
    client = await open_client()
    cadenza_sim.lose_next_submit_replies(1, status=500)
    result = await client.submit_and_confirm(**quote(), client_order_id="late-500")

    assert (result.accepted, result.status) == (True, "OPEN")
    assert orders_with(cadenza_sim, "late-500") == 1
    assert cadenza_sim.submits_applied == 1
    assert cadenza_sim.duplicate_submits == 0


async def test_a_5xx_burst_then_success_places_exactly_one_order(cadenza_sim, open_client):
    client = await open_client()
    cadenza_sim.fail_next_rest(3, 503, endpoint="submit")
    result = await client.submit_and_confirm(**quote(), timeout=5.0)

    assert result.accepted
    assert len(submits_of(cadenza_sim)) == 4  # three 503s, then the one that went through
    bodies = [body for _, path, body in cadenza_sim.rest_requests if path.endswith("/submit")]
    assert {body["clientOrderId"] for body in bodies} == {result.client_order_id}
    assert cadenza_sim.submits_applied == 1
    assert orders_with(cadenza_sim, result.client_order_id) == 1


async def test_a_repeated_client_order_id_returns_the_order_it_placed(cadenza_sim, open_client):
    client = await open_client()
    first = await client.submit_and_confirm(**quote(), client_order_id="same")
    again = await client.submit_and_confirm(**quote("49000"), client_order_id="same")

    assert again.order_id == first.order_id
    assert again.order.limit_price == "50000"  # the order the key placed, not a new one
    assert cadenza_sim.submits_applied == 1
    # (The second call may be proven by the first order's trailing event before it is
    # sent at all: the same key, the same order.)
    assert cadenza_sim.duplicate_submits <= 1


@pytest.mark.cadenza_sim(accept_delay=0.05)
async def test_concurrent_calls_with_one_client_order_id_share_one_submit(cadenza_sim, open_client):
    client = await open_client()
    results = await asyncio.gather(
        *(client.submit_and_confirm(**quote(), client_order_id="shared") for _ in range(5))
    )

    assert len({r.order_id for r in results}) == 1
    assert cadenza_sim.submit_requests == [("shared", "http")]


# --------------------------------------------------------------------------- refusals, failures


@pytest.mark.cadenza_sim(accept_delay=0.02)
async def test_a_rejection_on_demand_is_a_result_with_its_reject_reason(cadenza_sim, open_client):
    client = await open_client()
    cadenza_sim.reject_next_submits(1, reason="insufficient balance")
    result = await client.submit_and_confirm(**quote())

    assert (result.accepted, result.status, result.source) == (False, "REJECTED", "ws")
    assert result.reject_reason == "insufficient balance"


async def test_a_rejection_in_the_reply_is_proven_by_the_reply(cadenza_sim, open_client):
    client = await open_client()
    cadenza_sim.set_price_band("40000", "60000")
    result = await client.submit_and_confirm(**quote("10"))

    assert (result.accepted, result.status, result.source) == (False, "REJECTED", "http")
    assert "out of band" in (result.reject_reason or "")


async def test_a_request_the_api_refuses_raises_at_once(cadenza_sim, open_client):
    client = await open_client()
    with pytest.raises(InvalidRequestError):
        await client.submit_and_confirm(**{**quote(), "order_side": Unlisted("SIDEWAYS")})
    assert cadenza_sim.submits_applied == 0


async def test_a_submit_that_never_reached_the_api_is_raised_when_its_deadline_is_spent():
    async with CadenzaSimulator() as sim:
        api_url = sim.api_url
    async with client_for(sim, api_url=api_url, timeouts={"connect": 0.5}) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TransportError) as caught:
            await client.submit_and_confirm(**quote(), timeout=1.0)
    assert not caught.value.maybe_sent  # the port is closed: nothing reached the API
    assert loop.time() - started < 1.0  # raised before the deadline, as what it is


async def test_bad_input_is_refused_before_anything_is_sent(cadenza_sim, open_client):
    client = await open_client()
    with pytest.raises(TypeError):
        await client.submit_and_confirm(**{**quote(), "quantity": 0.01})
    with pytest.raises(ValueError, match="client_order_id"):
        await client.submit_and_confirm(**quote(), client_order_id="has space")
    with pytest.raises(ValueError, match="timeout"):
        await client.submit_and_confirm(**quote(), timeout=0)
    assert submits_of(cadenza_sim) == []


async def test_without_an_account_a_submit_is_refused(cadenza_sim, open_client):
    client = await open_client(trading_account_id=None)
    with pytest.raises(ValueError, match="trading_account_id"):
        await client.submit_and_confirm(**quote())


# --------------------------------------------------------------------------- deadlines


@pytest.mark.cadenza_sim(accept_delay=30.0)
async def test_an_acceptance_later_than_the_deadline_is_a_timeout_with_last_known(
    cadenza_sim, open_client
):
    client = await open_client()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(SubmitConfirmationTimeout) as caught:
        await client.submit_and_confirm(**quote(), client_order_id="slow-1", timeout=0.5)
    elapsed = loop.time() - started

    error = caught.value
    assert isinstance(error, ConfirmationTimeout)
    assert 0.5 <= elapsed < 0.5 + DEADLINE_SLACK  # (a deadline test: ends on time)
    assert error.client_order_id == "slow-1"
    assert error.last_known is not None
    assert error.last_known.status == "SUBMITTED"
    assert error.order_id == error.last_known.trade_order_id
    assert "slow-1" in str(error)


async def test_a_submit_held_past_the_deadline_times_out_on_time_and_names_its_key(
    cadenza_sim, open_client
):
    client = await open_client()
    cadenza_sim.delay_rest(math.inf, endpoint="submit")
    cadenza_sim.delay_rest(math.inf, endpoint="list")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(SubmitConfirmationTimeout) as caught:
        await client.submit_and_confirm(**quote(), client_order_id="held-1", timeout=0.5)
    elapsed = loop.time() - started
    cadenza_sim.delay_rest(0)

    assert 0.5 <= elapsed < 0.5 + DEADLINE_SLACK  # (a deadline test: ends on time)
    assert caught.value.client_order_id == "held-1"
    assert caught.value.last_known is None
    assert isinstance(caught.value.__cause__, TransportError)


async def test_closing_the_client_ends_a_waiting_submit(cadenza_sim):
    cadenza_sim.accept_delay = 30.0
    client = client_for(cadenza_sim)
    await client.__aenter__()
    task = asyncio.ensure_future(client.submit_and_confirm(**quote(), timeout=10.0))
    await cadenza_sim.wait_for(lambda: cadenza_sim.submits_applied == 1)
    assert client.stats().pending_submits == 1
    await client.aclose()
    with pytest.raises(ClientClosedError):
        await task


# --------------------------------------------------------------------------- submit_many


@pytest.mark.cadenza_sim(accept_delay=0.01)
async def test_submit_many_gives_one_outcome_per_order_in_input_order(cadenza_sim, open_client):
    client = await open_client()
    cadenza_sim.set_price_band("1", "60000")
    orders = [quote(str(50000 + i)) for i in range(20)]
    orders[7] = quote("99999")  # out of band: rejected, in its place
    orders[3] = NewOrder(
        instrument_id=INSTRUMENT,
        order_side="SELL",
        order_type="LIMIT",
        quantity="1",
        limit_price="51000",
        client_order_id="typed",
    )
    outcomes = await client.submit_many(orders, concurrency=4)

    assert len(outcomes) == 20
    assert all(isinstance(o, SubmitResult) for o in outcomes)
    prices = [o.order.limit_price for o in outcomes]  # type: ignore[union-attr]
    assert prices[0] == "50000"
    assert prices[19] == "50019"
    assert outcomes[3].client_order_id == "typed"  # type: ignore[union-attr]
    assert outcomes[7].accepted is False  # type: ignore[union-attr]
    assert sum(o.accepted for o in outcomes) == 19  # type: ignore[union-attr]
    assert cadenza_sim.submits_applied == 20
    assert no_duplicate_client_ids(cadenza_sim)


async def test_submit_many_holds_a_failed_order_in_its_place(cadenza_sim, open_client):
    client = await open_client()
    outcomes = await client.submit_many(
        [quote(), {**quote(), "order_side": Unlisted("SIDEWAYS")}, quote()], concurrency=1
    )
    assert isinstance(outcomes[0], SubmitResult)
    assert isinstance(outcomes[1], InvalidRequestError)
    assert isinstance(outcomes[2], SubmitResult)


async def test_submit_many_refuses_a_malformed_order_before_sending_any(cadenza_sim, open_client):
    client = await open_client()
    with pytest.raises(TypeError, match="order 1"):
        await client.submit_many([quote(), {**quote(), "colour": "red"}])
    with pytest.raises(TypeError, match="order 0"):
        await client.submit_many([{**quote(), "quantity": 1.5}])
    with pytest.raises(TypeError):
        await client.submit_many(quote())  # one order, not an iterable of them
    with pytest.raises(ValueError, match="concurrency"):
        await client.submit_many([quote()], concurrency=0)
    assert submits_of(cadenza_sim) == []
    assert await client.submit_many([]) == []


@pytest.mark.cadenza_sim(accept_delay=0.2)
async def test_submit_many_keeps_at_most_concurrency_submits_pending(cadenza_sim, open_client):
    client = await open_client()
    outcomes = await client.submit_many([quote() for _ in range(12)], concurrency=3)

    assert all(isinstance(o, SubmitResult) and o.accepted for o in outcomes)
    # Counted by the exchange at each submit: three unproven at once, never a fourth (the
    # first three go out together, 0.2 s before the first can be accepted).
    assert cadenza_sim.peak_pending_acceptances == 3


# --------------------------------------------------------------------------- replace


@pytest.mark.cadenza_sim(cancel_delay=0.02, accept_delay=0.02)
async def test_a_replace_cancels_first_and_places_only_once_the_old_order_is_final(
    cadenza_sim, open_client
):
    client = await open_client()
    first = await client.submit_and_confirm(**quote("50000"))
    cadenza_sim.reset_peak_live_orders()
    rep = await client.replace_and_confirm(first.order_id, **quote("50010"))

    assert rep.outcome == "submitted"
    assert rep.replaced
    assert rep.cancel is not None
    assert rep.cancel.cancelled
    assert rep.submit is not None
    assert (rep.submit.status, rep.submit.order.limit_price) == ("OPEN", "50010")
    assert cadenza_sim.peak_live_orders() == 1  # never two at once
    live = cadenza_sim.live_orders_of()
    assert [o.trade_order_id for o in live] == [rep.submit.order_id]


async def test_a_replace_of_a_filled_order_places_nothing_unless_asked(cadenza_sim, open_client):
    client = await open_client()
    first = await client.submit_and_confirm(**quote())
    cadenza_sim.fill(first.order_id)
    rep = await client.replace_and_confirm(first.order_id, **quote("50010"))

    assert (rep.outcome, rep.submit) == ("old_filled", None)
    assert rep.cancel is not None
    assert rep.cancel.status == "FILLED"
    assert cadenza_sim.submits_applied == 1

    second = await client.submit_and_confirm(**quote())
    cadenza_sim.fill(second.order_id)
    rep = await client.replace_and_confirm(second.order_id, **quote("50020"), place_if_filled=True)
    assert rep.outcome == "submitted"
    assert rep.submit is not None
    assert rep.submit.accepted


async def test_a_fill_racing_the_replace_is_seen_and_nothing_is_placed(cadenza_sim, open_client):
    client = await open_client()
    first = await client.submit_and_confirm(**quote())
    cadenza_sim.fill_on_next_cancel(first.order_id)
    rep = await client.replace_and_confirm(first.order_id, **quote("50010"))

    assert rep.outcome == "old_filled"
    assert rep.cancel is not None
    assert not rep.cancel.cancelled
    assert len(cadenza_sim.live_orders_of()) == 0


@pytest.mark.cadenza_sim(cancel_delay=60.0)
async def test_an_old_order_not_proven_final_by_the_deadline_blocks_the_new_one(
    cadenza_sim, open_client
):
    client = await open_client()
    first = await client.submit_and_confirm(**quote())
    loop = asyncio.get_running_loop()
    started = loop.time()
    rep = await client.replace_and_confirm(first.order_id, **quote("50010"), timeout=0.5)
    elapsed = loop.time() - started

    assert (rep.outcome, rep.cancel, rep.submit) == ("old_not_final", None, None)
    assert isinstance(rep.cancel_error, ConfirmationTimeout)
    assert rep.cancel_error.last_known is not None
    assert rep.cancel_error.last_known.status == "PENDING_CANCEL"
    assert 0.5 <= elapsed < 0.5 + DEADLINE_SLACK  # (a deadline test: ends on time)
    assert cadenza_sim.submits_applied == 1  # the first order only


async def test_a_replace_of_an_unknown_order_places_nothing(cadenza_sim, open_client):
    client = await open_client()
    rep = await client.replace_and_confirm("00000000-0000-4000-8000-00000000dead", **quote())
    assert rep.outcome == "old_not_final"
    assert isinstance(rep.cancel_error, OrderNotFoundError)
    assert cadenza_sim.submits_applied == 0


@pytest.mark.cadenza_sim(cancel_delay=0.45)
async def test_a_cancel_that_used_the_deadline_up_leaves_no_time_for_the_new_order(
    cadenza_sim, open_client
):
    client = await open_client()
    first = await client.submit_and_confirm(**quote())
    rep = await client.replace_and_confirm(first.order_id, **quote("50010"), timeout=0.5)

    assert rep.outcome == "no_time_left"
    assert rep.cancel is not None
    assert rep.cancel.cancelled
    assert cadenza_sim.submits_applied == 1


@pytest.mark.cadenza_sim(cancel_delay=0.1, accept_delay=30.0)
async def test_one_deadline_bounds_the_whole_replace(cadenza_sim, open_client):
    client = await open_client()
    old = cadenza_sim.create_order(instrument_id=INSTRUMENT, publish=True)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(SubmitConfirmationTimeout) as caught:
        await client.replace_and_confirm(
            old.trade_order_id, **quote("50010"), client_order_id="next", timeout=1.0
        )
    elapsed = loop.time() - started

    assert 1.0 <= elapsed < 1.0 + DEADLINE_SLACK  # (a deadline test: ends on time)
    assert caught.value.client_order_id == "next"
    assert caught.value.last_known is not None
    assert caught.value.last_known.status == "SUBMITTED"
    assert cadenza_sim.peak_live_orders() == 1


async def test_replace_refuses_bad_input_before_cancelling_anything(cadenza_sim, open_client):
    client = await open_client()
    order = cadenza_sim.create_order()
    with pytest.raises(ValueError):
        await client.replace_and_confirm("bad id", **quote())
    with pytest.raises(TypeError):
        await client.replace_and_confirm(order.trade_order_id, **{**quote(), "limit_price": 1.0})
    assert cadenza_sim.cancel_requests == []


@pytest.mark.cadenza_sim(accept_delay=30.0)
async def test_a_submit_timeout_is_caught_as_a_cadenza_error_and_says_what_it_knows(
    cadenza_sim, open_client
):
    client = await open_client()
    try:
        await client.submit_and_confirm(**quote(), client_order_id="caught-1", timeout=0.3)
    except CadenzaError as exc:  # what an application catches
        error = exc
    else:
        raise AssertionError("no timeout")

    assert type(error) is SubmitConfirmationTimeout
    assert isinstance(error, ConfirmationTimeout)
    assert (error.client_order_id, error.timeout) == ("caught-1", 0.3)
    assert error.last_known is not None
    assert error.order_id == error.last_known.trade_order_id
    assert str(error) == (
        f"submit caught-1: order {error.order_id} was not proven accepted or refused "
        "within 0.3s (last known status: SUBMITTED)"
    )


async def test_an_idle_channel_is_not_released_while_a_submit_on_its_account_waits(cadenza_sim):
    other = cadenza_sim.add_account()
    old = cadenza_sim.create_order(account_id=other)
    async with client_for(cadenza_sim, channel_idle_release=0.2) as client:
        await client.cancel_and_confirm(old.trade_order_id, trading_account_id=other)
        cadenza_sim.accept_delay = 0.8  # the submit waits well past the idle time
        result = await client.submit_and_confirm(**quote(), trading_account_id=other, timeout=5.0)

    assert (result.accepted, result.source) == (True, "ws")  # the channel stayed live
