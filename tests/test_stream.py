"""OrderStream against the exchange simulator: readiness, order, recovery, faults, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import os
import random
import socket

import msgspec
import pytest

from cadenza_async import _wsio as wsio
from cadenza_async._auth import TokenSource
from cadenza_async.config import ClientConfig, Timeouts
from cadenza_async.errors import ApiError, ClientClosedError, StreamError, TransportError
from cadenza_async.stream import (
    MAX_TOKEN_REFUSALS,
    RESUBSCRIBE_WINDOW,
    OrderStream,
    StreamRpcError,
    redact,
)
from cadenza_async.testing import CadenzaSimulator
from cadenza_async.testing._wire import error_reply
from cadenza_async.testing._ws import Connection


class Recorder:
    """Collects every callback of one stream and lets a test wait for a condition."""

    def __init__(self) -> None:
        self.pubs: list[tuple[str, dict, int | None]] = []
        self.gaps: list[str] = []
        self.states: list[str] = []
        self.failures: list[StreamError] = []
        self._changed = asyncio.Event()

    def _poke(self) -> None:
        self._changed.set()

    def on_publication(self, channel: str, data: msgspec.Raw, offset: int | None) -> None:
        self.pubs.append((channel, msgspec.json.decode(data), offset))
        self._poke()

    def on_gap(self, channel: str) -> None:
        self.gaps.append(channel)
        self._poke()

    def on_state(self, state: str) -> None:
        self.states.append(state)
        self._poke()

    def on_failure(self, error: StreamError) -> None:
        self.failures.append(error)
        self._poke()

    async def wait(self, predicate, timeout: float = 5.0) -> None:
        async def loop() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(loop(), timeout)

    @property
    def offsets(self) -> list[int | None]:
        return [off for _, _, off in self.pubs]

    @property
    def order_ids(self) -> list[str]:
        return [data["data"]["tradeOrderId"] for _, data, _ in self.pubs]


def make_stream(
    sim: CadenzaSimulator, rec: Recorder, token=None, config_options=None, **kwargs
) -> OrderStream:
    """A stream on ``sim``; ``config_options`` go to ClientConfig, ``kwargs`` to OrderStream.

    Reconnect delays default to 10-50 ms through the constructor unless the
    config sets them.
    """
    config_options = dict(config_options or {})
    config = ClientConfig(
        token=token or sim.token,
        api_url=sim.api_url,
        ws_url=sim.ws_url,
        timeouts=Timeouts(connect=kwargs.pop("connect_timeout", 3.0)),
        **config_options,
    )
    if "reconnect_min_delay" not in config_options:
        kwargs.setdefault("min_reconnect_delay", 0.01)
        kwargs.setdefault("max_reconnect_delay", 0.05)
    return OrderStream(
        config,
        TokenSource(config.token),
        on_publication=rec.on_publication,
        on_gap=rec.on_gap,
        on_state=rec.on_state,
        on_failure=rec.on_failure,
        **kwargs,
    )


@contextlib.asynccontextmanager
async def running(sim: CadenzaSimulator, rec: Recorder, subscribe: bool = True, **kwargs):
    stream = make_stream(sim, rec, **kwargs)
    await stream.start()
    try:
        if subscribe:
            await stream.subscribe(channel_of(sim))
        yield stream
    finally:
        await stream.aclose()


def channel_of(sim: CadenzaSimulator) -> str:
    return f"tradingAccount:{sim.trading_account_id}"


def publish(sim: CadenzaSimulator, n: int) -> list[str]:
    ids = []
    for order in sim.create_orders(n):
        sim.set_status(order.trade_order_id, "CANCELLED")
        ids.append(order.trade_order_id)
    return ids


def stream_tasks() -> set[asyncio.Task]:
    """The running tasks whose coroutine belongs to cadenza_async.stream."""
    return {
        t
        for t in asyncio.all_tasks()
        if getattr(t.get_coro(), "cr_code", None) is not None
        and t.get_coro().cr_code.co_filename.endswith(os.path.join("cadenza_async", "stream.py"))
    }


def consecutive(offsets: list[int | None]) -> bool:
    return all(b == a + 1 for a, b in itertools.pairwise(offsets))


# ------------------------------------------------------------------ readiness and order


async def test_start_connects_and_subscribe_returns_once_confirmed():
    rec = Recorder()
    async with CadenzaSimulator() as sim, running(sim, rec, subscribe=False) as stream:
        assert stream.connected
        assert rec.states[-1] == "connected"
        await stream.subscribe(channel_of(sim))
        assert channel_of(sim) in stream.positions
        await stream.subscribe(channel_of(sim))  # idempotent
        assert sim.connect_count == 1


async def test_publications_are_delivered_in_order():
    rec = Recorder()
    async with CadenzaSimulator() as sim, running(sim, rec) as stream:
        ids = publish(sim, 50)
        await rec.wait(lambda: len(rec.pubs) >= 50)
        assert rec.order_ids == ids
        assert consecutive(rec.offsets)
        assert stream.positions[channel_of(sim)][1] == rec.offsets[-1]
        assert rec.gaps == []


async def test_duplicated_publications_are_delivered_once():
    rec = Recorder()
    async with CadenzaSimulator() as sim, running(sim, rec):
        sim.duplicate_next_publications(5)
        ids = publish(sim, 5)
        more = publish(sim, 1)
        await rec.wait(lambda: len(rec.order_ids) >= 6 and rec.order_ids[-1] == more[0])
        assert rec.order_ids == ids + more


async def test_reordered_live_publications_report_a_gap():
    rec = Recorder()
    async with CadenzaSimulator() as sim, running(sim, rec):
        sim.reorder_next_publications(2)
        publish(sim, 2)
        await rec.wait(lambda: rec.gaps)
        assert rec.gaps == [channel_of(sim)]


# ------------------------------------------------------------------ reconnect and recovery


async def test_reconnect_after_3001_recovers_without_loss_or_duplicates():
    rec = Recorder()
    async with CadenzaSimulator() as sim, running(sim, rec) as stream:
        before = publish(sim, 5)
        await rec.wait(lambda: len(rec.pubs) >= 5)
        await sim.disconnect_all(code=3001)
        during = publish(sim, 5)  # nobody is subscribed: only in history
        await rec.wait(lambda: len(rec.pubs) >= 10)
        after = publish(sim, 3)
        await rec.wait(lambda: len(rec.pubs) >= 13)
        assert rec.order_ids == before + during + after
        assert consecutive(rec.offsets)
        assert rec.gaps == []
        assert stream.reconnects == 1
        assert sim.connect_count == 2
        assert "disconnected" in rec.states


async def test_unrecoverable_history_reports_gap_and_continues():
    rec = Recorder()
    async with CadenzaSimulator() as sim, running(sim, rec) as stream:
        publish(sim, 3)
        await rec.wait(lambda: len(rec.pubs) >= 3)
        await sim.disconnect_all(code=3001)
        sim.lose_history()
        await rec.wait(lambda: rec.gaps)
        assert rec.gaps == [channel_of(sim)]
        await rec.wait(lambda: stream.connected)
        later = publish(sim, 2)
        await rec.wait(lambda: rec.order_ids[-2:] == later)


@pytest.mark.parametrize("code", [3500, 3501, 3503, 4500])
async def test_terminal_close_code_fails_promptly_without_reconnect(code):
    rec = Recorder()
    async with CadenzaSimulator() as sim, running(sim, rec) as stream:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await sim.disconnect_all(code=code, reason="go away")
        await rec.wait(lambda: rec.failures, timeout=1.0)
        assert loop.time() - t0 < 1.0
        assert rec.failures[0].code == code
        assert rec.states[-1] == "closed"
        assert not stream.connected
        with pytest.raises(StreamError):
            await stream.rpc("command.trade_order.cancel", b"{}", timeout=1.0)
        with pytest.raises(StreamError):
            await stream.subscribe("tradingAccount:other")
        assert sim.connect_count == 1
        assert len(rec.failures) == 1


@pytest.mark.parametrize("code", [3001, 3011, 3012, 4000, 1011])
async def test_reconnect_close_codes_reconnect(code):
    rec = Recorder()
    async with CadenzaSimulator() as sim, running(sim, rec) as stream:
        await sim.disconnect_all(code=code)
        await rec.wait(lambda: stream.reconnects == 1 and stream.connected)
        assert rec.failures == []


async def test_pings_are_answered_over_many_short_intervals():
    rec = Recorder()
    async with (
        CadenzaSimulator(ping_interval=0.03, pong_timeout=0.5) as sim,
        running(sim, rec) as stream,
    ):
        await sim.wait_for(lambda: stream._proto.pings_received >= 25, timeout=10.0)
        assert sim.connect_count == 1
        assert stream.reconnects == 0


async def test_silent_server_is_dropped_and_reconnected():
    rec = Recorder()
    async with (
        CadenzaSimulator(ping_interval=0.1, pong_timeout=5.0) as sim,
        running(sim, rec, ping_grace=0.2) as stream,
    ):
        publish(sim, 1)
        sim.stop_pinging()
        await rec.wait(lambda: stream.reconnects >= 1)
        sim.resume_pinging()
        await rec.wait(lambda: stream.connected)
        ids = publish(sim, 1)
        await rec.wait(lambda: rec.order_ids[-1:] == ids)
        assert rec.failures == []


@pytest.mark.parametrize(
    ("config_options", "kwargs"),
    [
        (
            {"ping_grace": 0.2, "reconnect_min_delay": 0.01, "reconnect_max_delay": 0.05},
            {},
        ),
        ({"ping_grace": 60.0}, {"ping_grace": 0.2}),
    ],
    ids=["from-the-client-config", "constructor-argument-wins"],
)
async def test_ping_grace_and_reconnect_delays_come_from_the_config_unless_given(
    config_options, kwargs
):
    rec = Recorder()
    async with (
        CadenzaSimulator(ping_interval=0.1, pong_timeout=30.0) as sim,
        running(sim, rec, config_options=config_options, **kwargs) as stream,
    ):
        await sim.wait_for(lambda: sim.pongs_received >= 1)
        sim.stop_pinging()
        # with the default grace (10 s) or the config's 60 s this would not happen in time
        await sim.wait_for(lambda: sim.connect_count >= 2, timeout=3.0)
        sim.resume_pinging()
        await rec.wait(lambda: stream.connected and stream.reconnects >= 1)


def test_max_message_size_comes_from_the_config_unless_given():
    rec = Recorder()
    config = ClientConfig(token="t", ws_url="wss://ws.example.com/c", max_message_size=4096)
    tokens = TokenSource(config.token)
    callbacks = {"on_publication": rec.on_publication, "on_gap": rec.on_gap}
    callbacks["on_failure"] = rec.on_failure
    assert OrderStream(config, tokens, **callbacks)._max_size == 4096
    assert OrderStream(config, tokens, max_size=8192, **callbacks)._max_size == 8192


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        b"\x00binary",
        "",
        "null",
        "{}\n\n{}",
        "[" * 3000 + "]" * 3000,
        '{"push": {"channel": 5, "pub": {"data": {}}}}',
    ],
    ids=["garbage", "binary", "empty", "null", "blank-line", "deep", "wrong-types"],
)
async def test_bad_frame_drops_connection_and_recovers(frame, caplog):
    rec = Recorder()
    async with CadenzaSimulator() as sim, running(sim, rec) as stream:
        first = publish(sim, 2)
        await rec.wait(lambda: len(rec.pubs) >= 2)
        with caplog.at_level(logging.WARNING, logger="cadenza_async.stream"):
            await sim.send_raw(frame)
            missed = publish(sim, 2)
            await rec.wait(lambda: stream.reconnects >= 1 and len(rec.pubs) >= 4)
        assert rec.order_ids == first + missed
        assert rec.gaps == []
        assert rec.failures == []
        assert any("reconnecting" in r.getMessage() for r in caplog.records)


class RecordingRandom(random.Random):
    """A seeded Random that records the upper bound of every ``uniform`` draw (the backoff cap)."""

    def __init__(self) -> None:
        super().__init__(1)
        self.bounds: list[float] = []

    def uniform(self, a: float, b: float) -> float:
        self.bounds.append(b)
        return super().uniform(a, b)


async def test_message_refused_in_history_is_skipped_by_a_fresh_subscribe_and_a_gap(caplog):
    rec = Recorder()
    rng = RecordingRandom()
    async with CadenzaSimulator() as sim, running(sim, rec, rng=rng) as stream:
        first = publish(sim, 2)
        await rec.wait(lambda: len(rec.pubs) >= 2)
        with caplog.at_level(logging.WARNING, logger="cadenza_async.stream"):
            # not JSON inside pub.data: the whole message is refused, live and in recovery
            sim.publish_raw_order_update(None, b'{"broken')
            await rec.wait(lambda: rec.gaps == [channel_of(sim)])
        after = publish(sim, 1)
        await rec.wait(lambda: rec.order_ids[-1:] == after)

        assert rec.order_ids == first + after
        # live drop, the same position refused again in recovery, then a fresh subscribe
        assert sim.connect_count == 3
        assert stream.reconnects == 2
        # the backoff kept growing across the refused connections (no reset after connect)
        assert rng.bounds == [0.01, 0.02]
        assert rec.failures == []
        assert any("failed twice at the same position" in r.getMessage() for r in caplog.records)


async def test_recovery_reply_over_max_size_twice_is_skipped_by_a_fresh_subscribe():
    rec = Recorder()
    async with CadenzaSimulator() as sim, running(sim, rec, max_size=8192) as stream:
        first = publish(sim, 1)
        await rec.wait(lambda: len(rec.pubs) >= 1)
        # 16 KB of incompressible text in one publication: over max_size live and in recovery
        sim.publish_raw_order_update(None, {"pad": os.urandom(8192).hex()})
        await rec.wait(lambda: rec.gaps == [channel_of(sim)])
        after = publish(sim, 1)
        await rec.wait(lambda: rec.order_ids[-1:] == after)

        assert rec.order_ids == first + after
        assert sim.connect_count == 3
        assert stream.reconnects == 2
        assert rec.failures == []


async def test_one_refused_frame_then_a_good_recovery_does_not_resubscribe_fresh():
    rec = Recorder()
    async with CadenzaSimulator() as sim, running(sim, rec) as stream:
        publish(sim, 1)
        await rec.wait(lambda: len(rec.pubs) >= 1)
        for n in range(2):  # the same position twice, but each time the recovery succeeded
            await sim.send_raw("not json")
            await rec.wait(lambda n=n: stream.reconnects == n + 1 and stream.connected)
            await sim.wait_for(lambda: stream._proto.is_subscribed(channel_of(sim)))
        ids = publish(sim, 1)
        await rec.wait(lambda: rec.order_ids[-1:] == ids)
        assert rec.gaps == []


async def test_publication_callback_error_does_not_kill_the_reader(caplog):
    rec = Recorder()
    calls = []

    def flaky(channel, data, offset):
        calls.append(offset)
        if len(calls) == 1:
            raise RuntimeError("consumer bug")
        rec.on_publication(channel, data, offset)

    async with CadenzaSimulator() as sim:
        stream = make_stream(sim, rec)
        stream._fanout.on_publication = flaky
        await stream.start()
        try:
            await stream.subscribe(channel_of(sim))
            with caplog.at_level(logging.ERROR, logger="cadenza_async.stream"):
                publish(sim, 3)
                await rec.wait(lambda: len(rec.pubs) >= 2)
            assert len(calls) == 3
            assert stream.connected
            assert any("on_publication callback failed" in r.getMessage() for r in caplog.records)
        finally:
            await stream.aclose()


# ------------------------------------------------------------------ rpc


async def test_rpc_round_trip_returns_reply_data():
    rec = Recorder()
    async with CadenzaSimulator() as sim, running(sim, rec) as stream:
        order = sim.create_order()
        body = msgspec.json.encode(
            {"tradingAccountId": sim.trading_account_id, "tradeOrderId": order.trade_order_id}
        )
        raw = await stream.rpc("command.trade_order.cancel", body, timeout=2.0)
        reply = msgspec.json.decode(raw)
        assert reply["data"]["tradeOrderId"] == order.trade_order_id
        assert sim.get_order(order.trade_order_id).status == "CANCELLED"


async def test_rpc_error_reply_is_an_api_error_with_the_centrifugo_code():
    rec = Recorder()
    async with CadenzaSimulator() as sim, running(sim, rec) as stream:
        with pytest.raises(StreamRpcError) as info:
            await stream.rpc("no.such.method", b"{}", timeout=2.0)
        assert isinstance(info.value, ApiError)
        assert info.value.errno == 104
        assert stream.connected


async def test_rpc_rejects_non_json_payload_before_sending():
    rec = Recorder()
    async with CadenzaSimulator() as sim, running(sim, rec) as stream:
        with pytest.raises(ValueError, match="JSON"):
            await stream.rpc("command.trade_order.cancel", b"{nope", timeout=1.0)
        assert sim.cancel_requests == []


async def test_rpc_pending_when_connection_drops_raises_transport_error():
    rec = Recorder()
    async with CadenzaSimulator() as sim, running(sim, rec) as stream:
        call = asyncio.ensure_future(stream.rpc("no.such.method", b"{}", timeout=5.0))
        while not stream._rpc_waiters:  # the command is written in the step that registers it
            await asyncio.sleep(0)
        stream._abort("test: link lost")  # before the reply can be read
        with pytest.raises(TransportError):
            await call
        await rec.wait(lambda: stream.reconnects == 1 and stream.connected)
        with pytest.raises(StreamRpcError):  # the next command works
            await stream.rpc("no.such.method", b"{}", timeout=2.0)


async def test_rpc_without_a_reply_ends_at_its_deadline_even_if_the_protocol_waits_longer():
    """The protocol may postpone a reply deadline (a frame still arriving); the call's may not."""
    rec = Recorder()
    async with CadenzaSimulator() as sim, running(sim, rec) as stream:
        order = sim.create_order()
        sim.delay_cancel_reply(math.inf)
        stream._proto._expire_commands = lambda now, receiving, events: None  # always postponed
        body = msgspec.json.encode(
            {"tradingAccountId": sim.trading_account_id, "tradeOrderId": order.trade_order_id}
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(
            TransportError, match=r"no reply to command\.trade_order\.cancel within"
        ):
            # (bounded here too: without the call's own deadline it would never end)
            await asyncio.wait_for(stream.rpc("command.trade_order.cancel", body, timeout=0.2), 5)
        assert 0.2 <= loop.time() - started < 1.0
        assert stream._rpc_waiters == {}
        assert stream.connected  # a late reply is no reason to drop the link
        sim.delay_cancel_reply(0)


@contextlib.asynccontextmanager
async def stalled(rec: Recorder):
    """A running stream on a simulator that has stopped reading what it sends (it takes
    messages far over the socket buffers, so one can fill them)."""
    async with (
        CadenzaSimulator(max_message_size=64 * 2**20) as sim,
        running(sim, rec) as stream,
    ):
        sim.stall_websocket_reads()
        yield sim, stream


def more_than_the_socket_buffers() -> bytes:
    return b'{"pad":"' + b"x" * (32 * 2**20) + b'"}'


async def test_writes_that_cannot_drain_end_at_the_call_deadline_and_lose_nothing():
    """The server stops reading: the socket fills and writing a command waits for it to
    drain. An RPC's, a subscribe's and an unsubscribe's deadlines bound that wait too;
    their frames are written whole, and go out once the server reads again."""
    rec = Recorder()
    async with stalled(rec) as (sim, stream):
        loop = asyncio.get_running_loop()
        big = more_than_the_socket_buffers()
        started = loop.time()
        with pytest.raises(TransportError, match=r"no reply to no\.such\.method within 0\.3s"):
            await asyncio.wait_for(stream.rpc("no.such.method", big, timeout=0.3), 10)
        assert 0.3 <= loop.time() - started < 2.0
        assert stream._rpc_waiters == {}
        other_account = sim.add_account()
        other = f"tradingAccount:{other_account}"
        started = loop.time()
        with pytest.raises(TransportError, match="not confirmed in time"):
            await asyncio.wait_for(stream.subscribe(other, timeout=0.3), 10)
        assert 0.3 <= loop.time() - started < 2.0
        assert stream.connected
        mine = channel_of(sim)
        started = loop.time()
        await asyncio.wait_for(stream.unsubscribe(mine, timeout=0.3), 10)
        assert 0.3 <= loop.time() - started < 2.0
        assert mine not in stream.channels
        sim.resume_websocket_reads()
        await asyncio.wait_for(stream.subscribe(other), 10)  # its frame got there
        # the unsubscribe's frame got there before the subscribe's: an event on its
        # channel published now is not delivered, one on the other channel is
        gone, kept = publish_on(sim, sim.trading_account_id), publish_on(sim, other_account)
        await rec.wait(lambda: kept in rec.order_ids)
        assert gone not in rec.order_ids
        with pytest.raises(StreamRpcError):  # and the link carries commands as before
            await stream.rpc("no.such.method", b"{}", timeout=5.0)
        assert stream.reconnects == 0


async def test_a_write_cut_short_at_its_deadline_still_sends_the_frames_after_it():
    """One write can carry other callers' commands (here a want()'s subscribe, then a
    cancel RPC, one frame each). Cut at its caller's deadline while the socket cannot
    drain, it leaves the frames not yet written to the background: none is lost."""
    rec = Recorder()
    async with stalled(rec) as (sim, stream):
        order = sim.create_order()
        big = more_than_the_socket_buffers()
        with pytest.raises(TransportError):
            await asyncio.wait_for(stream.rpc("no.such.method", big, timeout=0.2), 10)
        stream._proto.max_frame_size = 1  # every command in a frame of its own
        other = f"tradingAccount:{sim.add_account()}"
        stream.want(other)  # queued; its writer task has not run yet
        body = msgspec.json.encode(
            {"tradingAccountId": sim.trading_account_id, "tradeOrderId": order.trade_order_id}
        )
        # This call's write takes both frames and is cut in the first one's drain (it
        # runs in this task: wait_for's task would let the want()'s writer go first).
        with pytest.raises(TransportError):
            await stream.rpc("command.trade_order.cancel", body, 0.2)
        assert sim.get_order(order.trade_order_id).status != "CANCELLED"
        sim.resume_websocket_reads()
        await asyncio.wait_for(stream.subscribe(other), 10)
        await rec.wait(lambda: sim.get_order(order.trade_order_id).status == "CANCELLED")
        assert stream.reconnects == 0


# ------------------------------------------------------------------ tokens


async def test_start_with_invalid_token_raises_stream_error():
    rec = Recorder()
    async with CadenzaSimulator() as sim:
        stream = make_stream(sim, rec, token="not-a-valid-token")
        with pytest.raises(StreamError) as info:
            await stream.start()
        assert info.value.code == 3500
        await stream.aclose()
        assert sim.connect_count == 1


async def test_start_raises_transport_error_when_nothing_listens():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = ClientConfig(
        token="t",
        api_url="http://127.0.0.1:1",
        ws_url=f"ws://127.0.0.1:{port}/connection/websocket",
        timeouts=Timeouts(connect=0.3),
    )
    rec = Recorder()
    stream = OrderStream(
        config,
        TokenSource("t"),
        on_publication=rec.on_publication,
        on_gap=rec.on_gap,
        on_failure=rec.on_failure,
    )
    with pytest.raises(TransportError):
        await stream.start()
    await stream.aclose()
    assert rec.failures == []


async def test_expired_token_109_is_refreshed_once_and_connects():
    rec = Recorder()
    async with CadenzaSimulator() as sim:
        stale = sim.issue_token()
        sim.expire_token(stale)
        tokens = [stale, sim.token]
        calls = []

        def provider():
            calls.append(1)
            return tokens[len(calls) - 1]

        async with running(sim, rec, token=provider) as stream:
            assert stream.connected
            assert len(calls) == 2
            assert sim.connect_count == 2


async def test_provider_handing_back_the_refused_token_fails_without_reconnecting():
    rec = Recorder()
    async with CadenzaSimulator() as sim:
        stale = sim.issue_token()
        sim.expire_token(stale)
        calls = []

        def provider():
            calls.append(1)
            return stale

        stream = make_stream(sim, rec, token=provider)
        with pytest.raises(StreamError) as info:
            await stream.start()
        assert info.value.code == 109
        await stream.aclose()
        assert sim.connect_count == 1  # the same refused token is not sent again
        assert len(calls) == 2
        assert stream_tasks() == set()


async def test_provider_returning_only_refused_tokens_fails_after_a_bounded_number_of_connects():
    rec = Recorder()
    async with CadenzaSimulator() as sim:
        issued = []

        def provider():
            issued.append(sim.issue_token())
            sim.expire_token(issued[-1])  # a new token every time, each one refused
            return issued[-1]

        stream = make_stream(sim, rec, token=provider)
        with pytest.raises(StreamError) as info:
            await stream.start()
        assert info.value.code == 109
        await stream.aclose()
        assert len(issued) == MAX_TOKEN_REFUSALS
        assert sim.connect_count == MAX_TOKEN_REFUSALS
        assert stream_tasks() == set()


async def test_refreshed_token_refused_on_connect_is_refreshed_again_and_connects():
    rec = Recorder()
    async with CadenzaSimulator() as sim:
        issued = []

        def provider():
            issued.append(sim.issue_token())
            if len(issued) == 2:
                sim.expire_token(issued[1])  # expired before the stream could use it
            return issued[-1]

        async with running(sim, rec, token=provider) as stream:
            sim.expire_token(issued[0])  # 3005 -> refresh -> the 2nd token is refused (109)
            await rec.wait(lambda: stream.reconnects == 1 and stream.connected)
            assert len(issued) == 3
            assert sim.connect_count == 3
            assert rec.failures == []
        assert stream_tasks() == set()


async def test_reconnect_after_3005_reuses_a_token_the_http_side_already_refreshed():
    rec = Recorder()
    async with CadenzaSimulator() as sim:
        issued = []

        def provider():
            issued.append(sim.issue_token())
            return issued[-1]

        async with running(sim, rec, token=provider) as stream:
            # What HttpApi does on a 401: refresh keyed on the token it sent.
            assert await stream._tokens.refresh(issued[0]) == issued[1]
            sim.expire_token(issued[0])  # the live connection still runs on the 1st: 3005
            await rec.wait(lambda: stream.reconnects == 1 and stream.connected)
            assert len(issued) == 2  # the provider was not asked a third time
        assert stream_tasks() == set()


async def test_failing_token_provider_is_a_stream_error():
    rec = Recorder()

    def provider():
        raise OSError("vault down")

    async with CadenzaSimulator() as sim:
        stream = make_stream(sim, rec, token=provider)
        with pytest.raises(StreamError):
            await stream.start()
        await stream.aclose()
        assert sim.connect_count == 0


async def test_expiring_token_is_refreshed_on_the_open_connection():
    rec = Recorder()
    async with CadenzaSimulator() as sim:
        issued = []

        def provider():
            issued.append(sim.issue_token(ttl=1.0))
            return issued[-1]

        async with running(sim, rec, token=provider) as stream:
            await sim.wait_for(lambda: len(issued) >= 4, timeout=5.0)
            assert sim.connect_count == 1
            assert stream.reconnects == 0
            assert stream.connected


@pytest.mark.parametrize(("code", "provider_calls"), [(109, 3), (103, 3), (100, 2)])
async def test_refresh_answered_with_an_error_reconnects_with_a_fresh_token(
    monkeypatch, code, provider_calls
):
    """109 or a lasting error: the refresh's token is refused, a new one is fetched.

    A temporary error (100) refuses nothing: the reconnect uses the token
    the refresh carried.
    """

    def refuse_refresh(self, command_id, token):
        self.send(error_reply(command_id, code, "refused"))

    monkeypatch.setattr(Connection, "_refresh", refuse_refresh)
    rec = Recorder()
    async with CadenzaSimulator() as sim:
        issued = []

        def provider():
            # 1st: short-lived (the stream refreshes it on the open connection).
            issued.append(sim.issue_token(ttl=1.0) if not issued else sim.issue_token())
            return issued[-1]

        async with running(sim, rec, token=provider) as stream:
            await rec.wait(lambda: stream.reconnects == 1 and stream.connected)
            assert len(issued) == provider_calls
            assert sim.connect_count == 2
            assert rec.failures == []
        assert stream_tasks() == set()


async def test_refresh_answered_with_109_reconnects_with_a_fresh_token_on_the_simulator():
    rec = Recorder()
    async with CadenzaSimulator() as sim:
        issued = []

        def provider():
            issued.append(sim.issue_token(ttl=1.0) if not issued else sim.issue_token())
            if len(issued) == 2:
                sim.expire_token(issued[1])  # the refresh command carries an expired token
            return issued[-1]

        async with running(sim, rec, token=provider) as stream:
            await rec.wait(lambda: stream.reconnects == 1 and stream.connected)
            assert len(issued) == 3
            assert sim.connect_count == 2
            assert rec.failures == []
        assert stream_tasks() == set()


async def test_failing_provider_at_refresh_keeps_the_connection_until_it_expires_then_fails():
    rec = Recorder()
    async with CadenzaSimulator() as sim:
        calls = []

        def provider():
            calls.append(1)
            if len(calls) > 1:
                raise RuntimeError("the vault is down")
            return sim.issue_token(ttl=1.0)

        stream = make_stream(sim, rec, token=provider)
        await stream.start()
        try:
            await rec.wait(lambda: rec.failures, timeout=5.0)
        finally:
            await stream.aclose()
        (failure,) = rec.failures
        assert "RuntimeError" in str(failure)
        assert "vault" not in str(failure)
        assert len(calls) == 3  # first use, the refresh before the ttl, the reconnect after 3005
        assert sim.connect_count == 1  # no reconnect on the failed refresh itself
        assert stream_tasks() == set()


async def test_provider_without_a_newer_token_sends_no_refresh_and_fails_once_it_expired(
    monkeypatch,
):
    refreshes = []
    original = Connection._refresh

    def recording_refresh(self, command_id, token):
        refreshes.append(command_id)
        original(self, command_id, token)

    monkeypatch.setattr(Connection, "_refresh", recording_refresh)
    rec = Recorder()
    async with CadenzaSimulator() as sim:
        token = sim.issue_token(ttl=1.0)
        calls = []

        def provider():
            calls.append(1)
            return token

        stream = make_stream(sim, rec, token=provider)
        await stream.start()
        try:
            await rec.wait(lambda: rec.failures, timeout=5.0)
        finally:
            await stream.aclose()
        (failure,) = rec.failures
        assert failure.code == 109
        # first use, the refresh before the ttl (same token: nothing sent), after the
        # 3005 close (same token: tried once more), after the 109 (same token: fatal)
        assert len(calls) == 4
        assert refreshes == []  # refreshing with the same token would only shrink its ttl
        assert sim.connect_count == 2
        assert stream_tasks() == set()


async def test_provider_that_does_not_answer_at_reconnect_fails_the_stream_in_time():
    rec = Recorder()
    async with CadenzaSimulator() as sim:
        live = sim.issue_token()
        calls = []

        async def provider():
            calls.append(1)
            if len(calls) > 1:
                await asyncio.Event().wait()  # the vault hangs
            return live

        stream = make_stream(sim, rec, token=provider, connect_timeout=0.5)
        await stream.start()
        try:
            sim.expire_token(live)  # 3005: the reconnect needs a fresh token
            await rec.wait(lambda: rec.failures, timeout=5.0)
        finally:
            await stream.aclose()
        (failure,) = rec.failures
        assert "did not answer within 0.5s" in str(failure)
        assert sim.connect_count == 1
        assert stream_tasks() == set()


async def test_connection_expired_3005_reconnects_with_a_fresh_token():
    rec = Recorder()
    async with CadenzaSimulator() as sim:
        issued = []

        def provider():
            issued.append(sim.issue_token())
            return issued[-1]

        async with running(sim, rec, token=provider) as stream:
            sim.expire_token(issued[0])  # the live connection is closed with 3005
            await rec.wait(lambda: stream.reconnects == 1 and stream.connected)
            assert len(issued) == 2


# ------------------------------------------------------------------ secrets and shutdown


async def test_debug_logs_never_show_the_token(caplog):
    rec = Recorder()
    secret = "canary-SECRET-token-123"
    async with CadenzaSimulator(token=secret) as sim:
        with caplog.at_level(logging.DEBUG):
            async with running(sim, rec) as stream:
                await sim.disconnect_all(code=3005)
                await rec.wait(lambda: stream.reconnects == 1 and stream.connected)
        text = caplog.text
        assert '"connect"' in text  # websockets did log the connect frames
        assert secret not in text
        assert "SECRET" not in text
        assert secret not in repr(stream)


def test_redact_hides_tokens_and_headers():
    text = redact(
        '> TEXT \'{"id":1,"connect":{"token":"abc.def.ghi","name":"x"}}\' Authorization: Bearer abc'
    )
    assert "abc.def" not in text
    assert "Bearer abc" not in text
    assert redact('{"token":"trunc...', ()) == '{"token":"***'
    assert redact("x sekrit y", ("sekrit",)) == "x *** y"


async def test_aclose_leaves_no_task_pending_and_refuses_new_calls():
    rec = Recorder()
    async with CadenzaSimulator() as sim:
        before = asyncio.all_tasks()
        stream = make_stream(sim, rec)
        await stream.start()
        await stream.subscribe(channel_of(sim))
        await stream.aclose()
        await stream.aclose()  # idempotent
        assert asyncio.all_tasks() == before
        assert rec.states[-1] == "closed"
        assert rec.failures == []
        with pytest.raises(ClientClosedError):
            await stream.subscribe(channel_of(sim))
        await sim.wait_for(lambda: sim.connections == 0)


async def test_unsubscribe_stops_delivery_and_resubscription():
    rec = Recorder()
    async with CadenzaSimulator() as sim, running(sim, rec) as stream:
        await stream.unsubscribe(channel_of(sim))
        assert stream.channels == frozenset()
        await sim.disconnect_all(code=3001)
        await rec.wait(lambda: stream.reconnects == 1 and stream.connected)
        ids = publish(sim, 1)
        other = sim.add_account()
        await stream.subscribe(f"tradingAccount:{other}")
        assert ids
        assert not any(i in rec.order_ids for i in ids)


async def test_close_stops_a_task_that_swallowed_its_first_cancellation():
    # Python 3.11's asyncio.wait_for can swallow a cancellation that races its
    # inner future; close must still end every task it owns, and not hang.
    rec = Recorder()
    swallowed = asyncio.Event()

    async def stubborn() -> None:
        for _ in range(2):  # swallows two cancellations, then a third ends it
            try:
                await asyncio.get_running_loop().create_future()
            except asyncio.CancelledError:
                swallowed.set()
        await asyncio.get_running_loop().create_future()

    async with CadenzaSimulator() as sim:
        stream = make_stream(sim, rec)
        await stream.start()
        task = asyncio.ensure_future(stubborn())
        stream._aux.add(task)
        await asyncio.sleep(0)  # let it reach its first await
        closing = asyncio.ensure_future(stream.aclose())
        done, _ = await asyncio.wait({closing}, timeout=5.0)
        if not done:  # clean up before failing, so nothing is left pending
            task.cancel()
            await closing
        assert closing in done, "aclose hung on a task that swallowed a cancellation"
        assert swallowed.is_set()
        assert task.done()


# ------------------------------------------------------------------ many channels, release


async def eventually(predicate, timeout: float = 5.0) -> None:
    """Wait until ``predicate()`` holds, polling (for state no callback reports)."""

    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


def publish_on(sim: CadenzaSimulator, account: str) -> str:
    order = sim.create_order(account)
    sim.set_status(order.trade_order_id, "CANCELLED")
    return order.trade_order_id


@pytest.fixture
def sent_frames(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every text frame the stream writes from now on, in order."""
    frames: list[str] = []
    send = wsio._LiveConnection.send

    async def recording_send(self, message, *args, **kwargs):
        if isinstance(message, str):
            frames.append(message)
        return await send(self, message, *args, **kwargs)

    monkeypatch.setattr(wsio._LiveConnection, "send", recording_send)
    return frames


async def test_a_reconnect_resubscribes_every_channel_in_batched_frames_each_from_its_position(
    sent_frames: list[str],
):
    # 600 channels' subscribes with recovery are over 64 KiB together (one frame
    # would pass the server's message limit), and their 600 recovery replies in
    # one combined message could pass the client's: a window of them at a time.
    rec = Recorder()
    async with CadenzaSimulator() as sim, running(sim, rec, subscribe=False) as stream:
        accounts = [sim.add_account() for _ in range(600)]
        channels = [f"tradingAccount:{a}" for a in accounts]
        for channel in channels:
            stream.want(channel)
        await eventually(lambda: all(stream.is_live(c) for c in channels))
        before = [publish_on(sim, a) for a in accounts[:3]]
        await rec.wait(lambda: len(rec.pubs) >= 3)
        positions = stream.positions
        sent_frames.clear()

        await sim.disconnect_all(code=3001)
        during = [publish_on(sim, a) for a in accounts[:3]]  # only in the channels' history
        await eventually(
            lambda: stream.reconnects == 1 and all(stream.is_live(c) for c in channels)
        )
        await rec.wait(lambda: len(rec.pubs) >= 6)

        subscribe_frames = [f for f in sent_frames if '"subscribe"' in f]
        commands = [
            msgspec.json.decode(line)["subscribe"]
            for frame in subscribe_frames
            for line in frame.split("\n")
        ]
        # At most RESUBSCRIBE_WINDOW wait for their reply at once (their recovery
        # replies, combined by the server, stay far under max_message_size), and
        # no frame passes the server's 64 KiB message limit.
        assert all(len(f.encode()) <= 65536 for f in subscribe_frames)
        assert len(subscribe_frames[0].split("\n")) == RESUBSCRIBE_WINDOW
        assert sorted(c["channel"] for c in commands) == sorted(channels)  # each once
        for command in commands:
            assert command.get("recover") is True
            epoch, offset = positions[command["channel"]]
            assert (command.get("epoch", ""), command.get("offset", 0)) == (epoch, offset)
        assert rec.order_ids[:3] == before
        # Recovered, nothing lost or repeated (in the order the channels resubscribed).
        assert sorted(rec.order_ids[3:]) == sorted(during)
        assert rec.gaps == []
        assert sim.connect_count == 2


async def test_release_unsubscribes_a_live_channel_and_stops_its_events():
    rec = Recorder()
    async with CadenzaSimulator() as sim, running(sim, rec) as stream:
        channel = channel_of(sim)
        assert stream.release(channel) is True
        assert stream.channels == frozenset()
        assert not stream.is_live(channel)
        assert stream.live_since(channel) is None
        other = sim.add_account()
        await stream.subscribe(f"tradingAccount:{other}")  # after the unsubscribe, in order
        released = publish(sim, 1)
        kept = publish_on(sim, other)
        await rec.wait(lambda: kept in rec.order_ids)
        assert not set(released) & set(rec.order_ids)


async def test_a_released_channel_is_not_resubscribed_after_a_reconnect():
    rec = Recorder()
    async with CadenzaSimulator() as sim, running(sim, rec) as stream:
        other = f"tradingAccount:{sim.add_account()}"
        await stream.subscribe(other)
        stream.release(channel_of(sim))
        await sim.disconnect_all(code=3001)
        await eventually(lambda: stream.reconnects == 1 and stream.is_live(other))
        assert not stream.is_live(channel_of(sim))
        assert stream.channels == frozenset({other})


async def test_release_while_disconnected_keeps_the_channel_from_the_next_connect():
    rec = Recorder()
    async with CadenzaSimulator() as sim, running(sim, rec) as stream:
        sim.refuse_websocket(503)
        await sim.disconnect_all(code=3001)
        await eventually(lambda: not stream.connected)
        assert stream.release(channel_of(sim)) is True
        sim.accept_websocket()
        await eventually(lambda: stream.reconnects == 1 and stream.connected)
        # A channel wanted after the connect goes live after anything the connect
        # subscribed: once it is live, the released one would have been too.
        other = "tradingAccount:" + sim.add_account()
        stream.want(other)
        await eventually(lambda: stream.is_live(other))
        assert not stream.is_live(channel_of(sim))
        assert channel_of(sim) not in stream.positions  # forgotten: a later want starts afresh


async def test_release_fails_nobody_waiting_for_the_channel_and_keeps_it():
    rec = Recorder()
    async with CadenzaSimulator() as sim, running(sim, rec, subscribe=False) as stream:
        sim.delay_subscribe_replies(0.2)
        channel = channel_of(sim)
        waiting = asyncio.ensure_future(stream.subscribe(channel))
        await eventually(lambda: channel in stream.channels)
        assert stream.release(channel) is False  # someone waits on it: still wanted
        await asyncio.wait_for(waiting, 2.0)  # confirmed, not failed
        assert stream.is_live(channel)
        assert channel in stream.channels
        assert rec.failures == []


async def test_release_then_want_subscribes_the_channel_again():
    rec = Recorder()
    async with CadenzaSimulator() as sim, running(sim, rec) as stream:
        channel = channel_of(sim)
        stream.release(channel)
        stream.want(channel)
        await eventually(lambda: stream.is_live(channel))
        ids = publish(sim, 2)
        await rec.wait(lambda: set(ids) <= set(rec.order_ids))
        assert rec.gaps == []


async def test_release_of_an_unknown_channel_or_on_a_closed_stream_is_harmless():
    rec = Recorder()
    async with CadenzaSimulator() as sim:
        async with running(sim, rec) as stream:
            assert stream.release("tradingAccount:nobody") is True
        assert stream.release(channel_of(sim)) is True  # closed: nothing left to release
        assert stream.channels == frozenset()


async def test_recovering_many_busy_channels_never_makes_one_reply_over_max_size() -> None:
    # 200 channels, each with 8 publications of ~2 KB missed during a drop: their
    # recovery replies together are ~3 MiB, three times max_message_size (1 MiB).
    # All resubscribed at once, the server's combined reply would close the link
    # with 1009 on every reconnect (and the poisoned-position rule would give up
    # recovery for every channel); a shrinking window of them recovers them all.
    rec = Recorder()
    async with CadenzaSimulator() as sim, running(sim, rec, subscribe=False) as stream:
        accounts = [sim.add_account() for _ in range(200)]
        channels = [f"tradingAccount:{a}" for a in accounts]
        for channel in channels:
            stream.want(channel)
        await eventually(lambda: all(stream.is_live(c) for c in channels))

        await sim.disconnect_all(code=3001)
        padding = "x" * 2000
        for account in accounts:
            for _ in range(8):
                sim.publish_raw_order_update(account, {"pad": padding})
        await eventually(
            lambda: stream.reconnects >= 1 and all(stream.is_live(c) for c in channels)
        )
        await rec.wait(lambda: len(rec.pubs) >= 200 * 8)

        # 64 at a time is still ~1 MiB here: one 1009, then a window of 8 goes
        # through. Never a reconnect loop, nothing lost: every channel recovered.
        assert sim.connect_count <= 3
        assert rec.gaps == []
