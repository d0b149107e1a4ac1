"""The cancel orchestration on its own: fake transports, no sockets, no stream.

:class:`~cadenza_async.cancels.Canceller` takes its transports (the cancel,
the look-up) as objects; here they are scripted fakes, so each rule of the
orchestration is shown without a server: what is sent, when, how often, and
what each caller learns.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable

import pytest

from cadenza_async._ratelimit import RateGate
from cadenza_async.cancels import POLL_FIRST, Canceller
from cadenza_async.errors import (
    ClientClosedError,
    ConfirmationTimeout,
    OrderNotCancellableError,
    OrderNotFoundError,
    PermissionDeniedError,
    ServerError,
    StreamRpcError,
    TransportError,
)
from cadenza_async.models import CancelResult, TradeOrder
from cadenza_async.protocol.confirm import ConfirmationRegistry

ACCOUNT = "acc00000-0000-4000-8000-000000000001"
STEP = 5.0

Step = Callable[[], TradeOrder] | BaseException | float | None


def order(order_id: str, status: str, updated_at: int = 1) -> TradeOrder:
    return TradeOrder(order_id, ACCOUNT, status, updated_at=updated_at)


class Script:
    """A fake transport: each call takes the next step (an order, an error, a hang)."""

    def __init__(self, *steps: object, default: object = None) -> None:
        self.steps = list(steps)
        self.default = default
        self.calls: list[tuple[str, str | None, float | None]] = []
        self.in_flight = 0
        self.peak = 0

    async def __call__(self, order_id: str, account_id: str | None, deadline: float | None):
        self.calls.append((order_id, account_id, deadline))
        step = self.steps.pop(0) if self.steps else self.default
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            while isinstance(step, tuple):  # ("after", seconds, then)
                _, seconds, step = step
                await asyncio.sleep(seconds)
            if step == "hang":
                await asyncio.Event().wait()
            if isinstance(step, BaseException):
                raise step
            assert isinstance(step, TradeOrder), step
            return step
        finally:
            self.in_flight -= 1

    # the CancelTransport shape
    async def cancel(
        self, order_id: str, account_id: str | None, /, *, deadline: float
    ) -> TradeOrder:
        return await self(order_id, account_id, deadline)


def canceller(send: Script, look: Script, **options: object) -> Canceller:
    return Canceller(
        http_cancel=send,
        look_up_order=look,
        gate=RateGate(),
        registry=ConfirmationRegistry(settled_capacity=100),
        cancel_via="http",
        confirm_timeout=2.0,
        request_timeout=1.0,
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
async def closing():
    made: list[Canceller] = []
    yield made.append
    for c in made:
        await c.aclose()


async def timed(coro):
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        return await asyncio.wait_for(coro, STEP), loop.time() - started
    except Exception as exc:
        return exc, loop.time() - started


# --------------------------------------------------------------------------- proofs


async def test_a_terminal_reply_proves_the_cancel_with_one_request(closing):
    send, look = Script(order("00000000-0000-4000-8000-000000000001", "CANCELLED")), Script()
    c = canceller(send, look)
    closing(c)

    result = await c.cancel_and_confirm("00000000-0000-4000-8000-000000000001")

    assert (result.cancelled, result.source) == (True, "http")
    assert result.acked_after is not None
    assert len(send.calls) == 1
    assert look.calls == []


async def test_without_a_stream_a_pending_reply_is_proven_by_rest_polling(closing):
    send = Script(order("00000000-0000-4000-8000-000000000001", "PENDING_CANCEL"))
    look = Script(
        order("00000000-0000-4000-8000-000000000001", "PENDING_CANCEL"),
        default=order("00000000-0000-4000-8000-000000000001", "CANCELLED", 2),
    )
    c = canceller(send, look)
    closing(c)

    result, elapsed = await timed(c.cancel_and_confirm("00000000-0000-4000-8000-000000000001"))

    assert isinstance(result, CancelResult)
    assert (result.cancelled, result.source) == (True, "rest")
    assert len(look.calls) == 2  # after ~0.1 s, then after ~0.2 s more
    assert elapsed >= POLL_FIRST * 3 - 0.01
    assert c.rest_polls == 2


async def test_an_event_proves_it_while_the_reply_is_still_travelling(closing):
    send, look = (
        Script(("after", 10.0, order("00000000-0000-4000-8000-000000000001", "PENDING_CANCEL"))),
        Script(),
    )
    c = canceller(send, look)
    closing(c)
    task = asyncio.ensure_future(c.cancel_and_confirm("00000000-0000-4000-8000-000000000001"))
    while not send.calls:
        await asyncio.sleep(0)

    c.observe_event(order("00000000-0000-4000-8000-000000000001", "CANCELLED", 5), ACCOUNT)
    result, elapsed = await timed(task)

    assert (result.cancelled, result.source) == (True, "ws")
    assert result.acked_after is None
    assert elapsed < 1.0


async def test_cannot_cancel_is_decided_by_the_orders_own_state(closing):
    send = Script(OrderNotCancellableError("Cannot cancel", status=400, errno=-111001))
    look = Script(order("00000000-0000-4000-8000-000000000001", "FILLED", 3))
    c = canceller(send, look)
    closing(c)

    result = await c.cancel_and_confirm("00000000-0000-4000-8000-000000000001")

    assert (result.cancelled, result.status, result.source) == (False, "FILLED", "rest")


# --------------------------------------------------------------------------- failures


async def test_a_cancel_that_never_reached_the_api_fails_at_once(closing):
    refused = TransportError("POST /cancel: connection refused", maybe_sent=False)
    send, look = Script(refused), Script()
    c = canceller(send, look)
    closing(c)

    error, elapsed = await timed(
        c.cancel_and_confirm("00000000-0000-4000-8000-000000000001", timeout=10)
    )

    assert isinstance(error, TransportError)
    assert error.order_id == "00000000-0000-4000-8000-000000000001"
    assert elapsed < 0.5
    assert look.calls == []


@pytest.mark.skipif(
    sys.version_info >= (3, 12), reason="3.12+ starts the job's task eagerly: it sends at once"
)
async def test_a_job_that_starts_after_its_deadline_says_it_never_sent(closing):
    """A loop stalled past the deadline before the job's task ran: nothing went out, and
    the caller learns that (not a ConfirmationTimeout, which says "may have been sent")."""
    send, look = Script(order("00000000-0000-4000-8000-000000000001", "CANCELLED")), Script()
    c = canceller(send, look)
    closing(c)

    call = asyncio.ensure_future(
        c.cancel_and_confirm("00000000-0000-4000-8000-000000000001", timeout=0.05)
    )
    await asyncio.sleep(0)  # the call registered and started its job's task, not yet run
    time.sleep(0.1)  # the loop stalls past the deadline
    error, _ = await timed(call)

    assert isinstance(error, TransportError), repr(error)
    assert error.maybe_sent is False
    assert error.order_id == "00000000-0000-4000-8000-000000000001"
    assert send.calls == []


async def test_every_answer_a_5xx_fails_at_once(closing):
    send, look = Script(ServerError("unavailable", status=503)), Script()
    c = canceller(send, look)
    closing(c)

    error, _ = await timed(c.cancel_and_confirm("00000000-0000-4000-8000-000000000001", timeout=10))

    assert isinstance(error, ServerError)
    assert len(send.calls) == 1


async def test_a_cancel_that_may_have_arrived_is_looked_up_then_sent_again(closing):
    timed_out = TransportError("POST /cancel: timed out")  # maybe_sent
    send = Script(timed_out, order("00000000-0000-4000-8000-000000000001", "CANCELLED", 4))
    look = Script(order("00000000-0000-4000-8000-000000000001", "OPEN", 2))
    c = canceller(send, look)
    closing(c)

    result = await c.cancel_and_confirm("00000000-0000-4000-8000-000000000001")

    assert (result.cancelled, result.source) == (True, "http")
    assert len(send.calls) == 2
    assert len(look.calls) == 1  # seen still open before sending again


async def test_a_may_have_arrived_cancel_seen_pending_is_not_sent_again(closing):
    send = Script(TransportError("reset after sending"))
    look = Script(
        order("00000000-0000-4000-8000-000000000001", "PENDING_CANCEL", 2),
        default=order("00000000-0000-4000-8000-000000000001", "CANCELLED", 3),
    )
    c = canceller(send, look)
    closing(c)

    result = await c.cancel_and_confirm("00000000-0000-4000-8000-000000000001")

    assert result.cancelled is True
    assert len(send.calls) == 1


async def test_a_definite_answer_is_every_callers_error(closing):
    # The answer comes a moment later: both callers have joined by then.
    send, look = Script(("after", 0.01, OrderNotFoundError("no such order", status=404))), Script()
    c = canceller(send, look)
    closing(c)

    a, b = await asyncio.gather(
        c.cancel_and_confirm("00000000-0000-4000-8000-000000000001"),
        c.cancel_and_confirm("00000000-0000-4000-8000-000000000001"),
        return_exceptions=True,
    )

    assert isinstance(a, OrderNotFoundError)
    assert isinstance(b, OrderNotFoundError)
    assert len(send.calls) == 1


# --------------------------------------------------------------------------- deadlines


async def test_a_hung_request_ends_at_the_deadline_with_the_unanswered_send_as_cause(closing):
    send, look = Script("hang"), Script("hang")
    c = canceller(send, look)
    closing(c)

    error, elapsed = await timed(
        c.cancel_and_confirm("00000000-0000-4000-8000-000000000001", timeout=0.3)
    )

    assert isinstance(error, ConfirmationTimeout)
    assert 0.3 <= elapsed < 0.4
    assert isinstance(error.__cause__, TransportError)
    assert error.last_known is None
    assert len(look.calls) == 1  # the final look-up, in the deadline's last slice


async def test_every_request_carries_the_calls_deadline(closing):
    send = Script(order("00000000-0000-4000-8000-000000000001", "PENDING_CANCEL"))
    look = Script(default=order("00000000-0000-4000-8000-000000000001", "CANCELLED", 2))
    c = canceller(send, look)
    closing(c)
    loop = asyncio.get_running_loop()
    started = loop.time()

    await c.cancel_and_confirm("00000000-0000-4000-8000-000000000001", timeout=0.8)

    deadlines = [d for _, _, d in send.calls + look.calls]
    assert deadlines
    assert all(d is not None and abs(d - (started + 0.8)) < 0.05 for d in deadlines)


# --------------------------------------------------------------------------- sharing


async def test_shared_callers_share_one_request_and_a_leaving_caller_changes_nothing(closing):
    send = Script(("after", 0.2, order("00000000-0000-4000-8000-000000000001", "CANCELLED")))
    c = canceller(send, Script())
    closing(c)
    first = asyncio.ensure_future(c.cancel_and_confirm("00000000-0000-4000-8000-000000000001"))
    second = asyncio.ensure_future(c.cancel_and_confirm("00000000-0000-4000-8000-000000000001"))
    while not send.calls:
        await asyncio.sleep(0)
    first.cancel()

    result = await asyncio.wait_for(second, STEP)

    assert first.cancelled()
    assert result.cancelled is True
    assert len(send.calls) == 1
    assert send.peak == 1


async def test_a_later_caller_extends_the_shared_job_past_the_first_deadline(closing):
    timed_out = TransportError("timed out")
    send = Script(
        ("after", 0.25, timed_out), order("00000000-0000-4000-8000-000000000001", "CANCELLED", 3)
    )
    look = Script(default=order("00000000-0000-4000-8000-000000000001", "OPEN", 2))
    c = canceller(send, look)
    closing(c)
    a = asyncio.ensure_future(
        c.cancel_and_confirm("00000000-0000-4000-8000-000000000001", timeout=0.3)
    )
    b = asyncio.ensure_future(
        c.cancel_and_confirm("00000000-0000-4000-8000-000000000001", timeout=3.0)
    )

    result_a, result_b = await asyncio.gather(a, b, return_exceptions=True)

    assert isinstance(result_a, ConfirmationTimeout)
    assert isinstance(result_b, CancelResult)
    assert result_b.cancelled is True
    assert len(send.calls) == 2
    assert send.peak == 1  # one request at a time


async def test_when_every_caller_left_the_job_stops(closing):
    send = Script("hang")
    c = canceller(send, Script())
    closing(c)
    task = asyncio.ensure_future(c.cancel_and_confirm("00000000-0000-4000-8000-000000000001"))
    while not send.calls:
        await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    for _ in range(5):
        await asyncio.sleep(0)

    assert send.in_flight == 0
    assert len(c._tasks) == 0


# --------------------------------------------------------------------------- closing and refusals


async def test_closing_ends_every_waiting_caller_with_client_closed(closing):
    send = Script(order("00000000-0000-4000-8000-000000000001", "PENDING_CANCEL"))
    c = canceller(send, Script("hang"))
    task = asyncio.ensure_future(c.cancel_and_confirm("00000000-0000-4000-8000-000000000001"))
    while not send.calls:
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)

    await c.aclose()
    error = await asyncio.gather(task, return_exceptions=True)

    assert isinstance(error[0], ClientClosedError)
    assert error[0].order_id == "00000000-0000-4000-8000-000000000001"
    with pytest.raises(ClientClosedError):
        await c.cancel_and_confirm("00000000-0000-4000-8000-000000000002")


async def test_a_channel_refused_with_103_fails_that_accounts_cancels(closing):
    send = Script(order("00000000-0000-4000-8000-000000000001", "PENDING_CANCEL"))
    c = canceller(send, Script("hang"))
    closing(c)
    task = asyncio.ensure_future(
        c.cancel_and_confirm("00000000-0000-4000-8000-000000000001", trading_account_id=ACCOUNT)
    )
    while not send.calls:
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)

    c.channel_refused("tradingAccount:" + ACCOUNT, StreamRpcError("permission denied", errno=103))
    (error,) = await asyncio.gather(task, return_exceptions=True)

    assert isinstance(error, PermissionDeniedError)
    assert error.order_id == "00000000-0000-4000-8000-000000000001"


# --------------------------------------------------------------------------- reconciliation


class Pages:
    """A fake list transport: the account's orders, ``size`` a page, minus ``hidden`` ids."""

    def __init__(self, orders: list[TradeOrder], hidden: set[str] = frozenset()) -> None:
        self.orders = [o for o in orders if o.trade_order_id not in hidden]
        self.calls: list[tuple[str, int, int]] = []

    async def __call__(self, account: str, limit: int, offset: int, deadline: float):
        from cadenza_async.http import OrderPage
        from cadenza_async.models import Pagination

        self.calls.append((account, limit, offset))
        await asyncio.sleep(0)
        page = self.orders[offset : offset + limit]
        more = offset + len(page) < len(self.orders)
        return OrderPage(page, Pagination(offset=offset, limit=limit, has_next=more))


async def test_reconciliation_lists_the_account_and_looks_up_only_what_the_pages_missed(closing):
    ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(30)]
    send = Script(*[order(i, "PENDING_CANCEL") for i in ids])
    pages = Pages(
        [order(i, "CANCELLED", 9) for i in ids], hidden={"00000000-0000-4000-8000-000000000007"}
    )
    look = Script(default=order("00000000-0000-4000-8000-000000000007", "CANCELLED", 9))
    c = canceller(send, look, list_page=pages)
    closing(c)
    tasks = [asyncio.ensure_future(c.cancel_and_confirm(i, timeout=3.0)) for i in ids]
    while len(send.calls) < len(ids):
        await asyncio.sleep(0.01)

    await c.reconcile_pending(ACCOUNT)
    results = await asyncio.wait_for(asyncio.gather(*tasks), STEP)

    assert all(r.cancelled and r.source == "rest" for r in results)
    assert len(pages.calls) == 1  # 29 of 30 on one page of 500
    assert [oid for oid, _, _ in look.calls] == [
        "00000000-0000-4000-8000-000000000007"
    ]  # the one the pages missed


async def test_many_polling_jobs_of_one_account_share_one_listing(closing):
    ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(40)]
    send = Script(*[order(i, "PENDING_CANCEL") for i in ids])
    pages = Pages([order(i, "CANCELLED", 9) for i in ids])
    look = Script(default=order("none", "OPEN"))
    c = canceller(send, look, list_page=pages)
    closing(c)

    results = await asyncio.wait_for(
        asyncio.gather(*(c.cancel_and_confirm(i, timeout=3.0) for i in ids)), STEP
    )

    assert all(r.cancelled for r in results)
    assert look.calls == []
    assert len(pages.calls) <= 2  # not 40 look-ups
