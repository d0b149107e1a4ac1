"""Every cancel ends on time with the truth: deadlines, outages, shared requests, refusals.

One test per edge case, each against the simulator over real sockets. Time
bounds are upper bounds on events (``SLACK`` past a deadline), never sleeps.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket

import pytest

from cadenza_async import (
    AuthenticationError,
    CadenzaClient,
    ClientClosedError,
    ConfirmationTimeout,
    PermissionDeniedError,
    RateLimitError,
    StreamAuthenticationError,
    TransportError,
)
from cadenza_async.testing import CadenzaSimulator

STEP = 5.0
#: How late past its deadline a call may end (documented in the README).
SLACK = 0.1


def settings(sim: CadenzaSimulator, **options):
    return {
        "token": sim.token,
        "api_url": sim.api_url,
        "ws_url": sim.ws_url,
        "trading_account_id": sim.trading_account_id,
        **options,
    }


@pytest.fixture
async def client(cadenza_sim: CadenzaSimulator):
    async with CadenzaClient(**settings(cadenza_sim)) as c:
        yield c


def cancels_of(sim: CadenzaSimulator, order_id: str) -> list[str]:
    return [via for oid, via in sim.cancel_requests if oid == order_id]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def timed(coro, *, expect: type[BaseException] | None = None):
    """(outcome, seconds): the call's result or, with ``expect``, its error of that type."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    if expect is None:
        result = await asyncio.wait_for(coro, 30)
        return result, loop.time() - started
    with pytest.raises(expect) as info:
        await asyncio.wait_for(coro, 30)
    return info.value, loop.time() - started


# --------------------------------------------------------------------------- 1: a deadline


@pytest.mark.cadenza_sim(cancel_delay=1000)
async def test_a_hung_final_look_up_ends_at_the_deadline(cadenza_sim, client):
    order = cadenza_sim.create_order()
    cadenza_sim.pause_publications()
    cadenza_sim.delay_rest(math.inf, endpoint="list")

    error, elapsed = await timed(
        client.cancel_and_confirm(order.trade_order_id, timeout=1.0), expect=ConfirmationTimeout
    )

    assert elapsed < 1.0 + SLACK
    assert error.last_known is not None
    assert error.last_known.status == "PENDING_CANCEL"
    cadenza_sim.delay_rest(0, endpoint="list")


@pytest.mark.cadenza_sim(cancel_delay=0)
async def test_slow_rest_ends_at_the_deadline_with_the_send_as_cause(cadenza_sim, client):
    order = cadenza_sim.create_order()
    cadenza_sim.delay_rest(10.0)

    error, elapsed = await timed(
        client.cancel_and_confirm(order.trade_order_id, timeout=0.5), expect=ConfirmationTimeout
    )

    assert elapsed < 0.5 + SLACK
    assert error.last_known is None
    assert isinstance(error.__cause__, TransportError)  # the cancel's request timed out
    assert error.__cause__.maybe_sent is True
    cadenza_sim.delay_rest(0)


@pytest.mark.cadenza_sim(cancel_delay=0.05)
async def test_a_slow_subscribe_never_delays_the_send(cadenza_sim, client):
    other = cadenza_sim.add_account()
    order = cadenza_sim.create_order(account_id=other)
    cadenza_sim.delay_subscribe_replies(5.0)

    result, elapsed = await timed(
        client.cancel_and_confirm(order.trade_order_id, trading_account_id=other, timeout=1.0)
    )

    # The subscribe reply is 5 s late: REST proved it, well inside the deadline.
    assert (result.cancelled, result.source) == (True, "rest")
    assert elapsed < 1.0
    assert result.acked_after is not None
    assert result.acked_after < 0.2
    assert cancels_of(cadenza_sim, order.trade_order_id) == ["http"]
    cadenza_sim.delay_subscribe_replies(0)


@pytest.mark.cadenza_sim(cancel_delay=0.05)
async def test_an_account_learned_from_the_reply_with_a_slow_subscribe_is_proven_in_time(
    cadenza_sim, client
):
    other = cadenza_sim.add_account()
    order = cadenza_sim.create_order(account_id=other)
    cadenza_sim.delay_subscribe_replies(5.0)

    result, elapsed = await timed(client.cancel_and_confirm(order.trade_order_id, timeout=1.0))

    assert (result.cancelled, result.source) == (True, "rest")
    assert elapsed < 1.0
    cadenza_sim.delay_subscribe_replies(0)


@pytest.mark.cadenza_sim(cancel_delay=0)
async def test_a_rate_limit_pause_past_the_deadline_fails_at_once_and_sends_nothing(
    cadenza_sim, client
):
    first, second = cadenza_sim.create_orders(2)
    cadenza_sim.rate_limit_next_rest(1, retry_after=8, endpoint="cancel")

    error, elapsed = await timed(
        client.cancel_and_confirm(first.trade_order_id, timeout=1.0), expect=RateLimitError
    )
    assert elapsed < 0.5
    assert error.retry_after == 8

    # Another order now meets the client-wide 8 s pause: it is not sent.
    error, elapsed = await timed(
        client.cancel_and_confirm(second.trade_order_id, timeout=1.0), expect=RateLimitError
    )
    assert elapsed < 0.5
    assert error.order_id == second.trade_order_id
    assert error.retry_after is not None
    assert 7.0 < error.retry_after <= 8.0
    assert cancels_of(cadenza_sim, second.trade_order_id) == []


@pytest.mark.cadenza_sim(cancel_delay=0)
async def test_bulk_under_a_long_retry_after_reports_rate_limit_per_order_at_once(
    cadenza_sim, client
):
    first, *orders = cadenza_sim.create_orders(65)
    cadenza_sim.rate_limit_next_rest(1, retry_after=30, endpoint="cancel")
    with pytest.raises(RateLimitError):  # the 429 that pauses every caller for 30 s
        await client.cancel_and_confirm(first.trade_order_id, timeout=20)
    sent_before = len(cadenza_sim.cancel_requests)

    outcomes, elapsed = await timed(
        client.cancel_many([o.trade_order_id for o in orders], concurrency=64, timeout=20)
    )

    assert elapsed < 2.0  # not 20 s of silent waiting
    assert all(isinstance(o, RateLimitError) for o in outcomes), outcomes
    assert [o.order_id for o in outcomes] == [o.trade_order_id for o in orders]
    assert len(cadenza_sim.cancel_requests) == sent_before  # none of the 64 was sent
    assert all(o.status == "OPEN" for o in cadenza_sim.orders)


# --------------------------------------------------------------------------- 2: outages


@pytest.mark.cadenza_sim(cancel_delay=0)
async def test_an_unreachable_api_fails_the_cancel_by_its_deadline_with_the_transport_error(
    cadenza_sim,
):
    options = settings(cadenza_sim, api_url=f"http://127.0.0.1:{free_port()}")
    async with CadenzaClient(**options) as client:
        error, elapsed = await timed(
            client.cancel_and_confirm("00000000-0000-4000-8000-0000000000a1", timeout=1.0),
            expect=TransportError,
        )
    # refused: tried again while the deadline allowed, then said as what it is (never
    # sent), not as a timeout
    assert elapsed < 1.0
    assert error.maybe_sent is False
    assert error.order_id == "00000000-0000-4000-8000-0000000000a1"


@pytest.mark.cadenza_sim(cancel_delay=0)
async def test_a_burst_of_503_is_ridden_out_within_the_deadline(cadenza_sim, client):
    order = cadenza_sim.create_order()
    cadenza_sim.rest_outage(0.6, status=503)

    result, elapsed = await timed(client.cancel_and_confirm(order.trade_order_id, timeout=10))

    # A cancel is a safety operation: a 0.6 s outage of a 10 s budget does not fail it
    assert result.cancelled
    assert 0.6 <= elapsed < 10
    assert cadenza_sim.get_order(order.trade_order_id).status == "CANCELLED"


# --------------------------------------------------------------------------- 3: degraded mode


@pytest.mark.cadenza_sim(cancel_delay=0.05)
async def test_a_client_enters_and_cancels_while_the_websocket_is_refused(cadenza_sim):
    await cadenza_sim.refuse_websocket(503)
    order, later = cadenza_sim.create_orders(2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with CadenzaClient(**settings(cadenza_sim)) as client:
        assert loop.time() - started < 1.0  # refused at once: no 10 s wait to enter
        stats = client.stats()
        assert (stats.stream_connected, stats.degraded) == (False, True)

        result = await asyncio.wait_for(client.cancel_and_confirm(order.trade_order_id), STEP)
        assert (result.cancelled, result.source) == (True, "rest")
        assert client.stats().rest_polls >= 1

        cadenza_sim.accept_websocket()
        await cadenza_sim.wait_for(lambda: client.stats().stream_connected, timeout=STEP)
        await cadenza_sim.wait_for(lambda: not client.stats().degraded, timeout=STEP)
        result = await asyncio.wait_for(client.cancel_and_confirm(later.trade_order_id), STEP)
        assert (result.cancelled, result.source) == (True, "ws")


@pytest.mark.cadenza_sim(cancel_delay=0)
async def test_a_plain_http_cancel_works_while_the_websocket_is_refused(cadenza_sim):
    await cadenza_sim.refuse_websocket(None)
    order = cadenza_sim.create_order()
    async with CadenzaClient(**settings(cadenza_sim)) as client:
        reply = await asyncio.wait_for(client.cancel(order.trade_order_id), STEP)
    assert reply.status == "CANCELLED"


@pytest.mark.cadenza_sim(cancel_delay=1000)
async def test_degraded_mode_is_logged_once_on_entering_and_once_on_leaving(cadenza_sim, caplog):
    caplog.set_level(logging.INFO, logger="cadenza_async.cancels")
    async with CadenzaClient(**settings(cadenza_sim)) as client:
        caplog.clear()
        await cadenza_sim.refuse_websocket(503)
        await cadenza_sim.wait_for(lambda: client.stats().degraded, timeout=STEP)
        refused = cadenza_sim.websocket_refusals
        # several refused reconnects: still one warning
        await cadenza_sim.wait_for(lambda: cadenza_sim.websocket_refusals >= refused + 3, STEP)
        cadenza_sim.accept_websocket()
        await cadenza_sim.wait_for(lambda: not client.stats().degraded, timeout=STEP)
    records = [r for r in caplog.records if r.name == "cadenza_async.cancels"]
    assert [r.levelname for r in records] == ["WARNING", "INFO"]


# --------------------------------------------------------------------------- 4: shared cancels


@pytest.mark.cadenza_sim(cancel_delay=0)
async def test_a_cancelled_sender_leaves_one_request_for_the_callers_still_waiting(
    cadenza_sim, client
):
    order = cadenza_sim.create_order()
    cadenza_sim.delay_rest(0.3, endpoint="cancel")
    first = asyncio.ensure_future(client.cancel_and_confirm(order.trade_order_id, timeout=STEP))
    # The request is in the simulator's hands (read, held 0.3 s before it is handled).
    await cadenza_sim.wait_for(
        lambda: order.trade_order_id in cadenza_sim.max_concurrent_cancels, timeout=STEP
    )
    second = asyncio.ensure_future(client.cancel_and_confirm(order.trade_order_id, timeout=STEP))
    await asyncio.sleep(0)
    first.cancel()  # during the HTTP request

    result = await asyncio.wait_for(second, STEP)

    assert first.cancelled()
    assert result.cancelled is True
    assert cancels_of(cadenza_sim, order.trade_order_id) == ["http"]
    assert cadenza_sim.max_concurrent_cancels[order.trade_order_id] == 1


@pytest.mark.cadenza_sim(cancel_delay=0)
async def test_a_later_caller_keeps_the_shared_request_alive_past_the_first_deadline(
    cadenza_sim, client
):
    order = cadenza_sim.create_order()
    cadenza_sim.delay_rest(1.0, endpoint="cancel")  # held 1 s before it is applied
    a = asyncio.ensure_future(client.cancel_and_confirm(order.trade_order_id, timeout=0.5))
    await cadenza_sim.wait_for(
        lambda: order.trade_order_id in cadenza_sim.max_concurrent_cancels, timeout=STEP
    )
    b = asyncio.ensure_future(client.cancel_and_confirm(order.trade_order_id, timeout=5.0))

    with pytest.raises(ConfirmationTimeout):
        await asyncio.wait_for(a, STEP)
    result = await asyncio.wait_for(b, STEP)

    assert result.cancelled is True
    assert cadenza_sim.get_order(order.trade_order_id).status == "CANCELLED"
    assert cadenza_sim.max_concurrent_cancels[order.trade_order_id] == 1
    cadenza_sim.delay_rest(0, endpoint="cancel")


# --------------------------------------------------------------------------- 5: proof ends the wait


@pytest.mark.cadenza_sim(cancel_delay=0)
async def test_the_event_ends_the_wait_while_the_reply_is_still_travelling(cadenza_sim, client):
    order = cadenza_sim.create_order()
    cadenza_sim.delay_cancel_reply(3.0)

    result, elapsed = await timed(client.cancel_and_confirm(order.trade_order_id, timeout=STEP))

    assert (result.cancelled, result.source) == (True, "ws")
    assert elapsed < 1.0
    assert result.acked_after is None  # the proof came before the reply
    assert result.latency < 1.0
    cadenza_sim.delay_cancel_reply(0)


# --------------------------------------------------------------------------- 6: refused resubscribe


@pytest.mark.cadenza_sim(cancel_delay=1000)
async def test_a_resubscribe_refused_with_112_resubscribes_from_now_and_reconciles(
    cadenza_sim, client
):
    order, later = cadenza_sim.create_orders(2)
    task = asyncio.ensure_future(client.cancel_and_confirm(order.trade_order_id, timeout=STEP))
    await cadenza_sim.wait_for(
        lambda: cadenza_sim.get_order(order.trade_order_id).status == "PENDING_CANCEL"
    )
    cadenza_sim.refuse_subscribe(code=112, resubscribe_only=True)
    cadenza_sim.pause_publications()
    await cadenza_sim.disconnect_all(3001)
    cadenza_sim.set_status(order.trade_order_id, "CANCELLED")
    cadenza_sim.resume_publications()

    result, elapsed = await timed(task)
    assert result.cancelled is True
    assert elapsed < 2.0  # not at the deadline
    # The account's channel is live again: a later cancel is proven by its event.
    cadenza_sim.cancel_delay = 0.05
    result = await asyncio.wait_for(client.cancel_and_confirm(later.trade_order_id), STEP)
    assert (result.cancelled, result.source) == (True, "ws")


@pytest.mark.cadenza_sim(cancel_delay=1000)
async def test_a_resubscribe_refused_with_103_fails_the_accounts_cancels_and_later_ones_ask_again(
    cadenza_sim, client
):
    order, later = cadenza_sim.create_orders(2)
    task = asyncio.ensure_future(client.cancel_and_confirm(order.trade_order_id, timeout=STEP))
    await cadenza_sim.wait_for(
        lambda: cadenza_sim.get_order(order.trade_order_id).status == "PENDING_CANCEL"
    )
    cadenza_sim.refuse_subscribe(code=103, resubscribe_only=True)
    await cadenza_sim.disconnect_all(3001)

    error, elapsed = await timed(task, expect=PermissionDeniedError)
    assert elapsed < 2.0
    assert error.order_id == order.trade_order_id

    # Not a silent drop for good: the next cancel on the account subscribes again.
    cadenza_sim.cancel_delay = 0.05
    result = await asyncio.wait_for(client.cancel_and_confirm(later.trade_order_id), STEP)
    assert result.cancelled is True
    await cadenza_sim.wait_for(
        lambda: client._stream.is_live("tradingAccount:" + cadenza_sim.trading_account_id),
        timeout=STEP,
    )


# --------------------------------------------------------------------------- 8: closing


@pytest.mark.cadenza_sim(cancel_delay=1000)
async def test_closing_past_the_drain_timeout_ends_background_cancels_with_client_closed(
    cadenza_sim,
):
    reported: list[tuple[type[BaseException], str]] = []
    order = cadenza_sim.create_order()
    client = CadenzaClient(
        **settings(cadenza_sim, drain_timeout=0.2),
        on_background_error=lambda exc, oid: reported.append((type(exc), oid)),
    )
    async with client:
        handle = client.cancel_nowait(order.trade_order_id, timeout=30)
        await cadenza_sim.wait_for(lambda: cadenza_sim.cancel_requests, timeout=STEP)

    with pytest.raises(ClientClosedError) as info:
        await handle
    assert info.value.order_id == order.trade_order_id
    # Nobody was awaiting the handle when the client closed: the failure was reported too.
    assert reported == [(ClientClosedError, order.trade_order_id)]


@pytest.mark.cadenza_sim(cancel_delay=1000)
async def test_an_unobserved_background_cancel_past_the_drain_is_reported_as_client_closed(
    cadenza_sim,
):
    reported: list[tuple[type[BaseException], str]] = []
    order = cadenza_sim.create_order()
    async with CadenzaClient(
        **settings(cadenza_sim, drain_timeout=0.2),
        on_background_error=lambda exc, oid: reported.append((type(exc), oid)),
    ) as client:
        client.cancel_nowait(order.trade_order_id, timeout=30)
        await cadenza_sim.wait_for(lambda: cadenza_sim.cancel_requests, timeout=STEP)
    assert reported == [(ClientClosedError, order.trade_order_id)]


# --------------------------------------------------------------------------- 9: refused tokens


async def test_a_token_the_websocket_refuses_raises_authentication_error_naming_it(cadenza_sim):
    options = settings(cadenza_sim, token="not-a-valid-token")
    with pytest.raises(AuthenticationError) as info:
        async with CadenzaClient(**options):
            pytest.fail("entered with a refused token")
    assert isinstance(info.value, StreamAuthenticationError)
    assert "WebSocket" in str(info.value)


async def test_a_token_the_rest_api_refuses_raises_authentication_error_naming_it(cadenza_sim):
    options = settings(cadenza_sim, token="not-a-valid-token")
    client = CadenzaClient(**options)
    try:
        with pytest.raises(AuthenticationError) as info:
            await client.cancel("00000000-0000-4000-8000-0000000000a1")
    finally:
        await client.aclose()
    assert not isinstance(info.value, StreamAuthenticationError)
    assert "REST API" in str(info.value)


# --------------------------------------------------------------------------- 11: timers


@pytest.mark.cadenza_sim(cancel_delay=0)
async def test_confirmed_cancels_leave_no_live_timer_on_the_loop(cadenza_sim, client):
    loop = asyncio.get_running_loop()

    def live_timers() -> int:
        return sum(1 for h in loop._scheduled if not h.cancelled())  # type: ignore[attr-defined]

    orders = cadenza_sim.create_orders(200)
    await client.cancel_and_confirm(orders[0].trade_order_id, timeout=30)  # warm up
    before = live_timers()
    for order in orders[1:]:
        await client.cancel_and_confirm(order.trade_order_id, timeout=30)
    await asyncio.sleep(0)
    assert live_timers() <= before + 2  # not one per confirmed cancel


# --------------------------------------------------------------------------- 10: small


@pytest.mark.cadenza_sim(cancel_delay=1000)
async def test_an_over_nested_event_is_logged_as_undecodable_not_malformed(
    cadenza_sim, client, caplog
):
    caplog.set_level(logging.WARNING, logger="cadenza_async.stream")
    marker = cadenza_sim.create_order()
    cadenza_sim.publish_raw_order_update(None, b"[" * 30_000 + b"]" * 30_000)
    cadenza_sim.fill(marker.trade_order_id)  # published after it: once seen, it was handled
    await cadenza_sim.wait_for(lambda: client.bad_events >= 1, timeout=STEP)

    texts = [r.getMessage() for r in caplog.records if r.name == "cadenza_async.stream"]
    assert any("undecodable order event (nested too deeply)" in t for t in texts), texts
    assert not any("malformed order event" in t for t in texts)
