"""The cancel orchestration on its own: fake transports, no sockets, no stream.

:class:`~cadenza_async.cancels.Canceller` takes its transports (the cancel,
the look-up) as objects; here they are scripted fakes, so each rule of the
orchestration is shown without a server: what is sent, when, how often, and
what each caller learns.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

import pytest
from support import DEADLINE_SLACK, clock_jumped, turns_until, until

from cadenza_async._ratelimit import RateGate
from cadenza_async.cancels import POLL_FIRST, CancelHandle, Canceller
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
    """A fake transport: each call takes the next step (an order, an error, a hang).

    A step ``(gate, then)`` waits until the test sets ``gate`` (an ``asyncio.Event``),
    then takes ``then``: the answer comes when the test says, not after a guessed time.
    """

    def __init__(self, *steps: object, default: object = None) -> None:
        self.steps = list(steps)
        self.default = default
        self.calls: list[tuple[str, str | None, float | None]] = []
        self.called_at: list[float] = []
        self.in_flight = 0
        self.peak = 0

    async def __call__(self, order_id: str, account_id: str | None, deadline: float | None):
        self.calls.append((order_id, account_id, deadline))
        self.called_at.append(asyncio.get_running_loop().time())
        step = self.steps.pop(0) if self.steps else self.default
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            while isinstance(step, tuple):  # (gate, then)
                gate, step = step
                await gate.wait()
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
    options.setdefault("default_account", ACCOUNT)  # (the orders' account: no look-up first)
    registry = options.pop("registry", None)
    if registry is None:
        registry = ConfirmationRegistry(settled_capacity=100)
    return Canceller(
        http_cancel=send,
        look_up_order=look,
        gate=RateGate(),
        registry=registry,  # type: ignore[arg-type]
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
    send, look = Script("hang"), Script()
    c = canceller(send, look)
    closing(c)
    task = asyncio.ensure_future(c.cancel_and_confirm("00000000-0000-4000-8000-000000000001"))
    await turns_until(lambda: send.calls)

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


async def test_a_cancel_that_never_reached_the_api_is_retried_until_the_deadline_then_raised(
    closing,
):
    refused = TransportError("POST /cancel: connection refused", maybe_sent=False)
    send, look = (
        Script(default=refused),
        Script(default=order("00000000-0000-4000-8000-000000000001", "OPEN")),
    )
    c = canceller(send, look)
    closing(c)

    error, elapsed = await timed(
        c.cancel_and_confirm("00000000-0000-4000-8000-000000000001", timeout=0.5)
    )

    # sent at 0, 0.1 and 0.3 s; the next (at 0.7 s) would be past the deadline: raised then,
    # as what it is (nothing reached the API), not as a timeout
    assert isinstance(error, TransportError)
    assert error.order_id == "00000000-0000-4000-8000-000000000001"
    assert len(send.calls) == 3
    assert elapsed < 0.5


async def test_a_refused_cancel_goes_through_once_the_api_is_back(closing):
    refused = TransportError("POST /cancel: connection refused", maybe_sent=False)
    unavailable = ServerError("unavailable", status=503)
    send = Script(refused, unavailable, order("00000000-0000-4000-8000-000000000001", "CANCELLED"))
    c = canceller(send, Script())
    closing(c)

    result = await c.cancel_and_confirm("00000000-0000-4000-8000-000000000001", timeout=5.0)

    assert (result.cancelled, result.source) == (True, "http")
    assert len(send.calls) == 3


async def test_a_fault_of_the_set_up_fails_at_once_whatever_the_time_left(closing):
    unknown = TransportError("no such host", maybe_sent=False, lasting=True)
    send, look = Script(default=unknown), Script()
    c = canceller(send, look)
    closing(c)

    error, _ = await timed(c.cancel_and_confirm("00000000-0000-4000-8000-000000000001", timeout=10))

    assert isinstance(error, TransportError)
    assert len(send.calls) == 1


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
    with clock_jumped(0.1):  # the loop stalled past the deadline (its clock moved on)
        error, _ = await timed(call)

    assert isinstance(error, TransportError), repr(error)
    assert error.maybe_sent is False
    assert error.order_id == "00000000-0000-4000-8000-000000000001"
    assert send.calls == []


async def test_every_answer_a_5xx_is_retried_while_the_deadline_allows_then_raised(closing):
    # (a 503 other than 504: the API did not apply the cancel, DESIGN.md rule 4)
    send = Script(default=ServerError("unavailable", status=503))
    c = canceller(send, Script(default=order("00000000-0000-4000-8000-000000000001", "OPEN")))
    closing(c)

    error, elapsed = await timed(
        c.cancel_and_confirm("00000000-0000-4000-8000-000000000001", timeout=0.5)
    )

    assert isinstance(error, ServerError)
    assert len(send.calls) == 3  # at 0, 0.1 and 0.3 s
    assert elapsed < 0.5


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
    answer = asyncio.Event()  # the answer comes once both callers have joined
    send, look = Script((answer, OrderNotFoundError("no such order", status=404))), Script()
    registry = ConfirmationRegistry()
    c = canceller(send, look, registry=registry)
    closing(c)
    calls = asyncio.gather(
        c.cancel_and_confirm("00000000-0000-4000-8000-000000000001", trading_account_id=ACCOUNT),
        c.cancel_and_confirm("00000000-0000-4000-8000-000000000001", trading_account_id=ACCOUNT),
        return_exceptions=True,
    )
    await turns_until(
        lambda: (
            send.calls
            and (w := registry.get("00000000-0000-4000-8000-000000000001"))
            and w.refs == 2
        )
    )
    answer.set()

    a, b = await asyncio.wait_for(calls, STEP)

    assert isinstance(a, OrderNotFoundError)
    assert isinstance(b, OrderNotFoundError)
    assert len(send.calls) == 1


async def test_a_not_found_on_the_guessed_default_account_looks_the_order_up(closing):
    send = Script(
        OrderNotFoundError("no such order", status=404),
        TradeOrder(
            "00000000-0000-4000-8000-000000000001",
            "acc00000-0000-4000-8000-000000000002",
            "CANCELLED",
            updated_at=2,
        ),
    )
    look = Script(
        TradeOrder(
            "00000000-0000-4000-8000-000000000001",
            "acc00000-0000-4000-8000-000000000002",
            "OPEN",
            updated_at=1,
        )
    )
    c = canceller(send, look)
    closing(c)

    result = await c.cancel_and_confirm("00000000-0000-4000-8000-000000000001")

    assert (result.cancelled, result.source) == (True, "http")
    assert [account for _, account, _ in send.calls] == [
        ACCOUNT,
        "acc00000-0000-4000-8000-000000000002",
    ]
    assert [account for _, account, _ in look.calls] == [None]  # by the order's id alone


async def test_an_order_found_nowhere_is_not_found_after_one_look_up(closing):
    send = Script(OrderNotFoundError("no such order", status=404))
    look = Script(OrderNotFoundError("no such order", status=404))
    c = canceller(send, look)
    closing(c)

    error, _ = await timed(c.cancel_and_confirm("00000000-0000-4000-8000-000000000001"))

    assert isinstance(error, OrderNotFoundError)
    assert (len(send.calls), len(look.calls)) == (1, 1)


async def test_without_any_account_the_order_is_looked_up_before_the_cancel(closing):
    send = Script(order("00000000-0000-4000-8000-000000000001", "CANCELLED"))
    look = Script(order("00000000-0000-4000-8000-000000000001", "OPEN"))
    c = canceller(send, look, default_account=None)
    closing(c)

    result = await c.cancel_and_confirm("00000000-0000-4000-8000-000000000001")

    assert result.cancelled
    assert [account for _, account, _ in look.calls] == [None]
    assert [account for _, account, _ in send.calls] == [ACCOUNT]


async def test_a_look_up_that_finds_the_order_final_proves_it_without_a_cancel(closing):
    send = Script()
    look = Script(order("00000000-0000-4000-8000-000000000001", "FILLED"))
    c = canceller(send, look, default_account=None)
    closing(c)

    result = await c.cancel_and_confirm("00000000-0000-4000-8000-000000000001")

    assert (result.cancelled, result.status, result.source) == (False, "FILLED", "rest")
    assert send.calls == []


# --------------------------------------------------------------------------- deadlines


async def test_a_hung_request_ends_at_the_deadline_with_the_unanswered_send_as_cause(closing):
    send, look = Script("hang"), Script("hang")
    c = canceller(send, look)
    closing(c)

    error, elapsed = await timed(
        c.cancel_and_confirm("00000000-0000-4000-8000-000000000001", timeout=0.3)
    )

    assert isinstance(error, ConfirmationTimeout)
    assert 0.3 <= elapsed < 0.3 + DEADLINE_SLACK  # (a deadline test: ends on time)
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

    (deadline,) = {d for _, _, d in send.calls + look.calls}  # one deadline for every request
    assert deadline is not None
    assert started + 0.8 <= deadline <= send.called_at[0] + 0.8  # set when the call began


# --------------------------------------------------------------------------- sharing


async def test_shared_callers_share_one_request_and_a_leaving_caller_changes_nothing(closing):
    answer = asyncio.Event()
    send = Script((answer, order("00000000-0000-4000-8000-000000000001", "CANCELLED")))
    c = canceller(send, Script())
    closing(c)
    first = asyncio.ensure_future(c.cancel_and_confirm("00000000-0000-4000-8000-000000000001"))
    second = asyncio.ensure_future(c.cancel_and_confirm("00000000-0000-4000-8000-000000000001"))
    await turns_until(lambda: send.calls)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    answer.set()  # the answer comes after the first caller left

    result = await asyncio.wait_for(second, STEP)

    assert first.cancelled()
    assert result.cancelled is True
    assert len(send.calls) == 1
    assert send.peak == 1


async def test_a_later_caller_extends_the_shared_job_past_the_first_deadline(closing):
    answer = asyncio.Event()  # the first send fails only after the first caller's deadline
    send = Script(
        (answer, TransportError("timed out")),
        order("00000000-0000-4000-8000-000000000001", "CANCELLED", 3),
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
    result_a = (await asyncio.gather(a, return_exceptions=True))[0]
    answer.set()

    result_b = (await asyncio.gather(asyncio.wait_for(b, STEP), return_exceptions=True))[0]

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
    await turns_until(lambda: send.calls)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    # no task is left that could send or poll (the job's own was stopped)
    await turns_until(lambda: not asyncio.all_tasks() - {asyncio.current_task()})
    assert send.in_flight == 0


# --------------------------------------------------------------------------- closing and refusals


async def test_closing_ends_every_waiting_caller_with_client_closed(closing):
    send = Script(order("00000000-0000-4000-8000-000000000001", "PENDING_CANCEL"))
    look = Script("hang")
    c = canceller(send, look)
    task = asyncio.ensure_future(
        c.cancel_and_confirm("00000000-0000-4000-8000-000000000001", timeout=30.0)
    )
    await until(lambda: look.calls)  # acknowledged, and polling: the caller sleeps

    await c.aclose()
    # woken by the close at once, not at its deadline 30 s away
    done, _ = await asyncio.wait({task}, timeout=2.0)
    assert task in done
    error = await asyncio.gather(task, return_exceptions=True)

    assert isinstance(error[0], ClientClosedError)
    assert error[0].order_id == "00000000-0000-4000-8000-000000000001"
    with pytest.raises(ClientClosedError):
        await c.cancel_and_confirm("00000000-0000-4000-8000-000000000002")


async def test_a_channel_refused_with_103_fails_that_accounts_cancels(closing):
    send = Script(order("00000000-0000-4000-8000-000000000001", "PENDING_CANCEL"))
    look = Script("hang")
    c = canceller(send, look)
    closing(c)
    task = asyncio.ensure_future(
        c.cancel_and_confirm("00000000-0000-4000-8000-000000000001", trading_account_id=ACCOUNT)
    )
    await until(lambda: look.calls)  # acknowledged, and polling

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

    async def __call__(self, account, since, limit, offset, cursor, deadline):
        from cadenza_async.http import OrderPage
        from cadenza_async.models import Pagination

        offset = offset or 0
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
    await until(lambda: len(send.calls) == len(ids))

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


class Listing:
    """A fake list transport over ``orders``: pages as asked, with or without pagination."""

    def __init__(self, orders: list[TradeOrder], *, paginated: bool = True) -> None:
        self.orders = orders
        self.paginated = paginated
        self.calls: list[tuple[str, int, int, float]] = []
        self.fail: BaseException | None = None

    async def __call__(self, account, since, limit, offset, cursor, deadline):
        from cadenza_async.http import OrderPage
        from cadenza_async.models import Pagination

        offset = offset or 0
        self.calls.append((account, limit, offset, deadline))
        await asyncio.sleep(0)
        if self.fail is not None:
            raise self.fail
        page = self.orders[offset : offset + limit]
        if not self.paginated:
            return OrderPage(page)
        return OrderPage(page, Pagination(has_next=offset + len(page) < len(self.orders)))


def others(n: int, tag: str) -> list[TradeOrder]:
    return [order(f"{tag}{i}", "OPEN", 9) for i in range(n)]


async def pending_cancels(c: Canceller, send: Script, ids: list[str]) -> list[asyncio.Task]:
    """``ids`` cancelled and acknowledged (PENDING_CANCEL): each waits for its proof."""
    tasks = [asyncio.ensure_future(c.cancel_and_confirm(i, timeout=5.0)) for i in ids]
    await until(lambda: len(send.calls) == len(ids))
    return tasks


async def test_reconciliation_pages_until_it_has_seen_every_pending_order(closing):
    ids = [
        "00000000-0000-4000-8000-000000000e00",
        "00000000-0000-4000-8000-000000000e01",
        "00000000-0000-4000-8000-000000000e02",
        "00000000-0000-4000-8000-000000000e03",
    ]
    send = Script(*[order(i, "PENDING_CANCEL") for i in ids])
    final = [order(i, "CANCELLED", 9) for i in ids]
    # w0, w1 on the first page, w2, w3 on the third; a fourth page the listing never reads
    listing = Listing(
        [*final[:2], *others(498, "a"), *others(500, "b"), *final[2:], *others(996, "c")]
    )
    c = canceller(send, Script("hang"), list_page=listing)
    closing(c)
    tasks = await pending_cancels(c, send, ids)
    loop = asyncio.get_running_loop()
    started = loop.time()

    assert await c.reconcile_pending(ACCOUNT) == 4
    results = await asyncio.wait_for(asyncio.gather(*tasks), STEP)

    assert [offset for _, _, offset, _ in listing.calls] == [0, 500, 1000]
    assert {(account, limit) for account, limit, _, _ in listing.calls} == {(ACCOUNT, 500)}
    (deadline,) = {d for _, _, _, d in listing.calls}  # one request timeout for the listing
    assert started + 1.0 <= deadline <= loop.time() + 1.0
    assert all(r.cancelled and r.source == "rest" and r.latency > 0 for r in results)


@pytest.mark.parametrize(
    ("paginated", "total", "offsets"),
    [
        (True, 700, [0, 500]),  # has_next false on the second page
        (False, 700, [0, 500]),  # no pagination: a short page is the last
        (False, 1000, [0, 500, 1000]),  # no pagination: a full page has a next one
    ],
)
async def test_reconciliation_stops_at_the_last_page_and_looks_up_what_it_missed(
    closing, paginated: bool, total: int, offsets: list[int]
):
    ids = [
        "00000000-0000-4000-8000-000000000e00",
        "00000000-0000-4000-8000-000000000e01",
        "00000000-0000-4000-8000-000000000e02",
        "00000000-0000-4000-8000-000000000e03",
    ]  # w3 is on no page
    send = Script(*[order(i, "PENDING_CANCEL") for i in ids])
    listing = Listing(
        [*[order(i, "CANCELLED", 9) for i in ids[:3]], *others(total - 3, "x")],
        paginated=paginated,
    )
    look = Script(default=order("00000000-0000-4000-8000-000000000e03", "CANCELLED", 9))
    c = canceller(send, look, list_page=listing)
    closing(c)
    tasks = await pending_cancels(c, send, ids)

    await c.reconcile_pending(ACCOUNT)
    results = await asyncio.wait_for(asyncio.gather(*tasks), STEP)

    assert [offset for _, _, offset, _ in listing.calls] == offsets
    assert [oid for oid, _, _ in look.calls] == ["00000000-0000-4000-8000-000000000e03"]
    assert all(r.cancelled for r in results)


async def test_a_failed_listing_leaves_each_pending_order_to_a_look_up(closing):
    ids = [
        "00000000-0000-4000-8000-000000000e00",
        "00000000-0000-4000-8000-000000000e01",
        "00000000-0000-4000-8000-000000000e02",
        "00000000-0000-4000-8000-000000000e03",
    ]
    send = Script(*[order(i, "PENDING_CANCEL") for i in ids])
    listing = Listing([])
    listing.fail = ServerError("unavailable", status=503)
    look = Script(*[order(i, "CANCELLED", 9) for i in ids])
    c = canceller(send, look, list_page=listing)
    closing(c)
    tasks = await pending_cancels(c, send, ids)

    await c.reconcile_pending(ACCOUNT)
    results = await asyncio.wait_for(asyncio.gather(*tasks), STEP)

    assert len(listing.calls) == 1
    assert sorted(oid for oid, _, _ in look.calls) == ids
    assert all(r.cancelled and r.source == "rest" for r in results)


async def test_one_error_reaching_two_callers_names_each_callers_order(closing):
    error = ServerError("unavailable", status=503)  # the same object for every send
    send = Script(default=error)
    c = canceller(send, Script(default=order("00000000-0000-4000-8000-000000000001", "OPEN")))
    closing(c)

    a, b = await asyncio.gather(
        c.cancel_and_confirm("00000000-0000-4000-8000-000000000001", timeout=0.5),
        c.cancel_and_confirm("00000000-0000-4000-8000-000000000002", timeout=0.5),
        return_exceptions=True,
    )

    assert a is error
    assert a.order_id == "00000000-0000-4000-8000-000000000001"
    assert type(b) is ServerError
    assert b is not error
    assert (b.order_id, str(b), b.status, b.args) == (
        "00000000-0000-4000-8000-000000000002",
        str(error),
        503,
        error.args,
    )


async def test_closing_under_a_bulk_gives_each_order_left_client_closed(closing):
    send = Script(default="hang")
    c = canceller(send, Script())
    recorded: dict[str, object] = {}
    bulk = asyncio.ensure_future(
        c.confirm_many(
            [
                "00000000-0000-4000-8000-000000000001",
                "00000000-0000-4000-8000-000000000002",
                "00000000-0000-4000-8000-000000000003",
            ],
            recorded.__setitem__,
            concurrency=3,
            timeout=STEP,
        )
    )
    await until(lambda: len(send.calls) == 3)

    await c.aclose()
    await asyncio.wait_for(bulk, STEP)

    assert sorted(recorded) == [
        "00000000-0000-4000-8000-000000000001",
        "00000000-0000-4000-8000-000000000002",
        "00000000-0000-4000-8000-000000000003",
    ]
    for order_id, outcome in recorded.items():
        assert isinstance(outcome, ClientClosedError)
        assert outcome.order_id == order_id


@pytest.mark.parametrize(
    ("seen", "sends"),
    [
        ("PENDING_CANCEL", 2),  # it got through: not sent again, proven by a poll
        ("OPEN", 3),  # still open: sent again after the backoff
    ],
)
async def test_a_joiner_taking_over_a_bulks_unanswered_cancel_looks_before_sending(
    closing, seen: str, sends: int
):
    """A bulk's worker stops at its deadline with its cancel unanswered (it may have
    reached the API); the caller who joined takes the job over and looks the order up
    before anything is sent again."""
    timed_out = TransportError("POST /cancel: timed out")  # may have reached the API
    send = Script(
        timed_out, timed_out, default=order("00000000-0000-4000-8000-000000000001", "CANCELLED", 9)
    )
    look = Script(
        order("00000000-0000-4000-8000-000000000001", "OPEN", 2),  # after the worker's first send
        order("00000000-0000-4000-8000-000000000001", "OPEN", 3),  # after its second
        order(
            "00000000-0000-4000-8000-000000000001", seen, 4
        ),  # the take-over's look, first when the worker stops
        order(
            "00000000-0000-4000-8000-000000000001", seen, 5
        ),  # the bulk's final look-up, right after
        default=order("00000000-0000-4000-8000-000000000001", "CANCELLED", 9),
    )
    c = canceller(send, look)
    closing(c)
    recorded: dict[str, object] = {}
    bulk = asyncio.ensure_future(
        c.confirm_many(
            ["00000000-0000-4000-8000-000000000001"],
            recorded.__setitem__,
            concurrency=1,
            timeout=0.4,
        )
    )
    await turns_until(lambda: send.calls)
    joiner = asyncio.ensure_future(
        c.cancel_and_confirm("00000000-0000-4000-8000-000000000001", timeout=STEP)
    )

    await asyncio.wait_for(bulk, STEP)
    result = await asyncio.wait_for(joiner, STEP)

    assert list(recorded) == ["00000000-0000-4000-8000-000000000001"]
    assert result.cancelled
    assert len(send.calls) == sends
    assert len(look.calls) >= 3
    assert send.peak == 1


def test_a_cancel_handle_says_its_state_and_whether_it_was_observed() -> None:
    loop = asyncio.new_event_loop()
    try:
        future = loop.create_future()
        task = loop.create_task(asyncio.wait_for(future, STEP))
        handle = CancelHandle("00000000-0000-4000-8000-000000000001", task)
        assert repr(handle) == "<CancelHandle 00000000-0000-4000-8000-000000000001 pending>"
        assert (handle.done(), handle.observed) == (False, False)
        seen: list[CancelHandle] = []
        handle.add_done_callback(seen.append)
        assert handle.observed
        result = CancelResult(
            order("00000000-0000-4000-8000-000000000001", "CANCELLED"), True, "ws", 0.1, None
        )
        future.set_result(result)
        loop.run_until_complete(task)
        assert repr(handle) == "<CancelHandle 00000000-0000-4000-8000-000000000001 done>"
        assert handle.done()
        assert handle.result() is result
        assert handle.exception() is None
        loop.run_until_complete(asyncio.sleep(0))  # (done callbacks run in a loop turn)
        assert seen == [handle]

        failed_future = loop.create_future()
        failed = CancelHandle(
            "00000000-0000-4000-8000-000000000002",
            loop.create_task(asyncio.wait_for(failed_future, STEP)),
        )
        assert not failed.observed
        error = OrderNotFoundError("no such order", status=404)
        failed_future.set_exception(error)
        loop.run_until_complete(asyncio.gather(failed._task, return_exceptions=True))
        assert failed.exception() is error
        assert failed.observed
    finally:
        loop.close()


class States:
    """A fake look-up answering each order's state as the test sets it (PENDING_CANCEL first)."""

    def __init__(self) -> None:
        self.status: dict[str, str] = {}
        self.accounts: dict[str, str] = {}
        self.calls: list[str] = []

    async def __call__(self, order_id: str, account_id: str | None, deadline: float | None):
        self.calls.append(order_id)
        return TradeOrder(
            order_id,
            self.accounts.get(order_id, ACCOUNT),
            self.status.get(order_id, "PENDING_CANCEL"),
            updated_at=len(self.calls),
        )


async def test_a_gap_on_one_accounts_channel_reconciles_only_that_account(closing):
    send = Script(
        TradeOrder("0000000a-0000-4000-8000-0000000000a1", ACCOUNT, "PENDING_CANCEL"),
        TradeOrder(
            "0000000b-0000-4000-8000-0000000000b1",
            "acc00000-0000-4000-8000-000000000002",
            "PENDING_CANCEL",
        ),
    )
    states = States()
    states.accounts["0000000b-0000-4000-8000-0000000000b1"] = "acc00000-0000-4000-8000-000000000002"
    c = canceller(send, states)  # type: ignore[arg-type]
    closing(c)
    ours = asyncio.ensure_future(
        c.cancel_and_confirm(
            "0000000a-0000-4000-8000-0000000000a1", trading_account_id=ACCOUNT, timeout=30
        )
    )
    theirs = asyncio.ensure_future(
        c.cancel_and_confirm(
            "0000000b-0000-4000-8000-0000000000b1",
            trading_account_id="acc00000-0000-4000-8000-000000000002",
            timeout=30,
        )
    )
    await until(
        lambda: (
            {"0000000a-0000-4000-8000-0000000000a1", "0000000b-0000-4000-8000-0000000000b1"}
            <= set(states.calls)
        )
    )  # both polling (next in 0.2 s)
    polled = len(states.calls)
    states.status["0000000a-0000-4000-8000-0000000000a1"] = states.status[
        "0000000b-0000-4000-8000-0000000000b1"
    ] = "CANCELLED"

    c.channel_gap("tradingAccount:" + ACCOUNT)
    result = await asyncio.wait_for(ours, STEP)

    assert result.cancelled
    assert states.calls[polled:] == [
        "0000000a-0000-4000-8000-0000000000a1"
    ]  # the gap's look-up, at once, of that account only
    assert not theirs.done()
    theirs.cancel()
    await asyncio.gather(theirs, return_exceptions=True)


async def test_a_refusal_other_than_103_fails_nobody(closing):
    send = Script(order("00000000-0000-4000-8000-000000000001", "PENDING_CANCEL"))
    look = Script(
        order("00000000-0000-4000-8000-000000000001", "PENDING_CANCEL", 2),
        default=order("00000000-0000-4000-8000-000000000001", "CANCELLED", 3),
    )
    c = canceller(send, look)
    closing(c)
    task = asyncio.ensure_future(
        c.cancel_and_confirm("00000000-0000-4000-8000-000000000001", trading_account_id=ACCOUNT)
    )
    await until(lambda: look.calls)

    c.channel_refused("tradingAccount:" + ACCOUNT, StreamRpcError("busy", errno=111))
    c.channel_refused("another:channel", StreamRpcError("denied", errno=103))  # not an account
    result = await asyncio.wait_for(task, STEP)

    assert (result.cancelled, result.source) == (True, "rest")


async def test_a_103_fails_that_accounts_cancels_only_and_says_why(closing):
    send = Script(
        TradeOrder("0000000a-0000-4000-8000-0000000000a1", ACCOUNT, "PENDING_CANCEL"),
        TradeOrder(
            "0000000b-0000-4000-8000-0000000000b1",
            "acc00000-0000-4000-8000-000000000002",
            "PENDING_CANCEL",
        ),
    )
    look = Script(default="hang")
    c = canceller(send, look)
    closing(c)
    ours = asyncio.ensure_future(
        c.cancel_and_confirm("0000000a-0000-4000-8000-0000000000a1", trading_account_id=ACCOUNT)
    )
    theirs = asyncio.ensure_future(
        c.cancel_and_confirm(
            "0000000b-0000-4000-8000-0000000000b1",
            trading_account_id="acc00000-0000-4000-8000-000000000002",
        )
    )
    await until(lambda: len(look.calls) >= 2)

    c.channel_refused("tradingAccount:" + ACCOUNT, StreamRpcError("permission denied", errno=103))
    (error,) = await asyncio.gather(ours, return_exceptions=True)

    assert isinstance(error, PermissionDeniedError)
    assert (error.order_id, error.errno) == ("0000000a-0000-4000-8000-0000000000a1", 103)
    assert str(error).startswith(f"no access to trading account {ACCOUNT}: permission denied")
    assert not theirs.done()
    theirs.cancel()
    await asyncio.gather(theirs, return_exceptions=True)


async def test_a_bug_in_a_bulks_job_is_raised_by_the_bulk(closing):
    send = Script(RuntimeError("a bug, not an answer"))
    c = canceller(send, Script())
    closing(c)
    with pytest.raises(RuntimeError, match="a bug, not an answer"):
        await asyncio.wait_for(
            c.confirm_many(
                ["00000000-0000-4000-8000-000000000001"], lambda *_: None, concurrency=1
            ),
            STEP,
        )


async def test_a_bulk_order_joining_a_running_cancel_gets_its_definite_error(closing):
    answer = asyncio.Event()
    send = Script((answer, OrderNotFoundError("no such order", status=404)))
    registry = ConfirmationRegistry()
    c = canceller(send, Script(), registry=registry)
    closing(c)
    alone = asyncio.ensure_future(
        c.cancel_and_confirm(
            "00000000-0000-4000-8000-000000000001", trading_account_id=ACCOUNT, timeout=STEP
        )
    )
    await turns_until(lambda: send.calls)
    recorded: dict[str, object] = {}
    bulk = asyncio.ensure_future(
        c.confirm_many(
            ["00000000-0000-4000-8000-000000000001"],
            recorded.__setitem__,
            concurrency=1,
            trading_account_id=ACCOUNT,
        )
    )
    await turns_until(
        lambda: (
            (w := registry.get("00000000-0000-4000-8000-000000000001")) is not None and w.refs == 2
        )
    )
    answer.set()

    await asyncio.wait_for(bulk, STEP)
    (error,) = await asyncio.gather(alone, return_exceptions=True)

    assert isinstance(recorded["00000000-0000-4000-8000-000000000001"], OrderNotFoundError)
    assert (
        recorded["00000000-0000-4000-8000-000000000001"].order_id
        == "00000000-0000-4000-8000-000000000001"
    )
    assert isinstance(error, OrderNotFoundError)
    assert len(send.calls) == 1


@pytest.mark.parametrize(("n", "listed"), [(3, False), (4, True)])
async def test_an_account_is_listed_from_four_pending_cancels_and_looked_up_below(
    closing, n: int, listed: bool
):
    ids = [f"00000000-0000-4000-8000-{0xE00 + i:012x}" for i in range(n)]
    send = Script(*[order(i, "PENDING_CANCEL") for i in ids])
    listing = Listing([order(i, "CANCELLED", 9) for i in ids])
    look = Script(*[order(i, "CANCELLED", 9) for i in ids])
    c = canceller(send, look, list_page=listing)
    closing(c)
    tasks = await pending_cancels(c, send, ids)

    assert await c.reconcile_pending() == n  # every account
    await asyncio.wait_for(asyncio.gather(*tasks), STEP)

    assert bool(listing.calls) is listed
    assert len(look.calls) == (0 if listed else n)
    assert await c.reconcile_pending() == 0  # nothing pending any more


async def test_two_reconciliations_of_one_account_share_its_listing(closing):
    ids = [f"00000000-0000-4000-8000-{0xE00 + i:012x}" for i in range(4)]
    send = Script(*[order(i, "PENDING_CANCEL") for i in ids])
    listing = Listing([order(i, "CANCELLED", 9) for i in ids])
    c = canceller(send, Script("hang"), list_page=listing)
    closing(c)
    tasks = await pending_cancels(c, send, ids)

    await asyncio.gather(c.reconcile_pending(ACCOUNT), c.reconcile_pending(ACCOUNT))
    await asyncio.wait_for(asyncio.gather(*tasks), STEP)

    assert len(listing.calls) == 1


class QuietStream:
    """A stream that is never live (cancels are proven by REST) and records releases."""

    connected = False
    failure = None

    def __init__(self, releasable: bool = True) -> None:
        self.released: list[str] = []
        self.wanted: list[str] = []
        self.releasable = releasable

    def want(self, channel: str) -> None:
        self.wanted.append(channel)

    def live_since(self, channel: str) -> float | None:
        return None

    def changed(self) -> asyncio.Future[None]:
        return asyncio.get_running_loop().create_future()

    def release(self, channel: str) -> bool:
        self.released.append(channel)
        return self.releasable


async def test_idle_channels_are_released_but_not_pinned_or_pending_ones(closing):
    accounts = [
        "aaaa0000-0000-4000-8000-00000000000a",
        "bbbb0000-0000-4000-8000-00000000000b",
        "cccc0000-0000-4000-8000-00000000000c",
        "dddd0000-0000-4000-8000-00000000000d",
    ]
    send = Script(*[TradeOrder(a[:-1] + "f", a, "CANCELLED") for a in accounts[:3]])
    send.steps.append(
        TradeOrder(
            "dddd0000-0000-4000-8000-0000000000d0",
            "dddd0000-0000-4000-8000-00000000000d",
            "PENDING_CANCEL",
        )
    )
    c = canceller(send, Script(default="hang"))
    closing(c)
    stream = QuietStream()
    c.attach_stream(stream)  # type: ignore[arg-type]
    c.release_idle_after(3600.0, lambda account: account == "cccc0000-0000-4000-8000-00000000000c")
    loop = asyncio.get_running_loop()
    before = loop.time()
    for account in accounts[:3]:
        await c.cancel_and_confirm(account[:-1] + "f", trading_account_id=account)
    busy = asyncio.ensure_future(
        c.cancel_and_confirm(
            "dddd0000-0000-4000-8000-0000000000d0",
            trading_account_id="dddd0000-0000-4000-8000-00000000000d",
            timeout=30,
        )
    )
    await until(lambda: len(send.calls) == 4)

    assert c.release_idle(before) == 0  # none was idle before the cancels ended
    assert c.release_idle(loop.time() + 1) == 2
    assert sorted(stream.released) == [
        "tradingAccount:aaaa0000-0000-4000-8000-00000000000a",
        "tradingAccount:bbbb0000-0000-4000-8000-00000000000b",
    ]
    assert c.release_idle(loop.time() + 1) == 0  # released once, forgotten
    busy.cancel()
    await asyncio.gather(busy, return_exceptions=True)
    assert c.release_idle(loop.time() + 1) == 1  # the busy account, once its cancel left
    assert stream.released[-1] == "tradingAccount:dddd0000-0000-4000-8000-00000000000d"


async def test_a_channel_the_stream_keeps_is_tried_again_at_the_next_sweep(closing):
    send = Script(
        TradeOrder(
            "00000000-0000-4000-8000-000000000001",
            "aaaa0000-0000-4000-8000-00000000000a",
            "CANCELLED",
        )
    )
    c = canceller(send, Script())
    closing(c)
    stream = QuietStream(releasable=False)  # (someone still subscribes it)
    c.attach_stream(stream)  # type: ignore[arg-type]
    c.release_idle_after(3600.0, lambda account: False)
    await c.cancel_and_confirm(
        "00000000-0000-4000-8000-000000000001",
        trading_account_id="aaaa0000-0000-4000-8000-00000000000a",
    )
    loop = asyncio.get_running_loop()

    assert c.release_idle(loop.time() + 1) == 0
    stream.releasable = True
    assert c.release_idle(loop.time() + 1) == 1
    assert stream.released == ["tradingAccount:aaaa0000-0000-4000-8000-00000000000a"] * 2


async def test_without_a_stream_there_is_nothing_to_release(closing):
    c = canceller(
        Script(
            TradeOrder(
                "00000000-0000-4000-8000-000000000001",
                "aaaa0000-0000-4000-8000-00000000000a",
                "CANCELLED",
            )
        ),
        Script(),
    )
    closing(c)
    c.release_idle_after(3600.0, lambda account: False)
    await c.cancel_and_confirm(
        "00000000-0000-4000-8000-000000000001",
        trading_account_id="aaaa0000-0000-4000-8000-00000000000a",
    )
    assert c.release_idle(asyncio.get_running_loop().time() + 1) == 0


async def test_the_sweeper_releases_an_idle_channel_after_the_idle_time(closing):
    c = canceller(
        Script(
            TradeOrder(
                "00000000-0000-4000-8000-000000000001",
                "aaaa0000-0000-4000-8000-00000000000a",
                "CANCELLED",
            )
        ),
        Script(),
    )
    closing(c)
    stream = QuietStream()
    c.attach_stream(stream)  # type: ignore[arg-type]
    c.release_idle_after(0.2, lambda account: False)
    loop = asyncio.get_running_loop()
    await c.cancel_and_confirm(
        "00000000-0000-4000-8000-000000000001",
        trading_account_id="aaaa0000-0000-4000-8000-00000000000a",
    )
    ended = loop.time()

    await until(lambda: stream.released)
    # (a deadline test: not before the idle time, and by the next sweep after it)
    assert 0.2 <= loop.time() - ended < 0.2 + 0.1 + DEADLINE_SLACK
    assert stream.released == ["tradingAccount:aaaa0000-0000-4000-8000-00000000000a"]
