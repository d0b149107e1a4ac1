"""Fanout: what the stream's channels tell the application, and who hears it.

The order stream (:mod:`cadenza_async.stream`) owns the connection and the
subscriptions; this owns the other end: each publication, decoded once, to
the listeners that want it, and each change of a channel (live, gap,
refused) to its observers. All of it runs synchronously in the stream's
reader, in stream order; a listener that raises is logged and the stream
goes on.

=====================================  ============================================
what the stream hands over             who hears it
=====================================  ============================================
a publication, on any channel          ``on_publication(channel, data, offset)``
                                       (raw) and the channel's observers
an order update on an account's        each ``on_order`` listener ``(order,
channel (``tradingAccount:{id}``)      account)``
another payload there (a portfolio,    each ``on_account_event`` listener, counted
a trading account)                     by kind in ``account_events``
an order update that does not decode,  nobody: counted (``bad_events``; by shape in
or names another account               ``bad_event_shapes``, logged once per shape:
                                       the field and type, never a value), then
                                       ``on_bad_event(account)``, so what it may
                                       have proven is looked up at once
continuity lost on a channel           ``on_gap(channel)``, observers' ``gap``
the channel live, or not any more      observers' ``live``
the server refused the channel         ``on_refused(channel, error)``, observers'
                                       ``refused``
=====================================  ============================================
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Protocol

import msgspec

from .errors import StreamRpcError
from .models import AccountEvent, TradeOrder, decode_channel_event
from .protocol.centrifugo import UNDECODABLE_DATA, Publication, StreamPosition

__all__ = [
    "CHANNEL_PREFIX",
    "AccountEventCallback",
    "ChannelObserver",
    "Fanout",
    "OrderCallback",
    "PublicationCallback",
    "account_of",
    "channel_for",
]

PublicationCallback = Callable[[str, msgspec.Raw, "int | None"], None]
OrderCallback = Callable[[TradeOrder, "str | None"], None]
AccountEventCallback = Callable[[AccountEvent, str], None]

#: The channel that carries an account's order updates is this prefix plus the account id.
CHANNEL_PREFIX: Final = "tradingAccount:"
_PREFIX_LEN: Final = len(CHANNEL_PREFIX)

#: Distinct shapes of bad order events logged (each once); the rest are only counted.
_MAX_BAD_SHAPES: Final = 64
_UNDECODABLE_SIZE: Final = len(UNDECODABLE_DATA)


def channel_for(account_id: str) -> str:
    """The Centrifugo channel that carries an account's order updates."""
    return CHANNEL_PREFIX + account_id


def account_of(channel: str) -> str | None:
    """The account whose order updates ``channel`` carries, or ``None`` for another channel."""
    return channel[_PREFIX_LEN:] if channel.startswith(CHANNEL_PREFIX) else None


class ChannelObserver(Protocol):
    """What :meth:`OrderStream.observe` calls for a channel, synchronously, in stream order.

    ``publication`` for each publication (its raw ``data`` and Centrifugo
    offset; the epoch is the one of the last ``live`` call), ``gap`` when
    continuity on the channel was lost (``reason``: ``"gap"`` for an offset
    skip, ``"not_recovered"`` for a resubscribe that could not recover,
    ``"unsubscribed"`` when the server dropped the channel,
    ``"unrecoverable"`` for a position the server refused with 112),
    ``live`` when the channel becomes live at a stream position (after the
    publications a recovery replayed) and with ``None`` when it stops being
    live (connection lost, server unsubscribe), and ``refused`` when the
    server refused the channel for good. Observers must not block or raise
    (an exception is logged and the stream goes on).
    """

    def publication(self, channel: str, data: msgspec.Raw, offset: int | None) -> None: ...

    def gap(self, channel: str, reason: str) -> None: ...

    def live(self, channel: str, position: StreamPosition | None) -> None: ...

    def refused(self, channel: str, error: StreamRpcError) -> None: ...


class Fanout:
    """The listeners and observers of one stream's channels; see the module docstring."""

    def __init__(
        self,
        *,
        on_gap: Callable[[str], None],
        on_publication: PublicationCallback | None,
        on_order: Sequence[OrderCallback],
        on_account_event: Sequence[AccountEventCallback],
        on_bad_event: Callable[[str], None] | None,
        on_refused: Callable[[str, StreamRpcError], None] | None,
        log: logging.Logger,
    ) -> None:
        self._on_gap = on_gap
        self.on_publication = on_publication
        self.on_order = tuple(on_order)
        self._on_account_event = tuple(on_account_event)
        self._on_bad_event = on_bad_event
        self._on_refused = on_refused
        self._log = log
        # observe(): per channel, and for every channel (key None)
        self._observers: dict[str | None, tuple[ChannelObserver, ...]] = {}
        self._observe_all: tuple[ChannelObserver, ...] = ()
        self.bad_events = 0
        # shape (the decoder's words: field and type, never a value) -> how many
        self.bad_event_shapes: dict[str, int] = {}
        # publications on account channels that are no order update, by kind
        self.account_events: dict[str, int] = {}
        self.account_mismatches = 0

    # ------------------------------------------------------------------ who hears

    def listen(self, listener: OrderCallback) -> None:
        """Add an ``on_order`` listener (once)."""
        if listener not in self.on_order:
            self.on_order = (*self.on_order, listener)

    def unlisten(self, listener: OrderCallback) -> None:
        """Remove an ``on_order`` listener; no-op if it is not one."""
        self.on_order = tuple(other for other in self.on_order if other != listener)

    def observe(self, channel: str | None, observer: ChannelObserver) -> None:
        """Call ``observer`` for ``channel`` (``None``: every channel) from now on (once)."""
        current = self._observers.get(channel, ())
        if observer not in current:
            self._observers[channel] = (*current, observer)
            self._observe_all = self._observers.get(None, ())

    def unobserve(self, channel: str | None, observer: ChannelObserver) -> None:
        """Stop calling ``observer`` for ``channel``; no-op if it does not observe it."""
        rest = tuple(o for o in self._observers.get(channel, ()) if o is not observer)
        if rest:
            self._observers[channel] = rest
        else:
            self._observers.pop(channel, None)
        self._observe_all = self._observers.get(None, ())

    @property
    def observed(self) -> Iterable[str]:
        """The channels observed one by one (not those only every-channel observers hear)."""
        return [channel for channel in self._observers if channel is not None]

    # ------------------------------------------------------------------ what they hear

    def deliver(self, event: Publication) -> None:
        """Hand a publication on: raw to ``on_publication`` and observers, decoded to listeners.

        On an account's channel every documented form is read
        (:func:`~cadenza_async.models.decode_channel_event`); see the module
        docstring for where each kind goes.
        """
        channel = event.channel
        if self.on_publication is not None:
            try:
                self.on_publication(channel, event.data, event.offset)
            except Exception:
                self._log.exception("on_publication callback failed for %s", channel)
        if self._observers:
            self._observed(channel, event)
        # (account_of, inlined: once per event)
        if not channel.startswith(CHANNEL_PREFIX):
            return  # not an account's channel (a market one: books, tickers, candles)
        account = channel[_PREFIX_LEN:]
        listeners = self.on_order
        if not listeners and not self._on_account_event:
            return
        data = event.data
        if len(data) == _UNDECODABLE_SIZE and bytes(data) == UNDECODABLE_DATA:
            self._bad_event(channel, account, "undecodable order event (nested too deeply)")
            return
        try:
            decoded = decode_channel_event(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._bad_event(channel, account, f"malformed order event: {exc}")
            return
        if decoded.__class__ is not TradeOrder:
            self._account_event(decoded, account)  # type: ignore[arg-type]
            return
        order = decoded
        if order.trading_account_id != account:
            if order.trading_account_id:
                self.account_mismatches += 1
                self._bad_event(channel, account, "order event for another account")
                return
            order.trading_account_id = account  # (the current models may leave it out)
        for listener in listeners:
            try:
                listener(order, account)
            except Exception:
                self._log.exception("on_order listener failed for %s", channel)

    def gap(self, channel: str, reason: str) -> None:
        """Continuity on ``channel`` was lost (``reason``: see :class:`ChannelObserver`)."""
        try:
            self._on_gap(channel)
        except Exception:
            self._log.exception("on_gap callback failed for %s", channel)
        if self._observers:
            self.tell(channel, "gap", reason)

    def refused(self, channel: str, error: StreamRpcError) -> None:
        """The server refused ``channel`` for good."""
        if self._on_refused is not None:
            try:
                self._on_refused(channel, error)
            except Exception:
                self._log.exception("on_refused callback failed for %s", channel)
        if self._observers:
            self.tell(channel, "refused", error)

    def live(self, channel: str, position: StreamPosition | None) -> None:
        """``channel`` is live at ``position``, or (``None``) not any more."""
        if self._observers:
            self.tell(channel, "live", position)

    def tell(self, channel: str, what: str, *args: Any) -> None:
        """Call method ``what`` of every observer of ``channel``, each failure logged."""
        for observer in self._observers.get(channel, ()) + self._observe_all:
            try:
                getattr(observer, what)(channel, *args)
            except Exception:
                self._log.exception("observer %s failed for %s", what, channel)

    def _observed(self, channel: str, event: Publication) -> None:
        """Hand a publication to the channel's observers (and to those of every channel)."""
        for observer in self._observers.get(channel, ()) + self._observe_all:
            try:
                observer.publication(channel, event.data, event.offset)
            except Exception:
                self._log.exception("observer failed for %s", channel)

    def _account_event(self, event: AccountEvent, account: str) -> None:
        """A publication on an account's channel that is not an order update."""
        self.account_events[event.kind] = self.account_events.get(event.kind, 0) + 1
        for listener in self._on_account_event:
            try:
                listener(event, account)
            except Exception:
                self._log.exception("on_account_event listener failed for %s", account)

    def _bad_event(self, channel: str, account: str, what: str) -> None:
        """Count a bad order event, log its shape the first time, and report it at once."""
        self.bad_events += 1
        shapes = self.bad_event_shapes
        seen = shapes.get(what)
        if seen is not None:
            shapes[what] = seen + 1
        elif len(shapes) < _MAX_BAD_SHAPES:
            shapes[what] = 1
            self._log.warning(
                "%s on %s dropped (%d bad so far); proving what it may carry by REST",
                what,
                channel,
                self.bad_events,
            )
        if self._on_bad_event is not None:
            try:
                self._on_bad_event(account)
            except Exception:
                self._log.exception("on_bad_event callback failed for %s", channel)
