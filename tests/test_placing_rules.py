"""The placing orchestration on its own: scripted fake transports, no sockets, no stream.

:class:`~cadenza_async.placing.Placer` takes its transports (the submit, the
look-up by id, the listing by account) as objects; here each is a scripted
fake, so every rule is shown without a server: what is sent, when, how often,
with which clientOrderId, and what each caller learns.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from support import DEADLINE_SLACK, turns_until, until

from cadenza_async._ratelimit import RateGate
from cadenza_async.cancels import final_slice
from cadenza_async.errors import (
    AuthenticationError,
    ClientClosedError,
    ConfirmationTimeout,
    InvalidRequestError,
    RateLimitError,
    ServerError,
    StreamRpcError,
    TransportError,
)
from cadenza_async.http import OrderPage
from cadenza_async.models import CancelResult, NewOrder, Pagination, TradeOrder
from cadenza_async.placing import (
    LIST_MAX_PAGES,
    LIST_PAGE,
    LIST_SKEW_MS,
    Placer,
    SubmitConfirmationTimeout,
    new_order,
)
from cadenza_async.protocol.placement import PlacementRegistry

ACCOUNT = "acc00000-0000-4000-8000-000000000001"


def placed(status: str, cid: str, order_id: str = "o-1", updated_at: int = 1) -> TradeOrder:
    return TradeOrder(order_id, ACCOUNT, status, client_order_id=cid, updated_at=updated_at)


class Submits:
    """A fake submit transport: each call takes the next step (an order maker, an error, a hang)."""

    def __init__(self, *steps: Any, default: Any = None) -> None:
        self.steps = list(steps)
        self.default = default
        self.sent: list[NewOrder] = []

    async def submit(self, order: NewOrder, deadline: float) -> TradeOrder:
        self.sent.append(order)
        step = self.steps.pop(0) if self.steps else self.default
        await asyncio.sleep(
            0
        )  # an answer takes a loop turn at least (tasks start eagerly on 3.12+)
        if step == "hang":
            await asyncio.Event().wait()
        if isinstance(step, BaseException):
            raise step
        assert callable(step), step
        result: TradeOrder = step(order)
        return result


class LookUps:
    """A fake look-up by order id: the next state each call."""

    def __init__(self, *states: Any, default: Any = None) -> None:
        self.states = list(states)
        self.default = default
        self.calls: list[str] = []
        self.deadlines: list[float | None] = []

    async def __call__(self, order_id: str, account_id: str | None, deadline: float | None):
        self.calls.append(order_id)
        self.deadlines.append(deadline)
        step = self.states.pop(0) if self.states else self.default
        if isinstance(step, BaseException):
            raise step
        return step


class Listings:
    """A fake listing of an account's recent orders: the next page each call."""

    def __init__(self, *pages: Any, default: Any = None) -> None:
        self.pages = list(pages)
        self.default = default
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, account_id, start_time, limit, offset, cursor, deadline):
        self.calls.append(
            {
                "account": account_id,
                "start": start_time,
                "limit": limit,
                "offset": offset,
                "cursor": cursor,
                "deadline": deadline,
            }
        )
        page = self.pages.pop(0) if self.pages else self.default
        if callable(page):
            page = page(len(self.calls))  # a page made for this call (its own orders)
        if isinstance(page, BaseException):
            raise page
        if page is None:
            return OrderPage([], Pagination(has_next=False))
        return page


def placer(submits: Submits, looks: LookUps | None = None, lists: Listings | None = None):
    return Placer(
        http_submit=submits,
        look_up_order=looks or LookUps(),
        list_recent=lists or Listings(),
        gate=RateGate(),
        registry=PlacementRegistry(),
        submit_via="http",
        confirm_timeout=5.0,
        request_timeout=1.0,
        default_account=ACCOUNT,
    )


ORDER = new_order(
    instrument_id="X:A/B", order_side="BUY", order_type="LIMIT", quantity="1", limit_price="2"
)


def shows(status: str, order_id: str = "o-1"):
    return lambda order: placed(status, order.client_order_id, order_id)


# --------------------------------------------------------------------------- sending


async def test_a_generated_client_order_id_is_sent_and_returned() -> None:
    submits = Submits(shows("OPEN"))
    p = placer(submits)
    result = await p.submit_and_confirm(ORDER)
    (sent,) = submits.sent
    assert sent.client_order_id == result.client_order_id
    assert len(result.client_order_id) == 36  # a uuid4
    assert sent.trading_account_id == ACCOUNT
    assert (result.accepted, result.source) == (True, "http")
    await p.aclose()


async def test_never_sent_failures_are_retried_with_the_same_key_until_the_deadline() -> None:
    submits = Submits(default=TransportError("refused", maybe_sent=False))
    lists = Listings()
    p = placer(submits, lists=lists)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TransportError):
        await p.submit_and_confirm(ORDER, timeout=0.5)
    assert loop.time() - started < 0.5  # raised when no time was left for another send
    assert len(submits.sent) == 3  # at 0, 0.1 and 0.3 s
    assert len({o.client_order_id for o in submits.sent}) == 1
    # no listing before any resend (nothing could have been placed); one listing only,
    # the final look-up's, at 0.25 s (the last slice of 0.5 s)
    assert len(lists.calls) == 1
    await p.aclose()


async def test_a_429_is_retried_with_the_same_key() -> None:
    submits = Submits(RateLimitError("slow down", status=429), shows("OPEN"))
    p = placer(submits)
    result = await p.submit_and_confirm(ORDER)
    assert result.accepted
    assert [o.client_order_id for o in submits.sent] == [result.client_order_id] * 2
    await p.aclose()


async def test_a_failure_that_may_have_placed_the_order_lists_before_resending() -> None:
    submits = Submits(TransportError("reset after sending"), default=shows("OPEN"))
    calls: list[int] = []

    async def listing(account: str, start_time: int, *rest: Any) -> OrderPage:
        calls.append(start_time)
        cid = submits.sent[0].client_order_id or ""
        return OrderPage(
            [placed("OPEN", "e15e0000-0000-4000-8000-000000000001", "o-9"), placed("OPEN", cid)]
        )

    p = placer(submits, lists=listing)  # type: ignore[arg-type]
    wall_ms = time.time_ns() // 1_000_000
    result = await p.submit_and_confirm(ORDER)

    assert len(submits.sent) == 1  # found: not sent again
    assert (result.accepted, result.source, result.order_id) == (True, "rest", "o-1")
    (start,) = calls
    assert abs(start - (wall_ms - LIST_SKEW_MS)) < 2_000
    await p.aclose()


async def test_the_listing_pages_until_it_finds_the_key_then_nothing_is_resent() -> None:
    submits = Submits(ServerError("bad gateway", status=502), default=shows("OPEN"))
    cid = "key-1"
    others = [placed("OPEN", f"other-{i}", f"x-{i}") for i in range(LIST_PAGE)]
    lists = Listings(
        OrderPage(others, Pagination(has_next=True)),
        OrderPage([placed("SUBMITTED", cid, "o-1")], Pagination(has_next=False)),
    )
    looks = LookUps(placed("OPEN", cid, "o-1", updated_at=2))
    p = placer(submits, looks, lists)
    order = new_order(**{**_fields(ORDER), "client_order_id": cid})
    result = await p.submit_and_confirm(order)

    assert len(submits.sent) == 1
    assert [c["offset"] for c in lists.calls] == [0, LIST_PAGE]
    assert (result.accepted, result.source) == (True, "rest")  # SUBMITTED listed, OPEN looked up
    assert looks.calls == ["o-1"]  # once the tradeOrderId is known, by id
    await p.aclose()


async def test_not_found_by_the_listing_the_submit_goes_again_with_the_same_key() -> None:
    submits = Submits(ServerError("oops", status=500), ServerError("oops", status=500))
    submits.default = shows("OPEN")
    lists = Listings()  # never finds it
    p = placer(submits, lists=lists)
    result = await p.submit_and_confirm(ORDER)

    assert result.accepted
    assert len(submits.sent) == 3
    assert len({o.client_order_id for o in submits.sent}) == 1
    assert len(lists.calls) == 2  # one listing before each resend
    await p.aclose()


async def test_a_temporary_rpc_error_counts_as_maybe_placed() -> None:
    submits = Submits(StreamRpcError("internal", errno=100, temporary=True), default=shows("OPEN"))
    lists = Listings()
    p = placer(submits, lists=lists)
    assert (await p.submit_and_confirm(ORDER)).accepted
    assert len(lists.calls) == 1
    await p.aclose()


@pytest.mark.parametrize(
    "error",
    [
        InvalidRequestError("bad side", status=400),
        AuthenticationError("no", status=401),
        StreamRpcError("method not allowed", errno=107),
    ],
)
async def test_a_definite_refusal_fails_every_caller_at_once(error: Exception) -> None:
    submits = Submits(error)
    p = placer(submits)
    order = new_order(**{**_fields(ORDER), "client_order_id": "same"})
    results = await asyncio.gather(
        p.submit_and_confirm(order), p.submit_and_confirm(order), return_exceptions=True
    )
    assert all(r is error for r in results)
    assert len(submits.sent) == 1  # the two callers shared one submit
    await p.aclose()


# --------------------------------------------------------------------------- proving


async def test_without_a_stream_rest_polls_by_order_id_until_a_verdict() -> None:
    submits = Submits(shows("SUBMITTED"))
    looks = LookUps(
        placed("SUBMITTED", "k", updated_at=2),
        placed("PENDING", "k", updated_at=3),
        default=placed("REJECTED", "k", updated_at=4),
    )
    p = placer(submits, looks)
    result = await p.submit_and_confirm(ORDER)
    assert (result.accepted, result.status, result.source) == (False, "REJECTED", "rest")
    assert result.acked_after is not None
    assert looks.calls == ["o-1"] * 3
    assert p.rest_polls == 3
    await p.aclose()


async def test_a_timeout_names_the_key_the_last_state_and_the_last_send_error() -> None:
    error = ServerError("down", status=503)
    submits = Submits(default=error)
    p = placer(submits)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(SubmitConfirmationTimeout) as caught:
        await p.submit_and_confirm(ORDER, timeout=0.4)
    # (a deadline test: the timeout ends the call at its deadline, with the loop's slack)
    assert 0.4 <= loop.time() - started < 0.4 + DEADLINE_SLACK
    assert caught.value.__cause__ is error
    assert caught.value.last_known is None
    assert isinstance(caught.value, ConfirmationTimeout)
    assert caught.value.order_id == caught.value.client_order_id
    await p.aclose()


async def test_a_submit_that_never_answers_times_out_with_a_transport_cause() -> None:
    p = placer(Submits("hang"))
    with pytest.raises(SubmitConfirmationTimeout) as caught:
        await p.submit_and_confirm(ORDER, timeout=0.2)
    assert isinstance(caught.value.__cause__, TransportError)
    await p.aclose()


async def test_closing_wakes_the_waiting_callers_with_client_closed_at_once() -> None:
    looks = LookUps(default=placed("SUBMITTED", "k"))
    p = placer(Submits(shows("SUBMITTED")), looks)
    task = asyncio.ensure_future(p.submit_and_confirm(ORDER, timeout=30.0))
    await until(lambda: looks.calls)  # acknowledged, and polling: the caller sleeps
    await p.aclose()
    # Woken by the close, not by its deadline 30 s away (nor left asleep for good).
    done, _ = await asyncio.wait({task}, timeout=2.0)
    assert task in done
    with pytest.raises(ClientClosedError):
        task.result()
    with pytest.raises(ClientClosedError):
        await p.submit_and_confirm(ORDER)


async def test_a_caller_that_leaves_stops_the_job() -> None:
    looks = LookUps(default=placed("SUBMITTED", "k"))
    p = placer(Submits(shows("SUBMITTED")), looks)
    task = asyncio.ensure_future(p.submit_and_confirm(ORDER, timeout=5.0))
    await until(lambda: len(looks.calls) >= 2)  # polling
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Nobody waits: no task is left that could poll (the job's own was stopped).
    await turns_until(lambda: not asyncio.all_tasks() - {asyncio.current_task()})
    assert p.pending == 0
    await p.aclose()


async def test_a_shared_submit_works_for_the_latest_deadline_not_the_last_joiners() -> None:
    """Two callers share a clientOrderId; the one who joined last has the earlier deadline.
    It times out, and the job still proves the order for the other one, by its own polls
    (not by that caller's final look-up, in the last slice of its timeout)."""
    looks = LookUps(
        placed("SUBMITTED", "k", updated_at=2),
        placed("SUBMITTED", "k", updated_at=3),
        placed("SUBMITTED", "k", updated_at=4),
        default=placed("OPEN", "k", updated_at=5),
    )
    submits = Submits(shows("SUBMITTED"))
    p = placer(submits, looks)
    order = new_order(**{**_fields(ORDER), "client_order_id": "shared"})
    first = asyncio.ensure_future(p.submit_and_confirm(order, timeout=4.0))
    await until(lambda: submits.sent)
    later = asyncio.ensure_future(p.submit_and_confirm(order, timeout=0.2))

    with pytest.raises(SubmitConfirmationTimeout):
        await later
    result = await asyncio.wait_for(first, 10.0)

    assert (result.accepted, result.source) == (True, "rest")
    assert result.latency < 4.0 - final_slice(4.0)
    assert len(submits.sent) == 1


async def test_the_listing_stops_at_its_page_cap_when_every_page_is_full() -> None:
    submits = Submits(ServerError("oops", status=500), default=shows("OPEN"))
    lists = Listings(default=lambda n: full_page(Pagination(has_next=True), tag=str(n)))
    p = placer(submits, lists=lists)
    result = await p.submit_and_confirm(ORDER)

    assert result.accepted
    assert [c["offset"] for c in lists.calls] == [i * LIST_PAGE for i in range(LIST_MAX_PAGES)]
    assert len(submits.sent) == 2  # not found within the cap: sent again, same key
    await p.aclose()


async def test_a_full_page_without_pagination_goes_on_to_the_next_page() -> None:
    submits = Submits(ServerError("oops", status=500), default=shows("OPEN"))
    cid = "key-2"
    lists = Listings(
        OrderPage([placed("OPEN", f"other-{i}", f"x-{i}") for i in range(LIST_PAGE)]),
        OrderPage([placed("OPEN", cid, "o-1")]),
    )
    p = placer(submits, lists=lists)
    result = await p.submit_and_confirm(new_order(**{**_fields(ORDER), "client_order_id": cid}))

    assert [c["offset"] for c in lists.calls] == [0, LIST_PAGE]
    assert (result.accepted, result.source, result.order_id) == (True, "rest", "o-1")
    assert len(submits.sent) == 1  # found on page 2: not sent again
    await p.aclose()


# --------------------------------------------------------------------------- input


def _fields(order: NewOrder) -> dict[str, Any]:
    import msgspec

    return msgspec.structs.asdict(order)


def test_new_order_checks_its_fields_before_any_io() -> None:
    with pytest.raises(TypeError, match="float"):
        new_order(instrument_id="X", order_side="BUY", order_type="LIMIT", quantity=1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="instrument_id"):
        new_order(instrument_id="", order_side="BUY", order_type="LIMIT", quantity="1")
    with pytest.raises(ValueError, match="quantity"):
        new_order(instrument_id="X", order_side="BUY", order_type="LIMIT", quantity="")
    with pytest.raises(ValueError, match="time_in_force"):
        new_order(
            instrument_id="X", order_side="BUY", order_type="LIMIT", quantity="1", time_in_force=""
        )
    with pytest.raises(ValueError, match="trading account"):
        new_order(
            instrument_id="X",
            order_side="BUY",
            order_type="LIMIT",
            quantity="1",
            trading_account_id="a b",
        )
    ok = new_order(instrument_id="X", order_side="BUY", order_type="MARKET", quantity=3)  # type: ignore[arg-type]
    assert ok.quantity == "3"


async def test_a_timeout_must_be_positive() -> None:
    p = placer(Submits())
    with pytest.raises(ValueError, match="timeout"):
        await p.submit_and_confirm(ORDER, timeout=-1)
    await p.aclose()


def full_page(pagination: Pagination | None = None, tag: str = "") -> OrderPage:
    """A page of LIST_PAGE orders of other submits."""
    others = [placed("OPEN", f"other{tag}-{i}", f"x{tag}-{i}") for i in range(LIST_PAGE)]
    return OrderPage(others, pagination)


async def test_the_listing_follows_the_cursor_and_stops_when_it_stops_moving() -> None:
    submits = Submits(ServerError("oops", status=500), default=shows("OPEN"))
    lists = Listings(
        full_page(Pagination(has_next=True, cursor="c1"), tag="a"),
        full_page(Pagination(has_next=True, cursor="c2"), tag="b"),
        full_page(Pagination(has_next=True, cursor="c2"), tag="c"),  # stuck: the listing stops
    )
    p = placer(submits, lists=lists)
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await p.submit_and_confirm(ORDER, timeout=4.0)

    assert result.accepted
    assert [(c["offset"], c["cursor"]) for c in lists.calls] == [
        (0, None),
        (None, "c1"),
        (None, "c2"),
    ]
    assert {c["limit"] for c in lists.calls} == {LIST_PAGE}
    (deadline,) = {c["deadline"] for c in lists.calls}  # the call's own deadline
    assert started + 4.0 <= deadline < loop.time() + 4.0
    assert len(submits.sent) == 2  # not found: sent again
    await p.aclose()


@pytest.mark.parametrize(
    "last",
    [
        OrderPage([]),  # empty
        full_page(Pagination(has_next=False)),  # the server says it is the last
        OrderPage([placed("OPEN", "other", "x")]),  # short, no pagination
    ],
)
async def test_the_listing_stops_at_the_last_page(last: OrderPage) -> None:
    submits = Submits(ServerError("oops", status=500), default=shows("OPEN"))
    lists = Listings(full_page(Pagination(has_next=True), tag="a"), last)
    p = placer(submits, lists=lists)
    assert (await p.submit_and_confirm(ORDER)).accepted
    assert [c["offset"] for c in lists.calls] == [0, LIST_PAGE]
    await p.aclose()


async def test_a_full_page_with_more_and_no_cursor_goes_on_by_offset() -> None:
    submits = Submits(ServerError("oops", status=500), default=shows("OPEN"))
    cid = "key-3"
    lists = Listings(
        full_page(Pagination(has_next=True), tag="a"),
        full_page(Pagination(has_next=True), tag="b"),
        OrderPage([placed("SUBMITTED", cid, "o-1")], Pagination(has_next=False)),
    )
    looks = LookUps(default=placed("OPEN", cid, "o-1", updated_at=2))
    p = placer(submits, looks, lists)
    result = await p.submit_and_confirm(new_order(**{**_fields(ORDER), "client_order_id": cid}))

    assert [(c["offset"], c["cursor"]) for c in lists.calls] == [
        (0, None),
        (LIST_PAGE, None),
        (2 * LIST_PAGE, None),
    ]
    assert (result.accepted, result.order_id, result.source) == (True, "o-1", "rest")
    assert result.acked_after is not None  # found by the listing: acknowledged then
    assert len(submits.sent) == 1
    await p.aclose()


async def test_an_order_found_already_final_by_the_listing_proves_the_submit() -> None:
    submits = Submits(ServerError("oops", status=500))
    cid = "key-4"
    lists = Listings(OrderPage([placed("REJECTED", cid, "o-1")]))
    p = placer(submits, lists=lists)
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await p.submit_and_confirm(new_order(**{**_fields(ORDER), "client_order_id": cid}))
    assert (result.accepted, result.status, result.source) == (False, "REJECTED", "rest")
    assert 0.0 < result.latency <= loop.time() - started  # proven when the listing answered
    assert len(submits.sent) == 1
    await p.aclose()


async def test_a_timeout_before_any_answer_says_so_in_its_message() -> None:
    p = placer(Submits("hang"))
    order = new_order(**{**_fields(ORDER), "client_order_id": "quiet-1"})
    with pytest.raises(SubmitConfirmationTimeout) as caught:
        await p.submit_and_confirm(order, timeout=0.2)
    assert str(caught.value) == (
        "submit quiet-1: the order was not proven accepted or refused within 0.2s "
        "(last known status: unknown)"
    )
    assert str(caught.value.__cause__) == "the submit got no answer before the deadline"
    await p.aclose()


async def test_submit_many_refuses_bad_arguments_by_name() -> None:
    p = placer(Submits())
    with pytest.raises(ValueError, match=r"^concurrency must be an int >= 1, not 0$"):
        await p.submit_many([ORDER], concurrency=0)
    for bad, kind in ((True, "bool"), (1.5, "float")):
        with pytest.raises(TypeError, match=rf"^concurrency must be an int >= 1, not {kind}$"):
            await p.submit_many([ORDER], concurrency=bad)  # type: ignore[arg-type]
    for one in (ORDER, {"instrument_id": "X"}, "X:A/B"):
        with pytest.raises(TypeError, match=r"^orders must be an iterable of NewOrder or "):
            await p.submit_many(one)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^order 1: a NewOrder or a mapping of its fields"):
        await p.submit_many([ORDER, 42])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"^order 0: quantity '' must not be empty$"):
        await p.submit_many([{**_fields(ORDER), "quantity": ""}])
    await p.aclose()


async def test_submit_many_gives_each_order_the_calls_timeout() -> None:
    p = placer(Submits(default="hang"))
    loop = asyncio.get_running_loop()
    started = loop.time()
    outcomes = await p.submit_many([ORDER, ORDER], timeout=0.3)
    assert all(isinstance(o, SubmitConfirmationTimeout) for o in outcomes)
    assert {o.timeout for o in outcomes} == {0.3}  # type: ignore[union-attr]
    # (a deadline test: both end by the timeout, not the default 5 s)
    assert loop.time() - started < 0.3 + DEADLINE_SLACK
    await p.aclose()


async def test_every_look_up_carries_the_calls_deadline() -> None:
    looks = LookUps(default=placed("SUBMITTED", "k"))
    p = placer(Submits(shows("SUBMITTED")), looks)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(SubmitConfirmationTimeout):
        await p.submit_and_confirm(ORDER, timeout=0.5)
    assert len(looks.calls) >= 3  # the polls and the final look-up
    (deadline,) = set(looks.deadlines)
    assert deadline is not None
    assert started + 0.5 <= deadline < loop.time()
    await p.aclose()


def cancelled(order_id: str, status: str = "CANCELLED") -> CancelResult:
    return CancelResult(
        TradeOrder(order_id, ACCOUNT, status), status == "CANCELLED", "http", 0.0, None
    )


async def test_a_replace_cancels_on_the_new_orders_account_within_the_calls_timeout() -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    async def cancel_and_confirm(order_id: str, **kwargs: Any) -> CancelResult:
        calls.append((order_id, kwargs))
        return cancelled(order_id)

    p = placer(Submits(shows("OPEN")))
    rep = await p.replace_and_confirm(
        "00000000-0000-4000-8000-0000000000d1",
        ORDER,
        cancel_and_confirm=cancel_and_confirm,
        timeout=3.0,
    )
    assert calls == [
        ("00000000-0000-4000-8000-0000000000d1", {"trading_account_id": ACCOUNT, "timeout": 3.0})
    ]
    assert rep.outcome == "submitted"
    await p.aclose()


async def test_a_replace_of_a_filled_order_places_nothing_by_default() -> None:
    async def cancel_and_confirm(order_id: str, **kwargs: Any) -> CancelResult:
        return cancelled(order_id, "FILLED")

    submits = Submits(shows("OPEN"))
    p = placer(submits)
    rep = await p.replace_and_confirm(
        "00000000-0000-4000-8000-0000000000d1", ORDER, cancel_and_confirm=cancel_and_confirm
    )
    assert (rep.outcome, rep.submit) == ("old_filled", None)
    assert submits.sent == []
    await p.aclose()
    with pytest.raises(ClientClosedError, match=r"^the client is closed$"):
        await p.replace_and_confirm(
            "00000000-0000-4000-8000-0000000000d1", ORDER, cancel_and_confirm=cancel_and_confirm
        )
