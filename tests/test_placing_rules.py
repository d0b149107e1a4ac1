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

from cadenza_async._ratelimit import RateGate
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
from cadenza_async.models import NewOrder, Pagination, TradeOrder
from cadenza_async.placing import (
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

    async def __call__(self, order_id: str, account_id: str | None, deadline: float | None):
        self.calls.append(order_id)
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
            {"account": account_id, "start": start_time, "offset": offset, "cursor": cursor}
        )
        page = self.pages.pop(0) if self.pages else self.default
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
        send_attempts=3,
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


async def test_never_sent_failures_are_retried_with_the_same_key_then_raised_at_once() -> None:
    submits = Submits(default=TransportError("refused", maybe_sent=False))
    lists = Listings()
    p = placer(submits, lists=lists)
    started = time.monotonic()
    with pytest.raises(TransportError):
        await p.submit_and_confirm(ORDER, timeout=5.0)
    assert time.monotonic() - started < 1.0
    assert len(submits.sent) == 3
    assert len({o.client_order_id for o in submits.sent}) == 1
    assert lists.calls == []  # nothing could have been placed: no listing needed
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
    assert 0.4 <= loop.time() - started < 0.45
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


async def test_closing_fails_the_waiting_callers_with_client_closed() -> None:
    p = placer(Submits(shows("SUBMITTED")), LookUps(default=placed("SUBMITTED", "k")))
    task = asyncio.ensure_future(p.submit_and_confirm(ORDER, timeout=5.0))
    await asyncio.sleep(0.05)
    await p.aclose()
    with pytest.raises(ClientClosedError):
        await task
    with pytest.raises(ClientClosedError):
        await p.submit_and_confirm(ORDER)


async def test_a_caller_that_leaves_stops_the_job() -> None:
    looks = LookUps(default=placed("SUBMITTED", "k"))
    p = placer(Submits(shows("SUBMITTED")), looks)
    task = asyncio.ensure_future(p.submit_and_confirm(ORDER, timeout=5.0))
    await asyncio.sleep(0.25)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    polls = len(looks.calls)
    await asyncio.sleep(0.5)
    assert len(looks.calls) == polls  # nobody waits: nobody polls
    assert p.pending == 0
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
