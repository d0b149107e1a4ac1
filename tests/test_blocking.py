"""BlockingCadenzaClient against the simulator: many threads, one WebSocket, the async results and errors."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from anyio.from_thread import start_blocking_portal
from support import ThreadedSim, has_update_reader

from cadenza_async import (
    BlockingCadenzaClient,
    CadenzaClient,
    CancelResult,
    ClientClosedError,
    ConfigurationError,
    ConfirmationTimeout,
    InvalidOrderIdError,
    OrderNotCancellableError,
    OrderNotFoundError,
    TradeOrder,
)
from cadenza_async.testing import CadenzaSimulator

T = TypeVar("T")


@pytest.fixture
def sim(request: pytest.FixtureRequest) -> Iterator[ThreadedSim]:
    options: dict[str, Any] = getattr(request, "param", {})
    with start_blocking_portal("asyncio") as portal:
        simulator = portal.call(lambda: CadenzaSimulator(**options))
        with portal.wrap_async_context_manager(simulator):
            yield ThreadedSim(portal, simulator)


def sim_options(**kwargs: Any) -> pytest.MarkDecorator:
    """Options for the ``sim`` fixture's CadenzaSimulator."""
    return pytest.mark.parametrize("sim", [kwargs], indirect=True, ids=["sim"])


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


# -- many threads, one client ---------------------------------------------------------------


def test_eight_threads_make_1000_confirmed_cancels_over_one_websocket(sim: ThreadedSim) -> None:
    open_ids = sim.order_ids(800)
    filled_ids = sim.order_ids(200, status="FILLED")
    expected = dict.fromkeys(open_ids, ("CANCELLED", True))
    expected.update(dict.fromkeys(filled_ids, ("FILLED", False)))
    ids = list(expected)
    slices = [ids[i::8] for i in range(8)]
    start = threading.Barrier(8)

    with sim.client() as client:

        def work(chunk: list[str]) -> list[tuple[str, CancelResult]]:
            start.wait()
            return [(oid, client.cancel_and_confirm(oid, timeout=20.0)) for oid in chunk]

        with ThreadPoolExecutor(8) as pool:
            per_thread = list(pool.map(work, slices))
        stats = client.stats()

    outcomes = [pair for chunk in per_thread for pair in chunk]
    assert len(outcomes) == 1000
    assert len({oid for oid, _ in outcomes}) == 1000
    for oid, result in outcomes:
        assert isinstance(result, CancelResult)
        assert result.order_id == oid
        assert (result.status, result.cancelled) == expected[oid]
    assert sum(stats.confirmed_by.values()) == 1000
    assert stats.pending_cancels == 0
    assert sim.sim.connect_count == 1  # one WebSocket for all eight threads
    for oid in open_ids:
        assert sim.status(oid) == "CANCELLED"


def test_concurrent_cancels_of_one_order_from_many_threads_share_one_request(
    sim: ThreadedSim,
) -> None:
    (oid,) = sim.order_ids(1)
    sim.call(setattr, sim.sim, "cancel_delay", 0.2)
    with sim.client() as client, ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: client.cancel_and_confirm(oid), range(6)))
    assert {r.order_id for r in results} == {oid}
    assert all(r.cancelled for r in results)
    assert sim.sim.cancels_applied[oid] == 1


# -- results and errors keep their types ----------------------------------------------------


def test_errors_keep_their_types_without_await(sim: ThreadedSim) -> None:
    missing = str(uuid.uuid4())
    (filled,) = sim.order_ids(1, status="FILLED")
    with sim.client() as client:
        with pytest.raises(OrderNotFoundError) as not_found:
            client.cancel_and_confirm(missing)
        assert not_found.value.order_id == missing
        with pytest.raises(OrderNotFoundError):
            client.get_order(missing)
        with pytest.raises(ValueError, match="id"):
            client.cancel_and_confirm("not an id/../")
        with pytest.raises(InvalidOrderIdError):
            client.cancel("")
        with pytest.raises(ValueError, match="id"):
            client.cancel_nowait("bad id with spaces")
        with pytest.raises(OrderNotCancellableError):
            client.cancel(filled)
        with pytest.raises(ValueError, match="timeout"):
            client.cancel_and_confirm(filled, timeout=-1)


@sim_options(cancel_delay=5.0)
def test_confirmation_timeout_is_raised_on_time(sim: ThreadedSim) -> None:
    (oid,) = sim.order_ids(1)
    with sim.client() as client:
        began = time.monotonic()
        with pytest.raises(ConfirmationTimeout) as timed_out:
            client.cancel_and_confirm(oid, timeout=0.3)
        took = time.monotonic() - began
    assert timed_out.value.order_id == oid
    assert took < 2.0


def test_rest_calls_submit_get_list_and_subscribe(sim: ThreadedSim) -> None:
    account = sim.sim.trading_account_id
    with sim.client() as client:
        placed = client.submit_order(
            instrument_id="BINANCE:BTC/USDT",
            order_side="BUY",
            order_type="LIMIT",
            quantity="0.01",
            limit_price="50000",
            time_in_force="GTC",
        )
        assert isinstance(placed, TradeOrder)
        assert placed.trading_account_id == account
        looked_up = client.get_order(placed.trade_order_id)
        assert looked_up.trade_order_id == placed.trade_order_id
        page = client.list_orders(trading_account_id=account, limit=50)
        assert placed.trade_order_id in {o.trade_order_id for o in page.orders}
        client.subscribe_account(account)
        reply = client.cancel(placed.trade_order_id)
        assert reply.trade_order_id == placed.trade_order_id
        result = client.cancel_and_confirm(placed.trade_order_id)
        assert result.cancelled
        assert client.run(lambda c: c.get_order(placed.trade_order_id)).status == "CANCELLED"


def test_placing_with_proof_and_a_requote_without_await(sim: ThreadedSim) -> None:
    order = {
        "instrument_id": "BINANCE:BTC/USDT",
        "order_side": "BUY",
        "order_type": "LIMIT",
        "quantity": "0.01",
        "time_in_force": "GTC",
    }
    with sim.client() as client:
        placed = client.submit_and_confirm(**order, limit_price="50000")
        assert placed.accepted is True
        assert sim.status(placed.order.trade_order_id) == placed.order.status

        replaced = client.replace_and_confirm(
            placed.order.trade_order_id, **order, limit_price="49000"
        )
        assert replaced.cancel.cancelled is True
        assert replaced.submit is not None
        assert replaced.submit.accepted is True
        assert sim.status(placed.order.trade_order_id) == "CANCELLED"

        many = client.submit_many([{**order, "limit_price": p} for p in ("48000", "47000")])
        assert [r.accepted for r in many] == [True, True]


# -- fire-and-forget, bulk, iterators -------------------------------------------------------


@sim_options(cancel_delay=0.3)
def test_cancel_nowait_handle_waits_with_a_timeout_and_drain_finishes_it(sim: ThreadedSim) -> None:
    first, second = sim.order_ids(2)
    with sim.client() as client:
        handle = client.cancel_nowait(first)
        assert handle.order_id == first
        assert not handle.done()
        with pytest.raises(TimeoutError):
            handle.result(timeout=0.01)
        result = handle.result(timeout=10.0)
        assert handle.done()
        assert result.cancelled
        assert handle.exception() is None

        other = client.cancel_nowait(second)
        seen: list[str] = []
        other.add_done_callback(lambda h: seen.append(h.order_id))
        client.drain()
        assert other.done()
        assert other.result().order_id == second
        wait_until(lambda: seen == [second])
        assert client.stats().background_cancels == 0


def test_cancel_nowait_failure_reaches_the_handle_with_its_type(sim: ThreadedSim) -> None:
    missing = str(uuid.uuid4())
    reported: list[BaseException] = []
    with sim.client(on_background_error=lambda exc, oid: reported.append(exc)) as client:
        handle = client.cancel_nowait(missing)
        assert isinstance(handle.exception(timeout=10.0), OrderNotFoundError)
        with pytest.raises(OrderNotFoundError):
            handle.result()
    assert reported == []  # the handle was asked: nothing to report in the background


def test_cancel_nowait_failure_nobody_asked_for_goes_to_on_background_error(
    sim: ThreadedSim,
) -> None:
    missing = str(uuid.uuid4())
    reported: list[tuple[type[BaseException], str]] = []
    with sim.client(on_background_error=lambda exc, oid: reported.append((type(exc), oid))) as c:
        c.cancel_nowait(missing)
        c.drain()
    assert reported == [(OrderNotFoundError, missing)]


def test_cancel_many_in_input_order_and_the_iterator_in_completion_order(
    sim: ThreadedSim,
) -> None:
    ids = sim.order_ids(30)
    missing = str(uuid.uuid4())
    with sim.client() as client:
        outcomes = client.cancel_many([*ids[:10], missing], concurrency=4)
        assert [o.order_id for o in outcomes] == [*ids[:10], missing]
        assert all(isinstance(o, CancelResult) and o.cancelled for o in outcomes[:10])
        assert isinstance(outcomes[10], OrderNotFoundError)

        streamed = list(client.cancel_many_iter(iter(ids[10:20]), concurrency=3))
        assert sorted(o.order_id for o in streamed if isinstance(o, CancelResult)) == sorted(
            ids[10:20]
        )

        unconfirmed = client.cancel_many(ids[20:25], confirm=False)
        assert all(isinstance(o, TradeOrder) for o in unconfirmed)

        everything = client.cancel_all_open(sim.sim.trading_account_id)
        assert {o.order_id for o in everything} >= set(ids[25:])
        assert all(isinstance(o, CancelResult) for o in everything)


def test_leaving_a_bulk_iterator_early_stops_its_work(sim: ThreadedSim) -> None:
    ids = sim.order_ids(50)
    sim.call(setattr, sim.sim, "cancel_delay", 0.05)
    with sim.client() as client:
        iterator = client.cancel_many_iter(ids, concurrency=2)
        first = next(iterator)
        assert isinstance(first, CancelResult)
        iterator.close()  # type: ignore[attr-defined]
        assert client.stats().pending_cancels == 0
        requested = sim.call(lambda: {oid for oid, _ in sim.sim.cancel_requests})
    # Nothing was sent after leaving, and only what was sent was cancelled.
    assert sim.call(lambda: {oid for oid, _ in sim.sim.cancel_requests}) == requested
    cancelled = {oid for oid in ids if sim.status(oid) == "CANCELLED"}
    assert cancelled <= requested
    assert len(requested) < 10  # (the bulk stopped early: 2 at a time, out of 50)


def test_order_updates_is_a_blocking_iterator_that_ends_on_close(sim: ThreadedSim) -> None:
    ids = sim.order_ids(3)
    client = sim.client()
    client.__enter__()
    received: list[str] = []
    ended = threading.Event()

    def read() -> None:
        for order in client.order_updates():
            received.append(order.trade_order_id)
        ended.set()

    reader = threading.Thread(target=read)
    reader.start()
    try:
        wait_until(lambda: client.run(_readers_registered))
        for oid in ids:
            client.cancel_and_confirm(oid)
        wait_until(lambda: set(ids) <= set(received))
    finally:
        client.close()
        reader.join(10)
    assert ended.is_set()


async def _readers_registered(client: CadenzaClient) -> bool:
    return has_update_reader(client)


# -- lifecycle: close, threads, errors after close -------------------------------------------


@sim_options(cancel_delay=1.0)
def test_close_from_another_thread_ends_every_call_in_flight(sim: ThreadedSim) -> None:
    baseline = threading.active_count()
    ids = sim.order_ids(12)
    client = sim.client()
    client.__enter__()
    background = client.cancel_nowait(ids[0])
    outcomes: dict[str, object] = {}

    def call(oid: str) -> None:
        try:
            outcomes[oid] = client.cancel_and_confirm(oid, timeout=30.0)
        except BaseException as exc:
            outcomes[oid] = exc

    threads = [threading.Thread(target=call, args=(oid,)) for oid in ids[1:]]
    for thread in threads:
        thread.start()
    wait_until(lambda: client.stats().pending_cancels >= len(ids))
    closer = threading.Thread(target=client.close)
    closer.start()
    closer.join(20)
    for thread in threads:
        thread.join(20)
    assert not closer.is_alive()
    assert len(outcomes) == len(ids) - 1
    for oid, outcome in outcomes.items():
        assert isinstance(outcome, (CancelResult, ClientClosedError)), (oid, outcome)
        if isinstance(outcome, CancelResult):
            assert outcome.order_id == oid
    # The fire-and-forget cancel was drained, not dropped.
    assert background.done()
    assert background.result().cancelled
    with pytest.raises(ClientClosedError):
        client.cancel_and_confirm(ids[1])
    assert threading.active_count() == baseline


def test_a_blocking_call_still_running_at_close_raises_client_closed(sim: ThreadedSim) -> None:
    """A call the client's close does not end by itself (``run`` of a coroutine that waits
    for ever) is stopped with the loop: its caller gets ClientClosedError, not CancelledError."""
    client = sim.client()
    client.__enter__()
    started = threading.Event()
    outcome: list[object] = []

    async def forever(_client: CadenzaClient) -> None:
        started.set()
        await asyncio.Event().wait()

    def call() -> None:
        try:
            outcome.append(client.run(forever))
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    try:
        assert started.wait(10)
    finally:
        client.close()
        caller.join(10)
    assert not caller.is_alive()
    (error,) = outcome
    assert isinstance(error, ClientClosedError), repr(error)


def test_calls_after_close_raise_client_closed_and_no_thread_is_left(sim: ThreadedSim) -> None:
    baseline = threading.active_count()
    (oid,) = sim.order_ids(1)
    client = sim.client()
    assert threading.active_count() == baseline + 1  # its loop thread
    with client:
        assert client.cancel_and_confirm(oid).cancelled
        assert not client.closed
    assert client.closed
    client.close()  # twice is fine
    assert threading.active_count() == baseline
    for call in (
        lambda: client.cancel_and_confirm(oid),
        lambda: client.cancel(oid),
        lambda: client.cancel_nowait(oid),
        lambda: client.cancel_many([oid]),
        lambda: client.cancel_many_iter([oid]),
        lambda: client.order_updates(),
        lambda: client.get_order(oid),
        lambda: client.list_orders(),
        lambda: client.subscribe_account(sim.sim.trading_account_id),
        lambda: client.stats(),
        lambda: client.drain(),
    ):
        with pytest.raises(ClientClosedError):
            call()
    with pytest.raises(ClientClosedError), client:
        pass


def test_a_bad_setting_raises_in_the_constructor_and_leaves_no_thread() -> None:
    baseline = threading.active_count()
    with pytest.raises(ConfigurationError):
        BlockingCadenzaClient(token="t", api_url="http://example.com")  # plain http, remote
    assert threading.active_count() == baseline


def test_from_env_reads_the_environment(sim: ThreadedSim, monkeypatch: pytest.MonkeyPatch) -> None:
    (oid,) = sim.order_ids(1)
    monkeypatch.setenv("CADENZA_TOKEN", sim.sim.token)
    monkeypatch.setenv("CADENZA_API_URL", sim.sim.api_url)
    monkeypatch.setenv("CADENZA_WS_URL", sim.sim.ws_url)
    monkeypatch.setenv("CADENZA_TRADING_ACCOUNT_ID", sim.sim.trading_account_id)
    with BlockingCadenzaClient.from_env() as client:
        assert client.config.api_url == sim.sim.api_url
        assert client.cancel_and_confirm(oid).cancelled
    assert "closed" in repr(client)


def test_a_failed_connect_on_enter_closes_the_client_and_its_thread(sim: ThreadedSim) -> None:
    baseline = threading.active_count()
    client = BlockingCadenzaClient(
        token="wrong-token",
        api_url=sim.sim.api_url,
        ws_url=sim.sim.ws_url,
        trading_account_id=sim.sim.trading_account_id,
    )
    with pytest.raises(Exception) as failed:
        client.__enter__()
    assert not isinstance(failed.value, ClientClosedError)
    assert client.closed
    assert threading.active_count() == baseline


def test_calling_the_client_from_its_own_loop_thread_is_refused(sim: ThreadedSim) -> None:
    (oid,) = sim.order_ids(1)
    with sim.client() as client:

        async def nested(_client: CadenzaClient) -> None:
            client.get_order(oid)

        with pytest.raises(RuntimeError, match="event loop thread"):
            client.run(nested)

        async def close_inside(_client: CadenzaClient) -> None:
            client.close()

        with pytest.raises(RuntimeError, match="own event loop thread"):
            client.run(close_inside)
        assert not client.closed
        assert client.get_order(oid).trade_order_id == oid


def test_an_unclosed_client_warns_when_it_is_collected(sim: ThreadedSim) -> None:
    baseline = threading.active_count()
    client = sim.client()
    portal, portal_cm, inner = client._portal, client._portal_cm, client._client
    with pytest.warns(ResourceWarning, match="unclosed <BlockingCadenzaClient"):
        del client  # the last reference: collected here
    portal.call(inner.aclose)  # what close() would have done
    portal.call(portal.stop, True)
    portal_cm.__exit__(None, None, None)
    assert threading.active_count() == baseline
