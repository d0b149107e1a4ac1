"""Random interleavings of wants, releases, waiting callers, replies, refusals, reconnects and 1009s.

The machine plays the server: it reads every command the core writes, keeps
the subscribes it has not answered yet (per connection), and answers them
(or refuses them, or unsubscribes a channel) in any order. It keeps its own
record of each caller waiting for a channel. The invariants come from that
record and from the wire, not from the policy's own counters:

* after a connect, every wanted channel is subscribed, waiting for its reply
  or queued;
* the subscribes on the wire without a reply never outnumber the window;
* a channel refused (other than 112) is not wanted any more;
* a release never fails a waiting caller: a caller ends only with its
  channel subscribed, refused, dropped or the stream failed.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cadenza_async.protocol.centrifugo import (
    CentrifugoProtocol,
    Event,
    ReplyError,
    Subscribed,
    Unsubscribed,
)
from cadenza_async.protocol.subscriptions import Subscriptions

CHANNELS = [f"tradingAccount:{n}" for n in range(6)]
CEILING = 4

channels = st.sampled_from(CHANNELS)
picks = st.integers(min_value=0, max_value=1_000)


class SubscriptionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.core = CentrifugoProtocol(command_timeout=1e9)
        self.subs: Subscriptions[int] = Subscriptions(self.core, window=CEILING)
        self.now = 0.0
        self.connected = False
        self.on_wire: dict[int, str] = {}  # subscribes sent and not answered, this connection
        self.live: set[str] = set()  # subscribed on the server, this connection
        self.epochs: dict[str, int] = {}
        self.next_caller = 0
        self.waiting: dict[int, str] = {}  # caller -> channel, by this machine's record
        self.ended: dict[int, str] = {}  # caller -> how it ended

    # ------------------------------------------------------------------ plumbing

    def tick(self) -> None:
        self.now += 1.0

    def read_commands(self) -> None:
        for frame in self.core.data_to_send():
            for line in frame.split("\n"):
                msg = json.loads(line)
                if "subscribe" in msg:
                    self.on_wire[msg["id"]] = msg["subscribe"]["channel"]
                elif "unsubscribe" in msg:
                    self.live.discard(msg["unsubscribe"]["channel"])

    def receive(self, message: dict[str, Any]) -> None:
        for event in self.core.receive_frame(json.dumps(message), self.now):
            self.apply(event)
        if self.subs.busy:
            self.subs.pump(self.now)
        self.read_commands()

    def end_callers(self, callers: list[int], channel: str, how: str) -> None:
        for caller in callers:
            assert self.waiting.pop(caller) == channel, (caller, channel)
            self.ended[caller] = how

    def apply(self, event: Event) -> None:
        if isinstance(event, Subscribed):
            answered = self.subs.subscribed(event, self.now)
            assert self.core.is_subscribed(event.channel)
            self.end_callers(answered.callers, event.channel, "subscribed")
        elif isinstance(event, ReplyError):
            assert event.channel is not None
            refusal = self.subs.refused(event.command_id, event.channel, event.code, self.now)
            if refusal.resubscribed:
                assert event.code == 112
                assert self.subs.is_wanted(event.channel)
            else:
                assert not self.subs.is_wanted(event.channel)  # a refused channel is not wanted
                self.end_callers(refusal.callers, event.channel, "refused")
        elif isinstance(event, Unsubscribed):
            wanted = self.subs.is_wanted(event.channel)
            verdict = self.subs.unsubscribed(event, self.now)
            assert verdict.resubscribed == (event.resubscribe and wanted)
            if not verdict.resubscribed:
                assert not self.subs.is_wanted(event.channel)
                self.end_callers(verdict.callers, event.channel, "unsubscribed")

    # ------------------------------------------------------------------ the client

    @rule(channel=channels)
    def want(self, channel: str) -> None:
        self.tick()
        self.subs.want(channel, self.now)
        self.read_commands()
        assert self.subs.is_wanted(channel)

    @rule(channel=channels)
    def wait(self, channel: str) -> None:
        self.tick()
        if self.subs.is_wanted(channel) and self.core.is_subscribed(channel):
            return  # as the stream does: nothing to wait for
        caller = self.next_caller = self.next_caller + 1
        self.waiting[caller] = channel
        self.subs.wait(channel, caller, self.now)
        self.read_commands()

    @precondition(lambda self: self.waiting)
    @rule(pick=picks)
    def give_up(self, pick: int) -> None:
        caller = sorted(self.waiting)[pick % len(self.waiting)]
        self.subs.stop_waiting(self.waiting.pop(caller), caller)
        self.ended[caller] = "gave up"

    @rule(channel=channels)
    def release(self, channel: str) -> None:
        self.tick()
        waited_on = channel in self.waiting.values()
        released = self.subs.release(channel, self.now)
        self.read_commands()
        # Release never fails a waiting caller: it is refused and changes nothing.
        assert released is not waited_on
        if waited_on:
            assert self.subs.is_wanted(channel)
        else:
            assert not self.subs.is_wanted(channel)

    @rule(channel=channels)
    def drop(self, channel: str) -> None:
        self.tick()
        self.end_callers(self.subs.drop(channel, self.now), channel, "dropped")
        self.read_commands()
        assert not self.subs.is_wanted(channel)
        assert channel not in self.waiting.values()

    @rule()
    def fail_all(self) -> None:
        for caller in self.subs.fail_all():
            self.ended[caller] = "failed"
            del self.waiting[caller]
        assert not self.waiting

    # ------------------------------------------------------------------ the link

    @precondition(lambda self: not self.connected)
    @rule()
    def connect(self) -> None:
        self.tick()
        cid = self.core.send_connect("tok", self.now)
        self.core.data_to_send()
        self.core.receive_frame(
            json.dumps({"id": cid, "connect": {"client": "c", "ping": 0}}), self.now
        )
        self.connected = True
        self.subs.connected(self.now)
        self.read_commands()  # (the invariants check that every wanted channel is on its way)

    @precondition(lambda self: self.connected)
    @rule(too_big=st.booleans(), poisoned=st.booleans())
    def lose(self, too_big: bool, poisoned: bool) -> None:
        self.tick()
        waiting = bool(self.on_wire) or bool(self.subs.queue)
        window = self.subs.window
        self.core.connection_lost(1009 if too_big else None)
        self.on_wire.clear()
        self.live.clear()
        self.connected = False
        ended = self.subs.connection_lost(
            connected=True, poisoned=poisoned or too_big, too_big=too_big
        )
        if too_big and waiting:
            assert ended.window == self.subs.window == max(1, window // 8)
        else:
            assert ended.window is None
            assert self.subs.window == window

    # ------------------------------------------------------------------ the server

    def pick_on_wire(self, pick: int) -> tuple[int, str]:
        cid = sorted(self.on_wire)[pick % len(self.on_wire)]
        return cid, self.on_wire.pop(cid)

    @precondition(lambda self: self.connected and self.on_wire)
    @rule(pick=picks, recovered=st.booleans())
    def answer(self, pick: int, recovered: bool) -> None:
        self.tick()
        cid, channel = self.pick_on_wire(pick)
        self.live.add(channel)
        epoch = self.epochs.setdefault(channel, 1)
        result = {"recoverable": True, "epoch": str(epoch), "offset": 3, "recovered": recovered}
        self.receive({"id": cid, "subscribe": result})

    @precondition(lambda self: self.connected and self.on_wire)
    @rule(pick=picks, code=st.sampled_from([103, 112]))
    def refuse(self, pick: int, code: int) -> None:
        self.tick()
        cid, _ = self.pick_on_wire(pick)
        self.receive({"id": cid, "error": {"code": code, "message": "refused"}})

    @precondition(lambda self: self.connected and self.live)
    @rule(pick=picks, code=st.sampled_from([2000, 2500]))
    def unsubscribe(self, pick: int, code: int) -> None:
        self.tick()
        channel = sorted(self.live)[pick % len(self.live)]
        self.live.discard(channel)
        push = {"channel": channel, "unsubscribe": {"code": code, "reason": "server"}}
        self.receive({"push": push})

    @precondition(lambda self: self.connected)
    @rule()
    def settle(self) -> None:
        """The server answers every subscribe, as they come: every wanted channel ends subscribed."""
        while self.on_wire:
            self.answer(0, recovered=True)
        assert self.subs.queue == ()
        for channel in self.subs.wanted:
            assert self.core.is_subscribed(channel), channel
        assert not self.waiting  # every caller was answered

    # ------------------------------------------------------------------ invariants

    @invariant()
    def the_window_bounds_the_subscribes_on_the_wire(self) -> None:
        assert 1 <= self.subs.window <= CEILING
        assert len(self.on_wire) <= self.subs.window

    @invariant()
    def every_waiting_caller_is_still_held(self) -> None:
        for channel in self.waiting.values():
            assert self.subs.has_callers(channel)
            assert self.subs.is_wanted(channel)

    @invariant()
    def a_wanted_channel_is_on_its_way_while_connected(self) -> None:
        if not self.connected:
            return
        for channel in self.subs.wanted:
            assert (
                self.core.is_subscribing(channel)
                or self.core.is_subscribed(channel)
                or channel in self.subs.queue
            ), channel

    @invariant()
    def a_channel_is_queued_once_at_most(self) -> None:
        queue = self.subs.queue
        assert len(queue) == len(set(queue))


TestSubscriptions = SubscriptionMachine.TestCase
TestSubscriptions.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
