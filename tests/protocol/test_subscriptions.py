"""Plain synchronous tests of the subscription policy over a real (sans-I/O) Centrifugo core."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cadenza_async.protocol.centrifugo import (
    CentrifugoProtocol,
    Event,
    ReplyError,
    Subscribed,
    Unsubscribed,
)
from cadenza_async.protocol.subscriptions import RESUBSCRIBE_WINDOW, Subscriptions

A = "tradingAccount:a"
B = "tradingAccount:b"
C = "tradingAccount:c"


class Link:
    """A core and its policy, the server's side played by hand: commands out, replies in."""

    def __init__(self, window: int = RESUBSCRIBE_WINDOW) -> None:
        self.core = CentrifugoProtocol(command_timeout=1e9)
        self.subs: Subscriptions[str] = Subscriptions(self.core, window=window)
        self.now = 0.0
        self.subscribes: dict[int, dict[str, Any]] = {}  # sent, not answered: id -> command
        self.unsubscribes: list[str] = []
        self.gaps: list[str] = []
        self.resolved: list[str] = []
        self.refusals: list[tuple[str, bool, list[str]]] = []

    def read_commands(self) -> None:
        for frame in self.core.data_to_send():
            for line in frame.split("\n"):
                msg = json.loads(line)
                if "subscribe" in msg:
                    self.subscribes[msg["id"]] = msg["subscribe"]
                elif "unsubscribe" in msg:
                    self.unsubscribes.append(msg["unsubscribe"]["channel"])

    def connect(self) -> None:
        cid = self.core.send_connect("tok", self.now)
        self.core.data_to_send()
        self.core.receive_frame(json.dumps({"id": cid, "connect": {"client": "c"}}), self.now)
        self.subs.connected(self.now)
        self.read_commands()

    def lose(self, *, poisoned: bool = False, too_big: bool = False) -> None:
        self.core.connection_lost(None)
        self.subscribes.clear()
        self.subs.connection_lost(connected=True, poisoned=poisoned, too_big=too_big)

    def receive(self, message: dict[str, Any]) -> None:
        """One frame from the server, its events applied as the stream applies them."""
        for event in self.core.receive_frame(json.dumps(message), self.now):
            self.apply(event)
        if self.subs.busy:
            self.subs.pump(self.now)
        self.read_commands()

    def apply(self, event: Event) -> None:
        if isinstance(event, Subscribed):
            answered = self.subs.subscribed(event, self.now)
            if answered.gap:
                self.gaps.append(event.channel)
            self.resolved += answered.callers
        elif isinstance(event, ReplyError):
            assert event.channel is not None
            refusal = self.subs.refused(event.command_id, event.channel, event.code, self.now)
            if refusal.resubscribed:
                self.gaps.append(event.channel)
            else:
                self.refusals.append((event.channel, refusal.was_wanted, refusal.callers))
        elif isinstance(event, Unsubscribed):
            verdict = self.subs.unsubscribed(event, self.now)
            if not verdict.resubscribed:
                self.gaps.append(event.channel)
                self.refusals.append((event.channel, verdict.was_wanted, verdict.callers))

    def command_for(self, channel: str) -> int:
        (cid,) = [cid for cid, cmd in self.subscribes.items() if cmd["channel"] == channel]
        return cid

    def answer(self, channel: str, *, epoch: str = "e", offset: int = 1, **extra: Any) -> None:
        cid = self.command_for(channel)
        del self.subscribes[cid]
        result = {"recoverable": True, "epoch": epoch, "offset": offset, **extra}
        self.receive({"id": cid, "subscribe": result})

    def refuse(self, channel: str, code: int) -> None:
        cid = self.command_for(channel)
        del self.subscribes[cid]
        self.receive({"id": cid, "error": {"code": code, "message": "no"}})

    def answer_all(self) -> None:
        while self.subscribes:
            self.answer(self.subscribes[min(self.subscribes)]["channel"])

    def want(self, channel: str) -> bool:
        queued = self.subs.want(channel, self.now)
        self.read_commands()
        return queued


# ------------------------------------------------------------------ wanting and releasing


def test_a_channel_wanted_while_disconnected_is_subscribed_at_the_next_connect():
    link = Link()
    assert link.want(A) is False  # nothing to send yet
    assert link.subs.wanted == {A}
    link.connect()
    assert [cmd["channel"] for cmd in link.subscribes.values()] == [A]
    link.answer(A)
    assert link.core.is_subscribed(A)


def test_a_channel_wanted_while_connected_is_subscribed_at_once_and_wanting_twice_sends_once():
    link = Link()
    link.connect()
    assert link.want(A) is True
    assert link.want(A) is False
    assert [cmd["channel"] for cmd in link.subscribes.values()] == [A]


def test_a_reconnect_resubscribes_each_channel_from_its_own_position():
    link = Link()
    link.connect()
    link.want(A)
    link.want(B)
    link.answer(A, epoch="ea", offset=5)
    link.answer(B, epoch="eb", offset=9)
    link.lose()
    link.connect()
    commands = sorted(link.subscribes.values(), key=lambda cmd: cmd["channel"])
    assert commands == [
        {"channel": A, "recover": True, "epoch": "ea", "offset": 5},
        {"channel": B, "recover": True, "epoch": "eb", "offset": 9},
    ]


def test_release_unsubscribes_a_live_channel_and_a_later_want_starts_from_now():
    link = Link()
    link.connect()
    link.want(A)
    link.answer(A, offset=7)
    assert link.subs.release(A, link.now) is True
    link.read_commands()
    assert link.unsubscribes == [A]
    assert not link.subs.is_wanted(A)
    assert link.subs.live_since(A) is None
    link.want(A)
    (command,) = link.subscribes.values()
    assert command == {"channel": A}  # no recovery: its position was forgotten


def test_release_while_disconnected_keeps_the_channel_out_of_the_next_connect():
    link = Link()
    link.connect()
    link.want(A)
    link.want(B)
    link.answer_all()
    link.lose()
    assert link.subs.release(A, link.now) is True
    link.connect()
    assert [cmd["channel"] for cmd in link.subscribes.values()] == [B]
    assert link.unsubscribes == []


def test_release_fails_nobody_waiting_and_keeps_the_channel_until_the_caller_leaves():
    link = Link()
    link.connect()
    assert link.subs.wait(A, "caller-1", link.now) is True
    assert link.subs.release(A, link.now) is False
    assert link.subs.is_wanted(A)
    assert link.subs.has_callers(A)
    link.subs.stop_waiting(A, "caller-1")
    assert link.subs.release(A, link.now) is True
    assert not link.subs.is_wanted(A)


def test_a_subscribe_answered_resolves_its_callers_and_marks_the_channel_live_once():
    link = Link()
    link.connect()
    link.subs.wait(A, "caller-1", link.now)
    link.subs.wait(A, "caller-2", link.now)
    link.read_commands()
    link.now = 5.0
    link.answer(A)
    assert link.resolved == ["caller-1", "caller-2"]
    assert link.subs.live_since(A) == 5.0
    link.lose()
    link.now = 9.0
    link.connect()
    link.answer(A, offset=1, recovered=True)
    assert link.subs.live_since(A) == 5.0  # a recovered reconnect keeps the time


def test_drop_hands_back_the_callers_and_fail_all_hands_back_every_one():
    link = Link()
    link.connect()
    link.subs.wait(A, "a-1", link.now)
    link.subs.wait(B, "b-1", link.now)
    link.subs.wait(B, "b-2", link.now)
    assert link.subs.drop(A, link.now) == ["a-1"]
    assert not link.subs.is_wanted(A)
    assert sorted(link.subs.fail_all()) == ["b-1", "b-2"]
    assert not link.subs.has_callers(B)
    assert link.subs.is_wanted(B)  # failing the callers does not give the channel up


# ------------------------------------------------------------------ the window


def test_a_connect_lets_out_a_window_of_subscribes_and_each_reply_lets_the_next_go():
    link = Link(window=2)
    for channel in (C, B, A):
        link.want(channel)
    link.connect()
    assert sorted(cmd["channel"] for cmd in link.subscribes.values()) == [A, B]
    assert link.subs.queue == (C,)
    link.answer(A)
    assert sorted(cmd["channel"] for cmd in link.subscribes.values()) == [B, C]
    link.answer_all()
    assert all(link.core.is_subscribed(ch) for ch in (A, B, C))


def test_a_channel_wanted_during_a_resubscription_goes_ahead_of_the_queue():
    link = Link(window=1)
    link.want(A)
    link.want(B)
    link.connect()
    link.want(C)  # the window is full: it waits, first in line
    assert link.subs.queue == (C, B)
    link.answer(A)
    assert [cmd["channel"] for cmd in link.subscribes.values()] == [C]


def test_a_1009_during_a_resubscription_divides_the_window_by_8_and_success_doubles_it_back():
    link = Link(window=64)
    channels = [f"tradingAccount:{n:03d}" for n in range(100)]
    for channel in channels:
        link.want(channel)
    link.connect()
    assert len(link.subscribes) == 64
    link.lose(poisoned=True, too_big=True)
    assert link.subs.window == 8
    link.connect()
    assert len(link.subscribes) == 8
    link.lose(poisoned=True, too_big=True)
    assert link.subs.window == 1
    link.lose(poisoned=True, too_big=True)  # nothing was waiting: no smaller
    assert link.subs.window == 1
    link.connect()
    peak = 0
    while link.subscribes:
        peak = max(peak, len(link.subscribes))
        link.answer_all()
    assert peak == 1
    assert all(link.core.is_subscribed(ch) for ch in channels)
    assert link.subs.window == 2  # once all went through, it doubles
    link.lose()
    link.connect()
    link.answer_all()
    assert link.subs.window == 4


def test_a_1009_with_no_subscribe_waiting_leaves_the_window_alone():
    link = Link(window=16)
    link.connect()
    link.want(A)
    link.answer(A)
    link.lose(poisoned=True, too_big=True)
    assert link.subs.window == 16


def test_a_reply_no_event_reports_frees_its_place_in_the_window():
    link = Link(window=1)
    link.want(A)
    link.want(B)
    link.connect()
    assert link.subs.in_flight == 1
    link.subs.release(A, link.now)  # its subscribe is on the wire: the reply will be ignored
    link.read_commands()
    assert link.subs.queue == (B,)
    link.answer(A)  # no event, but the place is free: B goes
    assert [cmd["channel"] for cmd in link.subscribes.values()] == [B]


def test_the_window_must_be_at_least_one():
    with pytest.raises(ValueError, match="window"):
        Subscriptions(CentrifugoProtocol(), window=0)


# ------------------------------------------------------------------ refusals and server unsubscribes


def test_a_refusal_103_drops_the_channel_and_hands_back_its_callers_to_fail():
    link = Link()
    link.connect()
    link.subs.wait(A, "caller", link.now)
    link.read_commands()
    link.refuse(A, 103)
    assert link.refusals == [(A, True, ["caller"])]
    assert not link.subs.is_wanted(A)
    assert not link.subs.has_callers(A)
    link.lose()
    link.connect()
    assert link.subscribes == {}  # not asked for again


def test_a_refusal_112_resubscribes_without_recovery_with_a_gap_and_keeps_the_callers():
    link = Link()
    link.connect()
    link.want(A)
    link.answer(A, epoch="e", offset=4)
    link.lose()
    link.connect()
    link.subs.wait(A, "caller", link.now)
    assert link.subscribes[link.command_for(A)]["recover"] is True
    link.refuse(A, 112)
    assert link.gaps == [A]
    assert link.refusals == []
    assert link.subs.is_wanted(A)
    assert link.subscribes[link.command_for(A)] == {"channel": A}  # from now, no recovery
    link.answer(A)
    assert link.resolved == ["caller"]


@pytest.mark.parametrize(("code", "again"), [(2500, True), (3000, True), (2000, False)])
def test_a_server_unsubscribe_resubscribes_when_its_code_asks_else_drops_with_a_gap(code, again):
    link = Link()
    link.connect()
    link.want(A)
    link.answer(A, offset=3)
    link.receive({"push": {"channel": A, "unsubscribe": {"code": code, "reason": "r"}}})
    assert link.subs.is_wanted(A) is again
    if again:
        assert link.subscribes[link.command_for(A)]["recover"] is True
        assert link.gaps == []
    else:
        assert link.subscribes == {}
        assert link.gaps == [A]
        assert link.subs.live_since(A) is None


# ------------------------------------------------------------------ poisoned positions


def test_a_channel_poisoned_twice_at_one_position_resubscribes_without_recovery_and_a_gap():
    link = Link()
    link.connect()
    link.want(A)
    link.want(B)
    link.answer(A, offset=4)
    link.answer(B, offset=6)
    link.lose(poisoned=True)
    link.connect()
    assert all(cmd["recover"] for cmd in link.subscribes.values())
    link.answer(A, offset=4, recovered=True)  # A recovers (B's recovery kills the link)
    link.lose(poisoned=True)
    ended_stuck = link.subs.poison.stuck
    assert ended_stuck == {B}
    link.connect()
    assert link.subscribes[link.command_for(A)]["recover"] is True
    assert "recover" not in link.subscribes[link.command_for(B)]
    link.answer(B, offset=9)
    assert link.gaps == [B]


def test_a_clean_end_after_a_connect_clears_the_poisoned_positions():
    link = Link()
    link.connect()
    link.want(A)
    link.answer(A, offset=4)
    link.lose(poisoned=True)
    link.connect()
    link.lose()  # connected, ended for another reason
    link.connect()
    link.lose(poisoned=True)
    assert link.subs.poison.stuck == frozenset()


def test_connection_lost_reports_the_channels_that_became_stuck_and_the_new_window():
    link = Link(window=8)
    link.want(A)
    link.connect()
    link.answer(A, offset=2)
    assert link.subs.connection_lost(connected=True, poisoned=True, too_big=False).stuck == []
    link.core.connection_lost(None)
    link.connect()
    ended = link.subs.connection_lost(connected=True, poisoned=True, too_big=True)
    assert (ended.stuck, ended.window) == ([A], 1)


def test_the_policy_is_sans_io_and_clockless():
    import ast
    import pathlib

    import cadenza_async.protocol.subscriptions as module

    path = pathlib.Path(module.__file__)
    assert path.parent.name == "protocol"  # so tests/protocol/test_no_io.py checks it too
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    assert not roots & {"asyncio", "aiohttp", "websockets", "anyio", "time", "socket", "random"}
