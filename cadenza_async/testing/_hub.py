"""The channel hub: every channel, who is subscribed to it, and the live delivery of publications.

Account channels (``tradingAccount:{id}``) are made on first use; other
channels (the market's) exist once :meth:`ChannelHub.add_named` made them.

A publication is recorded in its channel's history first (see
:class:`~cadenza_async.testing._engine.Channel`), then delivered to the
channel's subscribers as one push message. The delivery faults act between
the two: paused (history only), duplicated, reordered, delayed. Delayed
publications are ``loop.call_later`` handles the hub keeps, so
:meth:`ChannelHub.drop_in_flight` can cancel every one.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import msgspec

from ._engine import CHANNEL_PREFIX, Channel

__all__ = ["ChannelHub", "Subscriber"]


class Subscriber(Protocol):
    """Whatever receives pushes: a connection."""

    def send(self, message: bytes) -> None: ...


class ChannelHub:
    """Channels by account id, their subscribers, and the publication delivery faults."""

    def __init__(self, *, history_size: int, history_ttl: float | None) -> None:
        self.history_size = history_size
        self.history_ttl = history_ttl
        self.channels: dict[str, Channel] = {}
        self.named: dict[str, Channel] = {}  # channels that are not an account's, by name
        self._subscribers: dict[str, set[Subscriber]] = {}
        # delivery faults
        self.paused = False
        self.duplicate_left = 0
        self.publication_delay = 0.0
        self._reorder_size = 0
        self._held: list[tuple[str, bytes]] = []
        self._delayed: dict[int, asyncio.TimerHandle] = {}
        self._delayed_seq = 0

    # ---- channels and subscribers -------------------------------------------

    def channel(self, account_id: str) -> Channel:
        """The account's channel, created (empty, new epoch) on first use."""
        channel = self.channels.get(account_id)
        if channel is None:
            channel = Channel(CHANNEL_PREFIX + account_id, self.history_size, self.history_ttl)
            self.channels[account_id] = channel
        return channel

    def add_named(self, name: str) -> Channel:
        """A channel that is not an account's (the market's), by its full name; made once."""
        channel = self.named.get(name)
        if channel is None:
            channel = self.named[name] = Channel(name, self.history_size, self.history_ttl)
        return channel

    def by_name(self, name: str) -> Channel | None:
        """The channel called ``name``: an account's (made on first use) or a named one, else None."""
        if name.startswith(CHANNEL_PREFIX):
            return self.channel(name[len(CHANNEL_PREFIX) :])
        return self.named.get(name)

    def drop_subscribers(self, name: str, code: int, reason: str) -> None:
        """Unsubscribe everyone from ``name`` with an unsubscribe push (code >= 2500: resubscribe)."""
        frame = (
            b'{"push":{"channel":'
            + msgspec.json.encode(name)
            + b',"unsubscribe":'
            + msgspec.json.encode({"code": code, "reason": reason})
            + b"}}"
        )
        for subscriber in list(self._subscribers.pop(name, ())):
            subscriber.send(frame)
            forget = getattr(subscriber, "forget_subscription", None)
            if forget is not None:
                forget(name)

    def reset_all(self, account_id: str) -> None:
        """New epoch and empty history on every channel (``account_id``'s too, even if unused yet)."""
        self.channel(account_id)
        for channel in self.channels.values():
            channel.reset()

    def subscribe(self, subscriber: Subscriber, name: str) -> None:
        """Live pushes of channel ``name`` go to ``subscriber`` from now on."""
        self._subscribers.setdefault(name, set()).add(subscriber)

    def unsubscribe(self, subscriber: Subscriber, name: str) -> None:
        subs = self._subscribers.get(name)
        if subs is not None:
            subs.discard(subscriber)

    # ---- publications ---------------------------------------------------------

    def publish(self, account_id: str, data: bytes) -> int:
        """Record ``data`` on the account's channel and deliver it; return its offset."""
        return self.publish_on(self.channel(account_id), data)

    def publish_on(self, channel: Channel, data: bytes) -> int:
        """Record ``data`` on ``channel`` and deliver it; return its offset."""
        offset, pub = channel.add(data)
        frame = channel.push_prefix + pub + b"}}"
        if self.paused:
            return offset
        if self.duplicate_left > 0:
            self.duplicate_left -= 1
            self._deliver(channel.name, frame)
        self._deliver(channel.name, frame)
        return offset

    def deliver_frame(self, name: str, frame: bytes) -> None:
        """Deliver a push frame recorded earlier (held back by a fault) to ``name``'s subscribers."""
        self._deliver(name, frame)

    def reorder_next(self, n: int) -> None:
        """Hold the next ``n`` deliveries, then deliver them in reverse order."""
        self._reorder_size = n
        self._held = []

    def drop_in_flight(self) -> None:
        """Forget every delayed or held delivery (history keeps them)."""
        for handle in self._delayed.values():
            handle.cancel()
        self._delayed.clear()
        self._held = []

    def _deliver(self, name: str, frame: bytes) -> None:
        if self._reorder_size > 0:
            self._held.append((name, frame))
            if len(self._held) >= self._reorder_size:
                held, self._held = self._held, []
                self._reorder_size = 0
                for item in reversed(held):
                    self._deliver(*item)
            return
        if self.publication_delay > 0:
            self._delayed_seq += 1
            key = self._delayed_seq
            self._delayed[key] = asyncio.get_running_loop().call_later(
                self.publication_delay, self._deliver_delayed, key, name, frame
            )
            return
        self._deliver_now(name, frame)

    def _deliver_delayed(self, key: int, name: str, frame: bytes) -> None:
        self._delayed.pop(key, None)
        self._deliver_now(name, frame)

    def _deliver_now(self, name: str, frame: bytes) -> None:
        subs = self._subscribers.get(name)
        if subs:
            for subscriber in subs:
                subscriber.send(frame)
