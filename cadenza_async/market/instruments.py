"""InstrumentCache: the client's instruments by id, loaded by REST, refreshed on demand and by events.

Loaded per venue (or all at once) on first use and kept for the client's
life; ``refresh=True`` reloads. An ``event.instrument.updated`` publication
(on whichever channel the server sends it: the spec does not say) replaces
the cached instruments it carries. :meth:`InstrumentCache.cached` answers
without I/O: the submit paths use it to check an order's rules before
sending, and never fetch on their own.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import msgspec

from ..errors import CadenzaError
from ..protocol.centrifugo import StreamPosition
from ..stream import StreamRpcError
from ._rest import MarketRest, check_instrument_id, split_instrument_id
from .models import Instrument

__all__ = ["INSTRUMENT_UPDATED", "InstrumentCache", "InstrumentNotFoundError"]

log = logging.getLogger("cadenza_async.market")

INSTRUMENT_UPDATED: Final = "event.instrument.updated"


class InstrumentNotFoundError(CadenzaError, LookupError):
    """No instrument with that id on its venue (the venue's list was read)."""


class _Event(msgspec.Struct):
    metadata: dict[str, object] | None = None
    data: list[Instrument] | Instrument | None = None


_event: Final = msgspec.json.Decoder(_Event)


_MARKER: Final = INSTRUMENT_UPDATED.encode()


class InstrumentCache:
    """Instruments by id; one load per venue at a time, shared by concurrent callers."""

    def __init__(self, rest: MarketRest) -> None:
        self._rest = rest
        self._by_id: dict[str, Instrument] = {}
        self._loaded: set[str | None] = set()  # venues read in full (None: every venue)
        self._loading: dict[str | None, asyncio.Future[None]] = {}
        self.events_applied = 0

    def __len__(self) -> int:
        return len(self._by_id)

    def cached(self, instrument_id: str) -> Instrument | None:
        """The instrument if it is cached (no I/O)."""
        return self._by_id.get(instrument_id)

    async def instruments(
        self, venue: str | None = None, *, refresh: bool = False, timeout: float | None = None
    ) -> list[Instrument]:
        """Every instrument (of ``venue``), loaded once and then served from the cache."""
        if refresh or (venue not in self._loaded and None not in self._loaded):
            await self._load(venue, timeout)
        return [i for i in self._by_id.values() if venue is None or i.venue == venue]

    async def instrument(
        self, instrument_id: str, *, refresh: bool = False, timeout: float | None = None
    ) -> Instrument:
        """One instrument; its venue's list is read when it is not cached.

        Raises :class:`InstrumentNotFoundError` when the venue has no such instrument.
        """
        check_instrument_id(instrument_id)
        found = None if refresh else self._by_id.get(instrument_id)
        if found is not None:
            return found
        venue, _ = split_instrument_id(instrument_id)
        await self._load(venue, timeout)
        found = self._by_id.get(instrument_id)
        if found is None:
            raise InstrumentNotFoundError(f"no instrument {instrument_id} on {venue}")
        return found

    async def _load(self, venue: str | None, timeout: float | None) -> None:
        pending = self._loading.get(venue)
        if pending is not None:
            await asyncio.shield(pending)
            return
        future = self._loading[venue] = asyncio.get_running_loop().create_future()
        try:
            loaded = await self._rest.instruments(venue, timeout=timeout)
        except BaseException as exc:
            future.set_exception(exc if isinstance(exc, Exception) else CadenzaError("cancelled"))
            future.exception()  # retrieved: the sharers re-raise it
            raise
        else:
            future.set_result(None)
        finally:
            del self._loading[venue]
        if venue is None:
            self._by_id.clear()
        else:
            for key in [k for k, v in self._by_id.items() if v.venue == venue]:
                del self._by_id[key]
        for inst in loaded:
            self._by_id[inst.instrument_id] = inst
        self._loaded.add(venue)

    # -- ChannelObserver: event.instrument.updated on any channel -----------------------

    def publication(self, channel: str, data: msgspec.Raw, offset: int | None) -> None:
        """Apply an ``event.instrument.updated`` publication; others are not read."""
        if not (self._by_id or self._loaded) or channel.startswith("market:"):
            # nothing cached (an event only updates what was loaded), or books, tickers
            # and candles: never instrument events. Every order event passes here.
            return
        raw = bytes(data)
        if _MARKER not in raw:
            return
        try:
            event = _event.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.warning("an instrument event on %s did not decode; dropped", channel)
            return
        meta = event.metadata or {}
        if meta.get("eventType") != INSTRUMENT_UPDATED or event.data is None:
            return
        items = event.data if isinstance(event.data, list) else [event.data]
        for inst in items:
            old = self._by_id.get(inst.instrument_id)
            if old is not None or inst.venue in self._loaded or None in self._loaded:
                self._by_id[inst.instrument_id] = _merged(old, inst)
                self.events_applied += 1

    def gap(self, channel: str, reason: str) -> None:
        """An event may have been missed: the next look-up reloads."""
        if not channel.startswith("market:"):
            self._loaded.clear()

    def live(self, channel: str, position: StreamPosition | None) -> None:
        return

    def refused(self, channel: str, error: StreamRpcError) -> None:
        return


def _merged(old: Instrument | None, new: Instrument) -> Instrument:
    """``new`` with the fields it lacks (the RPC form has fewer) taken from ``old``."""
    if old is None:
        return new
    fields = msgspec.structs.asdict(new)
    for name, value in msgspec.structs.asdict(old).items():
        if fields.get(name) in (None, []):
            fields[name] = value
    return Instrument(**fields)
