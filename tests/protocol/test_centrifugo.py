"""Plain synchronous tests of the sans-I/O Centrifugo client core."""

from __future__ import annotations

import ast
import itertools
import json
import pathlib
import random

import msgspec
import pytest

from cadenza_async.protocol import centrifugo as cf
from cadenza_async.protocol.centrifugo import (
    CentrifugoProtocol,
    CentrifugoUsageError,
    CommandTimedOut,
    Connected,
    Disconnected,
    PingTimeout,
    PositionGap,
    ProtocolViolation,
    Publication,
    RefreshNeeded,
    Reply,
    ReplyError,
    StreamPosition,
    Subscribed,
    Unsubscribed,
    close_code_reconnects,
    error_is_temporary,
    reconnect_delays,
)

CH = "tradingAccount:acc-1"


def sent(proto: CentrifugoProtocol) -> list[dict]:
    """Every JSON message queued for sending, frames split on newlines."""
    out = []
    for frame in proto.data_to_send():
        assert isinstance(frame, str)
        out.extend(json.loads(line) for line in frame.split("\n"))
    return out


def reply(cid: int, method: str, result: dict) -> str:
    return json.dumps({"id": cid, method: result})


def pub(channel: str, offset: int | None, data: dict | None = None) -> str:
    p: dict = {"data": data if data is not None else {"n": offset}}
    if offset is not None:
        p["offset"] = offset
    return json.dumps({"push": {"channel": channel, "pub": p}})


def connected(
    *, ping: float = 25, pong: bool = True, now: float = 0.0, **extra
) -> CentrifugoProtocol:
    proto = CentrifugoProtocol()
    cid = proto.send_connect("tok", now)
    proto.data_to_send()
    events = proto.receive_frame(
        reply(cid, "connect", {"client": "c1", "ping": ping, "pong": pong, **extra}), now
    )
    assert isinstance(events[0], Connected)
    return proto


def subscribed(
    proto: CentrifugoProtocol, channel: str = CH, *, epoch: str = "e1", offset: int = 10
) -> Subscribed:
    cid = proto.send_subscribe(channel, 0.0)
    proto.data_to_send()
    (event,) = proto.receive_frame(
        reply(
            cid,
            "subscribe",
            {"recoverable": True, "positioned": True, "epoch": epoch, "offset": offset},
        ),
        0.0,
    )
    assert isinstance(event, Subscribed)
    return event


def offsets(events) -> list[int | None]:
    return [e.offset for e in events if isinstance(e, Publication)]


# ------------------------------------------------------------------ structure


def test_core_imports_no_io_libraries():
    source = pathlib.Path(cf.__file__).read_text()
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    assert not names & {"asyncio", "aiohttp", "websockets", "anyio", "socket", "time"}


# ------------------------------------------------------------------ connect


def test_connect_command_carries_token_name_version_and_increasing_id():
    proto = CentrifugoProtocol()
    cid = proto.send_connect("secret", 0.0, name="n", version="1.2")
    assert cid == 1
    (msg,) = sent(proto)
    assert msg == {"id": 1, "connect": {"token": "secret", "name": "n", "version": "1.2"}}


def test_connect_reply_gives_connected_event_with_server_settings():
    proto = CentrifugoProtocol()
    cid = proto.send_connect("t", 0.0)
    events = proto.receive_frame(
        reply(
            cid,
            "connect",
            {
                "client": "abc",
                "version": "6",
                "ping": 25,
                "pong": True,
                "expires": True,
                "ttl": 100,
            },
        ),
        1.0,
    )
    assert events == [Connected("abc", "6", 25, True, True, 100)]
    assert proto.connected
    assert proto.client_id == "abc"


def test_connect_error_reply_is_reply_error_and_109_means_token_expired():
    proto = CentrifugoProtocol()
    cid = proto.send_connect("old", 0.0)
    (event,) = proto.receive_frame(
        json.dumps({"id": cid, "error": {"code": 109, "message": "token expired"}}), 0.0
    )
    assert isinstance(event, ReplyError)
    assert event.method == "connect"
    assert event.token_expired
    assert not event.temporary
    assert not proto.connected


def test_second_connect_on_one_connection_is_refused():
    proto = CentrifugoProtocol()
    proto.send_connect("t", 0.0)
    with pytest.raises(CentrifugoUsageError):
        proto.send_connect("t", 0.0)


def test_commands_before_connect_reply_are_refused():
    proto = CentrifugoProtocol()
    proto.send_connect("t", 0.0)
    with pytest.raises(CentrifugoUsageError):
        proto.send_subscribe(CH, 0.0)
    with pytest.raises(CentrifugoUsageError):
        proto.send_rpc("m", b"{}", 0.0)


# ------------------------------------------------------------------ batching


def test_queued_commands_are_batched_into_one_frame_with_newlines():
    proto = connected()
    proto.send_subscribe("a", 0.0)
    proto.send_subscribe("b", 0.0)
    frames = proto.data_to_send()
    assert len(frames) == 1
    lines = frames[0].split("\n")
    assert [json.loads(x)["subscribe"]["channel"] for x in lines] == ["a", "b"]
    assert proto.data_to_send() == []


def subscribe_commands(frames: list[str]) -> list[dict]:
    return [json.loads(line)["subscribe"] for frame in frames for line in frame.split("\n")]


def test_many_commands_are_batched_into_as_few_frames_as_the_frame_size_allows():
    proto = connected()
    proto.max_frame_size = 1000
    channels = [f"tradingAccount:acc-{n:04d}" for n in range(100)]
    for channel in channels:
        proto.send_subscribe(channel, 0.0)
    frames = proto.data_to_send()
    assert [c["channel"] for c in subscribe_commands(frames)] == channels  # all, in order
    assert all(len(frame.encode()) <= 1000 for frame in frames)
    assert len(frames) > 1
    # Greedy, so as few as possible in order: the next frame's first command would not fit.
    for frame, following in itertools.pairwise(frames):
        assert len(frame.encode()) + 1 + len(following.split("\n")[0].encode()) > 1000


def test_the_default_frame_size_is_centrifugos_default_message_limit():
    assert CentrifugoProtocol().max_frame_size == cf.MAX_FRAME_SIZE == 65536


def test_a_resubscribe_of_a_thousand_channels_stays_under_the_server_limit():
    proto = connected()
    for n in range(1000):
        channel = f"tradingAccount:{n:08d}-0000-4000-8000-000000000000"
        proto.send_subscribe(channel, 0.0, recover_from=StreamPosition("epoch-" + "x" * 8, n))
    frames = proto.data_to_send()
    assert 1 < len(frames) <= 3
    assert all(len(frame.encode()) <= cf.MAX_FRAME_SIZE for frame in frames)
    commands = subscribe_commands(frames)
    assert len(commands) == 1000
    assert [c["offset"] for c in commands[1:]] == list(range(1, 1000))  # each its own position
    assert all(c["recover"] for c in commands)


def test_a_command_longer_than_the_frame_size_goes_alone():
    proto = connected()
    proto.max_frame_size = 100
    proto.send_subscribe("a", 0.0)
    proto.send_rpc("m", json.dumps({"x": "y" * 200}).encode(), 0.0)
    proto.send_subscribe("b", 0.0)
    frames = proto.data_to_send()
    assert len(frames) == 3
    assert "\n" not in frames[1]
    assert len(frames[1]) > 100


def test_frame_size_counts_utf8_bytes_not_characters():
    channel = "tradingAccount:" + "é" * 20  # 20 characters, 40 bytes

    def two_subscribes(max_frame_size: int) -> list[str]:
        proto = connected()
        proto.max_frame_size = max_frame_size
        proto.send_subscribe(channel, 0.0)
        proto.send_subscribe(channel + "2", 0.0)
        return proto.data_to_send()

    (batch,) = two_subscribes(cf.MAX_FRAME_SIZE)
    assert len(batch) < len(batch.encode())
    assert len(two_subscribes(len(batch.encode()))) == 1
    assert len(two_subscribes(len(batch))) == 2  # fits by characters, not by bytes


def test_a_frame_size_below_one_byte_is_refused():
    with pytest.raises(CentrifugoUsageError):
        CentrifugoProtocol(max_frame_size=0)


def test_batched_incoming_frame_yields_events_in_wire_order():
    proto = connected()
    cid = proto.send_subscribe(CH, 0.0)
    frame = "\n".join(
        [
            reply(cid, "subscribe", {"epoch": "e", "offset": 1, "recoverable": True}),
            pub(CH, 2),
            pub(CH, 3),
        ]
    )
    events = proto.receive_frame(frame, 0.0)
    assert isinstance(events[0], Subscribed)
    assert offsets(events) == [2, 3]


def test_trailing_newline_is_tolerated_but_blank_line_inside_is_a_violation():
    proto = connected()
    subscribed(proto)
    assert offsets(proto.receive_frame(pub(CH, 11) + "\n", 0.0)) == [11]
    events = proto.receive_frame(pub(CH, 12) + "\n\n" + pub(CH, 13), 0.0)
    assert offsets(events) == [12]
    assert isinstance(events[-1], ProtocolViolation)


# ------------------------------------------------------------------ ping / pong


def test_each_ping_is_answered_with_exactly_one_pong_when_asked():
    proto = connected(pong=True)
    assert proto.receive_frame("{}", 1.0) == []
    assert proto.data_to_send() == ["{}"]
    proto.receive_frame("{}\n{}", 2.0)
    assert sent(proto) == [{}, {}]
    assert proto.pings_received == 3


def test_pings_are_not_answered_without_pong_flag():
    proto = connected(pong=False)
    proto.receive_frame("{}", 1.0)
    assert proto.data_to_send() == []


def test_pong_rides_in_the_same_frame_as_a_pending_command():
    proto = connected(pong=True)
    proto.send_rpc("m", b"{}", 0.0)
    proto.receive_frame("{}", 0.0)
    msgs = sent(proto)
    assert msgs[1] == {}
    assert "rpc" in msgs[0]


def test_the_legacy_ping_command_is_never_sent():
    proto = connected(pong=True)
    for t in range(1, 50):
        proto.receive_frame("{}", float(t))
        proto.check_timeouts(float(t))
    assert all(m == {} for m in sent(proto))


# ------------------------------------------------------------------ no-ping deadline


def test_no_ping_deadline_is_ping_interval_plus_max_delay_after_last_data():
    proto = connected(ping=25, now=100.0)
    assert proto.next_deadline() == pytest.approx(135.0)
    assert proto.check_timeouts(134.9) == []
    proto.receive_frame("{}", 130.0)
    assert proto.next_deadline() == pytest.approx(165.0)
    (event,) = proto.check_timeouts(165.0)
    assert isinstance(event, PingTimeout)
    assert event.silence == pytest.approx(35.0)


def test_any_incoming_data_counts_as_liveness():
    proto = connected(ping=25, now=0.0)
    subscribed(proto)
    proto.receive_frame(pub(CH, 11), 30.0)
    assert proto.check_timeouts(40.0) == []
    assert proto.next_deadline() == pytest.approx(65.0)


def test_bytes_of_an_unfinished_frame_count_as_liveness():
    proto = connected(ping=25, now=0.0)
    proto.note_activity(30.0)  # part of a big frame arrived, no whole frame yet
    assert proto.check_timeouts(35.0) == []
    assert proto.next_deadline() == pytest.approx(65.0)
    proto.note_activity(10.0)  # an older report never moves liveness back
    assert proto.next_deadline() == pytest.approx(65.0)
    assert isinstance(proto.check_timeouts(65.0)[0], PingTimeout)


def test_reply_deadline_waits_while_a_frame_is_arriving_then_fires():
    proto = connected(ping=0)
    cid = proto.send_subscribe(CH, 0.0, timeout=2.0)
    proto.data_to_send()
    assert proto.check_timeouts(2.0, receiving=True) == []  # the reply may be that frame
    assert proto.next_deadline() == pytest.approx(2.0 + cf.RECEIVING_RECHECK)
    assert proto.check_timeouts(2.0 + cf.RECEIVING_RECHECK) == [
        CommandTimedOut(cid, "subscribe", CH)
    ]


def test_a_frame_arriving_slowly_reply_included_keeps_the_subscribe():
    proto = connected(ping=1, now=0.0)
    cid = proto.send_subscribe(CH, 0.0, timeout=2.0)
    proto.data_to_send()
    for t in (0.5, 1.0, 1.5, 2.0, 2.25, 2.5):  # bytes keep coming, no frame completes
        proto.note_activity(t)
        assert proto.check_timeouts(t, receiving=True) == []
    (event,) = proto.receive_frame(
        reply(cid, "subscribe", {"recoverable": True, "epoch": "e", "offset": 3}), 2.6
    )
    assert isinstance(event, Subscribed)


def test_ping_timeout_is_reported_once_and_frames_are_then_ignored():
    proto = connected(ping=1)
    subscribed(proto)
    assert isinstance(proto.check_timeouts(20.0)[0], PingTimeout)
    assert proto.check_timeouts(40.0) == []
    assert proto.receive_frame(pub(CH, 11), 41.0) == []


def test_max_ping_delay_is_configurable():
    proto = CentrifugoProtocol(max_ping_delay=0.5)
    cid = proto.send_connect("t", 0.0)
    proto.receive_frame(reply(cid, "connect", {"ping": 1}), 0.0)
    assert proto.next_deadline() == pytest.approx(1.5)


def test_no_ping_interval_means_no_ping_deadline():
    proto = connected(ping=0)
    assert proto.next_deadline() is None


# ------------------------------------------------------------------ command timeouts and reply routing


def test_unanswered_command_times_out_and_its_late_reply_is_ignored():
    proto = connected(ping=0)
    cid = proto.send_rpc("m", b"{}", 0.0, timeout=2.0)
    assert proto.next_deadline() == pytest.approx(2.0)
    assert proto.check_timeouts(1.9) == []
    assert proto.check_timeouts(2.0) == [CommandTimedOut(cid, "rpc", None)]
    assert proto.receive_frame(reply(cid, "rpc", {"data": {"late": 1}}), 3.0) == []
    cid2 = proto.send_rpc("m", b"{}", 3.0)
    (event,) = proto.receive_frame(reply(cid2, "rpc", {"data": {"ok": 1}}), 3.0)
    assert isinstance(event, Reply)
    assert bytes(event.data) == b'{"ok": 1}'


def test_reply_with_unknown_id_is_ignored():
    proto = connected()
    assert proto.receive_frame(reply(999, "rpc", {"data": 1}), 0.0) == []
    assert proto.connected


def test_replies_are_matched_by_id_out_of_order():
    proto = connected()
    a = proto.send_rpc("m", b"1", 0.0)
    b = proto.send_rpc("m", b"2", 0.0)
    events = proto.receive_frame(
        reply(b, "rpc", {"data": "B"}) + "\n" + reply(a, "rpc", {"data": "A"}), 0.0
    )
    assert [(e.command_id, bytes(e.data)) for e in events] == [(b, b'"B"'), (a, b'"A"')]


def test_rpc_payload_is_embedded_json_and_must_be_valid():
    proto = connected()
    proto.send_rpc("command.trade_order.cancel", b'{"tradeOrderId":"o1"}', 0.0)
    (msg,) = sent(proto)
    assert msg["rpc"] == {"method": "command.trade_order.cancel", "data": {"tradeOrderId": "o1"}}
    with pytest.raises(CentrifugoUsageError):
        proto.send_rpc("m", b"not json", 0.0)


@pytest.mark.parametrize(
    ("code", "flag", "temporary"),
    [
        (100, False, True),
        (111, False, True),
        (113, False, True),
        (101, False, False),
        (103, False, False),
        (107, True, True),
    ],
)
def test_reply_errors_carry_temporary_from_code_or_flag(code, flag, temporary):
    proto = connected()
    cid = proto.send_rpc("m", b"{}", 0.0)
    err = {"code": code, "message": "x"}
    if flag:
        err["temporary"] = True
    (event,) = proto.receive_frame(json.dumps({"id": cid, "error": err}), 0.0)
    assert event == ReplyError(cid, "rpc", None, code, "x", temporary)
    assert error_is_temporary(code, flag) is temporary


def test_pending_commands_are_dropped_on_connection_lost():
    proto = connected()
    cid = proto.send_rpc("m", b"{}", 0.0)
    assert proto.next_deadline() == pytest.approx(proto.command_timeout)  # the rpc's deadline
    proto.connection_lost(1006)
    assert proto.next_deadline() is None
    assert proto.check_timeouts(1e9) == []  # the dropped rpc never times out
    proto.send_connect("t", 1.0)
    assert proto.receive_frame(json.dumps({"id": cid, "rpc": {"data": {}}}), 1.0) == []


# ------------------------------------------------------------------ token refresh


def test_expiring_token_asks_for_refresh_before_ttl_runs_out():
    proto = connected(ping=0, expires=True, ttl=100, now=0.0)
    assert proto.next_deadline() == pytest.approx(90.0)
    assert proto.check_timeouts(89.0) == []
    assert proto.check_timeouts(90.0) == [RefreshNeeded()]
    assert proto.check_timeouts(95.0) == []  # asked once
    cid = proto.send_refresh("fresh", 95.0)
    assert sent(proto) == [{"id": cid, "refresh": {"token": "fresh"}}]
    (event,) = proto.receive_frame(reply(cid, "refresh", {"expires": True, "ttl": 4}), 96.0)
    assert isinstance(event, Reply)
    assert proto.next_deadline() == pytest.approx(98.0)  # margin at most half the ttl


def test_refresh_error_109_is_reported_as_token_expired():
    proto = connected(ping=0, expires=True, ttl=100)
    cid = proto.send_refresh("stale", 0.0)
    (event,) = proto.receive_frame(
        json.dumps({"id": cid, "error": {"code": 109, "message": "e"}}), 0.0
    )
    assert isinstance(event, ReplyError)
    assert event.method == "refresh"
    assert event.token_expired


def test_connect_without_expiry_never_asks_for_refresh():
    proto = connected(ping=0)
    assert proto.next_deadline() is None
    assert proto.check_timeouts(1e9) == []


def test_each_refresh_reply_schedules_the_next_refresh_from_its_own_ttl():
    proto = connected(ping=0, expires=True, ttl=60, now=0.0)
    now = 0.0
    for ttl in (60, 30, 120):
        due = proto.next_deadline()
        assert due is not None
        assert proto.check_timeouts(due - 0.01) == []
        assert proto.check_timeouts(due) == [RefreshNeeded()]
        now = due
        cid = proto.send_refresh("fresh", now)
        proto.data_to_send()
        proto.receive_frame(reply(cid, "refresh", {"expires": True, "ttl": ttl}), now)
        assert proto.next_deadline() == pytest.approx(now + ttl - 10.0)


def test_refresh_reply_without_expiry_stops_asking_for_refresh():
    proto = connected(ping=0, expires=True, ttl=100, now=0.0)
    assert proto.check_timeouts(90.0) == [RefreshNeeded()]
    cid = proto.send_refresh("forever", 90.0)
    proto.receive_frame(reply(cid, "refresh", {}), 91.0)
    assert proto.next_deadline() is None
    assert proto.check_timeouts(1e9) == []


def test_unanswered_refresh_times_out_as_a_refresh_command():
    proto = connected(ping=0, expires=True, ttl=100, now=0.0)
    assert proto.check_timeouts(90.0) == [RefreshNeeded()]
    cid = proto.send_refresh("fresh", 90.0, timeout=5.0)
    assert proto.check_timeouts(95.0) == [CommandTimedOut(cid, "refresh", None)]


def test_no_refresh_is_asked_after_the_connection_is_lost():
    proto = connected(ping=0, expires=True, ttl=100, now=0.0)
    proto.connection_lost(3005, "connection expired")
    assert proto.next_deadline() is None
    assert proto.check_timeouts(1e9) == []


# ------------------------------------------------------------------ subscribe, positions, recovery


def test_first_subscribe_records_position_and_is_not_a_gap():
    proto = connected()
    event = subscribed(proto, epoch="e1", offset=10)
    assert not event.gap
    assert proto.positions == {CH: StreamPosition("e1", 10)}
    assert proto.is_subscribed(CH)


def test_subscribe_command_without_position_does_not_ask_recovery():
    proto = connected()
    proto.send_subscribe(CH, 0.0)
    assert sent(proto) == [{"id": 2, "subscribe": {"channel": CH}}]


def test_live_publications_advance_the_position():
    proto = connected()
    subscribed(proto)
    events = proto.receive_frame(pub(CH, 11) + "\n" + pub(CH, 12), 0.0)
    assert offsets(events) == [11, 12]
    assert [bytes(e.data) for e in events] == [b'{"n": 11}', b'{"n": 12}']
    assert proto.positions[CH] == ("e1", 12)


def test_duplicate_live_publication_is_dropped():
    proto = connected()
    subscribed(proto)
    proto.receive_frame(pub(CH, 11), 0.0)
    assert proto.receive_frame(pub(CH, 11) + "\n" + pub(CH, 5), 0.0) == []
    assert proto.duplicates_dropped == 2


def test_offset_gap_while_connected_is_reported_before_the_publication():
    proto = connected()
    subscribed(proto)
    events = proto.receive_frame(pub(CH, 14), 0.0)
    assert events[0] == PositionGap(CH, 11, 14)
    assert offsets(events) == [14]
    assert proto.positions[CH].offset == 14


def test_publication_without_offset_is_delivered_without_position():
    proto = connected()
    cid = proto.send_subscribe(CH, 0.0)
    proto.receive_frame(reply(cid, "subscribe", {}), 0.0)
    events = proto.receive_frame(pub(CH, None), 0.0)
    assert offsets(events) == [None]
    assert CH not in proto.positions


def test_publications_for_unsubscribed_or_unknown_channels_are_ignored():
    proto = connected()
    subscribed(proto)
    assert proto.receive_frame(pub("other", 1), 0.0) == []
    proto.send_unsubscribe(CH)
    assert proto.receive_frame(pub(CH, 11), 0.0) == []


def test_publication_before_subscribe_reply_is_ignored():
    proto = connected()
    proto.send_subscribe(CH, 0.0)
    assert proto.receive_frame(pub(CH, 1), 0.0) == []


def test_resubscribe_after_reconnect_asks_recovery_from_last_applied_position():
    proto = connected()
    subscribed(proto)
    proto.receive_frame(pub(CH, 11), 0.0)
    proto.connection_lost(3001, "shutdown")
    assert not proto.is_subscribed(CH)
    assert proto.positions[CH] == ("e1", 11)
    proto2 = proto
    cid = proto2.send_connect("t", 1.0)
    proto2.receive_frame(reply(cid, "connect", {"ping": 25, "pong": True}), 1.0)
    proto2.data_to_send()
    proto2.send_subscribe(CH, 1.0)
    (msg,) = sent(proto2)
    assert msg["subscribe"] == {"channel": CH, "recover": True, "epoch": "e1", "offset": 11}


def reconnect(proto: CentrifugoProtocol) -> None:
    proto.connection_lost(3001, "shutdown")
    cid = proto.send_connect("t", 1.0)
    proto.receive_frame(reply(cid, "connect", {"ping": 25, "pong": True}), 1.0)
    proto.data_to_send()


def test_recovered_publications_come_in_offset_order_deduplicated():
    proto = connected()
    subscribed(proto)
    proto.receive_frame(pub(CH, 11), 0.0)
    reconnect(proto)
    cid = proto.send_subscribe(CH, 1.0)
    result = {
        "recovered": True,
        "was_recovering": True,
        "recoverable": True,
        "epoch": "e1",
        "offset": 14,
        "publications": [
            {"data": {"n": 13}, "offset": 13},
            {"data": {"n": 10}, "offset": 10},
            {"data": {"n": 11}, "offset": 11},
            {"data": {"n": 12}, "offset": 12},
            {"data": {"n": 14}, "offset": 14},
        ],
    }
    (event,) = proto.receive_frame(reply(cid, "subscribe", result), 1.0)
    assert isinstance(event, Subscribed)
    assert event.recovered
    assert not event.gap
    assert [p.offset for p in event.publications] == [12, 13, 14]
    assert proto.positions[CH] == ("e1", 14)
    assert offsets(proto.receive_frame(pub(CH, 14) + "\n" + pub(CH, 15), 1.0)) == [15]


def test_recovered_false_is_a_gap_and_takes_the_new_position():
    proto = connected()
    subscribed(proto)
    reconnect(proto)
    cid = proto.send_subscribe(CH, 1.0)
    (event,) = proto.receive_frame(
        reply(
            cid,
            "subscribe",
            {"was_recovering": True, "recoverable": True, "epoch": "e2", "offset": 3},
        ),
        1.0,
    )
    assert event.gap
    assert event.was_recovering
    assert not event.recovered
    assert proto.positions[CH] == ("e2", 3)
    assert offsets(proto.receive_frame(pub(CH, 4), 1.0)) == [4]


def test_recovered_but_missing_the_tail_is_still_a_gap():
    proto = connected()
    subscribed(proto)
    reconnect(proto)
    cid = proto.send_subscribe(CH, 1.0)
    result = {
        "recovered": True,
        "epoch": "e1",
        "offset": 13,
        "publications": [{"data": 1, "offset": 11}],
    }
    (event,) = proto.receive_frame(reply(cid, "subscribe", result), 1.0)
    assert event.gap
    assert proto.positions[CH] == ("e1", 13)


def test_recovery_with_holes_in_the_replay_is_a_gap():
    proto = connected()
    subscribed(proto)
    reconnect(proto)
    cid = proto.send_subscribe(CH, 1.0)
    result = {
        "recovered": True,
        "epoch": "e1",
        "offset": 13,
        "publications": [{"data": 1, "offset": 11}, {"data": 1, "offset": 13}],
    }
    (event,) = proto.receive_frame(reply(cid, "subscribe", result), 1.0)
    assert event.gap


def test_resubscribe_of_unpositioned_channel_is_a_gap():
    proto = connected()
    cid = proto.send_subscribe(CH, 0.0)
    proto.receive_frame(reply(cid, "subscribe", {}), 0.0)
    reconnect(proto)
    cid = proto.send_subscribe(CH, 1.0)
    (event,) = proto.receive_frame(reply(cid, "subscribe", {}), 1.0)
    assert event.gap


def test_explicit_recover_from_overrides_remembered_position():
    proto = connected()
    proto.send_subscribe(CH, 0.0, recover_from=StreamPosition("ex", 7))
    (msg,) = sent(proto)
    assert msg["subscribe"] == {"channel": CH, "recover": True, "epoch": "ex", "offset": 7}


def test_subscribe_error_leaves_channel_unsubscribed_and_names_it():
    proto = connected()
    cid = proto.send_subscribe(CH, 0.0)
    (event,) = proto.receive_frame(
        json.dumps({"id": cid, "error": {"code": 103, "message": "permission denied"}}), 0.0
    )
    assert event == ReplyError(cid, "subscribe", CH, 103, "permission denied", False)
    assert not proto.is_subscribed(CH)
    proto.send_subscribe(CH, 0.0)  # may try again


def test_a_reply_to_a_subscribe_sent_before_an_unsubscribe_is_ignored_success_or_error():
    proto = connected()
    first = proto.send_subscribe(CH, 0.0)
    proto.send_unsubscribe(CH)
    second = proto.send_subscribe(CH, 0.0)  # wanted again: this subscribe is the one that counts
    assert proto.awaiting_reply(first)
    assert proto.awaiting_reply(second)
    error = json.dumps({"id": first, "error": {"code": 103, "message": "permission denied"}})
    assert proto.receive_frame(error, 0.0) == []  # the stale refusal changes nothing
    assert not proto.awaiting_reply(first)
    assert proto.is_subscribing(CH)
    (event,) = proto.receive_frame(reply(second, "subscribe", {"epoch": "e", "offset": 3}), 0.0)
    assert isinstance(event, Subscribed)
    assert event.command_id == second
    assert proto.is_subscribed(CH)
    assert not proto.is_subscribing(CH)

    stale = proto.send_subscribe("other", 0.0)
    proto.send_unsubscribe("other")
    assert proto.receive_frame(reply(stale, "subscribe", {"epoch": "e"}), 0.0) == []
    assert not proto.is_subscribed("other")
    assert not proto.awaiting_reply(stale)


def test_has_data_to_send_says_whether_frames_are_queued():
    proto = connected()
    assert not proto.has_data_to_send
    proto.send_subscribe(CH, 0.0)
    assert proto.has_data_to_send
    proto.data_to_send()
    assert not proto.has_data_to_send


def test_subscribe_timeout_frees_the_channel_for_a_new_attempt():
    proto = connected(ping=0)
    cid = proto.send_subscribe(CH, 0.0, timeout=1.0)
    assert proto.check_timeouts(1.0) == [CommandTimedOut(cid, "subscribe", CH)]
    proto.send_subscribe(CH, 1.0)


def test_double_subscribe_is_refused():
    proto = connected()
    proto.send_subscribe(CH, 0.0)
    with pytest.raises(CentrifugoUsageError):
        proto.send_subscribe(CH, 0.0)


def test_unsubscribe_reply_is_a_reply_and_forgets_position():
    proto = connected()
    subscribed(proto)
    cid = proto.send_unsubscribe(CH)
    assert sent(proto) == [{"id": cid, "unsubscribe": {"channel": CH}}]
    (event,) = proto.receive_frame(reply(cid, "unsubscribe", {}), 0.0)
    assert isinstance(event, Reply)
    assert CH not in proto.positions


# ------------------------------------------------------------------ pushes


@pytest.mark.parametrize(
    ("code", "resubscribe"), [(0, False), (2000, False), (2499, False), (2500, True), (2501, True)]
)
def test_unsubscribe_push_codes_below_2500_stay_unsubscribed(code, resubscribe):
    proto = connected()
    subscribed(proto)
    frame = json.dumps({"push": {"channel": CH, "unsubscribe": {"code": code, "reason": "r"}}})
    (event,) = proto.receive_frame(frame, 0.0)
    assert event == Unsubscribed(CH, code, "r", resubscribe)
    assert not proto.is_subscribed(CH)
    assert (CH in proto.positions) is resubscribe
    assert proto.receive_frame(pub(CH, 11), 0.0) == []


def test_disconnect_push_gives_disconnected_with_code_decision():
    proto = connected()
    (event,) = proto.receive_frame(
        json.dumps({"push": {"disconnect": {"code": 3503, "reason": "bye"}}}), 0.0
    )
    assert event == Disconnected(3503, "bye", False)


def test_unknown_push_kinds_and_fields_are_ignored():
    proto = connected()
    subscribed(proto)
    frames = [
        json.dumps({"push": {"channel": CH, "join": {"info": {"user": "u"}}}}),
        json.dumps({"push": {"channel": CH, "brand_new": {"x": 1}}}),
        json.dumps(
            {
                "push": {
                    "channel": CH,
                    "pub": {"data": {}, "offset": 11, "tags": {"a": "b"}, "extra": [1]},
                },
                "z": 1,
            }
        ),
        json.dumps({"id": 0, "error": {"code": 1}}),
    ]
    events = proto.receive_frame("\n".join(frames), 0.0)
    assert offsets(events) == [11]
    assert proto.connected


# ------------------------------------------------------------------ bad frames


@pytest.mark.parametrize(
    "frame",
    [
        "",
        " ",
        "not json",
        "null",
        "[1]",
        '{"id": "one"}',
        '{"push": {"channel": 5}}',
        '{"push": {"channel": "c", "pub": {"offset": "x"}}}',
        '{"push": {"channel": "c", "pub": {"offset": -1}}}',
        "[" * 30_000 + "]" * 30_000,
        '{"push": {"channel": "c", "junk": ' + "[" * 30_000 + "]" * 30_000 + "}}",
        '{"push": {"channel": "c", "pub": {"tags": ' + "[" * 30_000 + "]" * 30_000 + "}}}",
        '{"push": {"channel": "c", "pub": {"data": ' + "[" * 30_000 + "]" * 29_999 + "}}}",
        '{"push": {"channel": "c", "pub": {"data": ["' + "[" * 30_000 + "]}}}",
        b"\xff\xfe{}",
        '{"id": -3}',
    ],
)
def test_bad_frames_become_a_protocol_violation(frame):
    proto = connected()
    events = proto.receive_frame(frame, 0.0)
    assert len(events) == 1
    assert isinstance(events[0], ProtocolViolation)
    assert proto.receive_frame("{}", 0.0) == []  # broken until the connection is replaced


DEEP = "[" * 30_000 + "]" * 30_000


def test_live_publication_with_too_deep_data_is_passed_on_as_undecodable():
    proto = connected()
    subscribed(proto, offset=10)
    bad = json.dumps({"push": {"channel": CH, "pub": {"data": "@", "offset": 11}}})
    frame = "\n".join([bad.replace('"@"', DEEP), pub(CH, 12)])
    events = proto.receive_frame(frame, 0.0)
    assert [(type(e), e.offset) for e in events] == [(Publication, 11), (Publication, 12)]
    assert bytes(events[0].data) == cf.UNDECODABLE_DATA
    assert msgspec.json.decode(events[1].data) == {"n": 12}
    assert proto.positions[CH] == StreamPosition("e1", 12)
    assert proto.undecodable_publications == 1
    assert proto.connected  # no violation: the link stays up


def test_recovered_publication_with_too_deep_data_is_passed_on_and_the_rest_kept():
    proto = connected()
    subscribed(proto, offset=10)
    proto.connection_lost(3001)
    connect_id = proto.send_connect("tok", 1.0)
    proto.data_to_send()
    proto.receive_frame(reply(connect_id, "connect", {"ping": 25}), 1.0)
    cid = proto.send_subscribe(CH, 1.0)
    proto.data_to_send()
    result = {
        "recovered": True,
        "recoverable": True,
        "epoch": "e1",
        "offset": 13,
        "publications": [
            {"data": {"n": 11}, "offset": 11},
            {"offset": 12, "data": "@"},
            {"data": {"n": 13, "s": 'q\\"[{'}, "offset": 13},
        ],
    }
    frame = reply(cid, "subscribe", result).replace('"@"', '{"metadata": {}, "data": ' + DEEP + "}")
    (event,) = proto.receive_frame(frame, 1.0)
    assert isinstance(event, Subscribed)
    assert not event.gap
    assert [p.offset for p in event.publications] == [11, 12, 13]
    assert bytes(event.publications[1].data) == cf.UNDECODABLE_DATA
    assert msgspec.json.decode(event.publications[2].data) == {"n": 13, "s": 'q\\"[{'}
    assert proto.positions[CH] == StreamPosition("e1", 13)


def test_data_deep_but_within_the_decoder_limit_is_delivered_as_is():
    proto = connected()
    subscribed(proto, offset=10)
    nested = "[" * 300 + "]" * 300
    frame = json.dumps({"push": {"channel": CH, "pub": {"data": "@", "offset": 11}}})
    (event,) = proto.receive_frame(frame.replace('"@"', nested), 0.0)
    assert bytes(event.data) == nested.encode()
    assert proto.undecodable_publications == 0


def test_violation_reason_never_echoes_frame_contents():
    proto = connected()
    (event,) = proto.receive_frame('{"connect": {"token": "s3cret-token"', 0.0)
    assert "s3cret" not in event.reason


def test_events_before_a_bad_message_in_a_batch_are_kept():
    proto = connected()
    subscribed(proto)
    events = proto.receive_frame(pub(CH, 11) + "\nnull\n" + pub(CH, 12), 0.0)
    assert offsets(events) == [11]
    assert isinstance(events[-1], ProtocolViolation)
    assert proto.positions[CH].offset == 11


def test_a_new_connection_clears_the_broken_state():
    proto = connected()
    subscribed(proto)
    proto.receive_frame("garbage", 0.0)
    reconnect(proto)
    assert proto.connected


def test_bytes_frames_are_accepted_when_utf8():
    proto = connected()
    subscribed(proto)
    assert offsets(proto.receive_frame(pub(CH, 11).encode(), 0.0)) == [11]


# ------------------------------------------------------------------ close codes and backoff


@pytest.mark.parametrize(
    ("code", "reconnect"),
    [
        (None, True),
        (1000, True),
        (1006, True),
        (1009, True),
        (2999, True),
        (3000, True),
        (3001, True),
        (3005, True),
        (3012, True),
        (3499, True),
        (3500, False),
        (3501, False),
        (3503, False),
        (3999, False),
        (4000, True),
        (4499, True),
        (4500, False),
        (4999, False),
    ],
)
def test_close_code_ranges_decide_reconnect(code, reconnect):
    assert close_code_reconnects(code) is reconnect
    proto = connected()
    assert proto.connection_lost(code, "r") == Disconnected(code, "r", reconnect)


def test_reconnect_delays_are_full_jitter_within_bounds():
    rng = random.Random(7)
    gen = reconnect_delays(0.1, 20.0, rng)
    delays = [next(gen) for _ in range(200)]
    for attempt, d in enumerate(delays):
        assert 0.1 <= d <= min(20.0, 0.1 + 0.1 * 2**attempt) + 1e-9
    assert max(delays) <= 20.0
    assert max(delays[20:]) > 10  # the cap is reached eventually, not stuck low


def test_reconnect_delays_first_attempt_is_small_and_fresh_generator_resets():
    rng = random.Random(1)
    assert all(next(reconnect_delays(0.1, 20.0, rng)) <= 0.2 for _ in range(100))


def test_reconnect_delays_with_extreme_min_never_overflow():
    gen = reconnect_delays(1e300, 1e308, random.Random(0))
    for _ in range(100):
        assert next(gen) <= 1e308


def test_protocol_repr_and_events_are_plain_data():
    proto = connected()
    assert "connected" in repr(proto)
    p = Publication(CH, msgspec.Raw(b"1"), 3)
    assert p.offset == 3
