"""The local order book's merge and continuity rules, sans-I/O: updates in, a proven book out.

Rule of this file: no sockets, no clocks, no tasks. The caller feeds every
publication of ``market:orderbook:{venue}:{symbol}`` (decoded, with its
Centrifugo offset), every gap and live/not-live change the stream reports,
and every REST snapshot it fetched because :attr:`BookSync.snapshot_wanted`
said so, each with ``now``. The book is **never silently wrong**: it says
:attr:`BookSync.usable` only while every level it holds is proven by an
unbroken chain from a snapshot.

A Cadenza book payload has no sequence number (``OrderBook`` carries only a
millisecond ``timestamp``): the only evidence of a lost update is the
Centrifugo stream position. The rules (DESIGN.md, the market contract; the
spec's section 6):

===============================  ===========================================================
input                            what happens
===============================  ===========================================================
first live, no snapshot yet      LOADING: a REST snapshot is wanted; DIFFs are buffered
SNAPSHOT publication             replaces both sides; SYNCED (a published snapshot is in
                                 stream order, so it proves everything before it)
DIFF while SYNCED, in order      applied per level: quantity zero removes, else upserts
DIFF while LOADING/RESYNCING     buffered (bounded; an overflow counts as a gap)
DELTA (meaning not specified)    RESYNCING, reason ``delta``: never applied
offset not last + 1              RESYNCING, reason ``gap`` (the stream's own check too)
``gap(reason)`` from the stream  RESYNCING with that reason (``not_recovered``, ...)
live again, another epoch        RESYNCING, reason ``epoch``
live again, offset moved         RESYNCING, reason ``gap`` (something was not replayed)
a diff leaves bid >= ask         RESYNCING, reason ``crossed`` (a level was missed)
a malformed row                  RESYNCING, reason ``bad_data``
not live (disconnected, ...)     not usable until live again (recovered: usable at once)
REST snapshot, proven            both sides replaced, buffered DIFFs replayed from the
                                 snapshot's timestamp on (older ones dropped as covered);
                                 SYNCED
REST snapshot, not proven        refused (counted); another snapshot is wanted
DIFF older than the last REST    dropped: it was in flight when the snapshot was taken,
snapshot, arriving after it      so the snapshot holds it (applying it would go back)
===============================  ===========================================================

A REST snapshot proves the book when it was requested after the latest
loss of continuity (the API answers with the book as of the request or
later), or when it is at least as new (``timestamp``) as the first DIFF
buffered since that loss (so every lost DIFF, older than that one, is in
it). On replay, DIFFs with a timestamp equal to the snapshot's are applied
again rather than dropped: a DIFF carries absolute quantities per level, so
re-applying one the snapshot already holds, followed by every later one in
order, gives the same book, while dropping one it does not hold would not.
Crossed books, DELTAs and gaps are all healed the same way, and a resync
needs one snapshot when the REST answer is as fresh as the stream (the
simulator's is); a snapshot that is not proven is refused and another one
is asked for.

Data structure (chosen by ``benchmarks/bench_book.py``): per side, a dict
from the price *as the wire spells it* to the quantity string, a sorted list
of exact integer keys (the price scaled by ``10**scale``, negated for bids, so
index 0 is the best on both sides) with the spellings beside them, and a
bounded cache from spellings to keys. An update of a known level (most of
them) is one dict hit; a new level or a removal finds its key in the cache
(or parses it, exactly, from its digits) and bisects. Equal prices spelled
differently (``"1.50"``, ``"1.5"``) are the same level. Quantities stay
strings until read, checked on the way in to be ASCII digits with at most
one dot, their zero-ness read from the digits. Prices are never floats; no
:class:`~decimal.Decimal` is built on the way in. Only a new best price can
cross a book proven uncrossed, so the crossed check runs only then.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Final, NamedTuple

__all__ = [
    "BOOK_STATES",
    "RESYNC_REASONS",
    "BookDataError",
    "BookSide",
    "BookSync",
    "Level",
    "applied_change",
]

#: The states of :class:`BookSync` (:attr:`BookSync.state`).
LOADING: Final = "loading"
SYNCED: Final = "synced"
RESYNCING: Final = "resyncing"
BOOK_STATES: Final = (LOADING, SYNCED, RESYNCING)

#: Why a book lost its proof (keys of :attr:`BookSync.resyncs`).
RESYNC_REASONS: Final = (
    "gap",
    "not_recovered",
    "unsubscribed",
    "epoch",
    "delta",
    "crossed",
    "bad_data",
)

SNAPSHOT: Final = "SNAPSHOT"
DIFF: Final = "DIFF"
DELTA: Final = "DELTA"

Row = Sequence[str]

#: Parsed spellings a side remembers beyond twice its levels before it forgets them all.
_PARSED_MAX: Final = 4096


class Level(NamedTuple):
    """One price level: exact price and quantity."""

    price: Decimal
    quantity: Decimal


class BookDataError(ValueError):
    """A row that is not ``[price, quantity, ...]`` with a positive price and a decimal quantity."""


def _decimal_price(text: str) -> Decimal:
    try:
        price = Decimal(text)
    except (InvalidOperation, TypeError, ValueError):
        raise BookDataError(f"price {text!r} is not a decimal") from None
    if not price.is_finite() or price <= 0:
        raise BookDataError(f"price {text!r} is not a positive decimal")
    return price


class BookSide:
    """One side of a book: levels by exact price, best first.

    ``descending`` for bids (best = highest). See the module docstring for
    the structure: prices are kept as integers scaled by ``10**scale``
    (``scale`` grows to the most decimals seen; equal prices spelled
    differently are one level), quantities as the wire's strings. Not
    thread-safe; one owner.
    """

    __slots__ = ("_keys", "_levels", "_names", "_parsed", "descending", "scale")

    def __init__(self, descending: bool) -> None:
        self.descending = descending
        self.scale = 0
        self._levels: dict[str, str] = {}  # the spelling of each level -> its quantity
        self._keys: list[int] = []  # scaled prices, sorted; bids negated: index 0 is the best
        self._names: list[str] = []  # the spelling of each key, same order
        self._parsed: dict[str, int] = {}  # spellings seen -> their key (a bounded cache)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        best = self.best()
        return f"<BookSide {'bids' if self.descending else 'asks'} levels={len(self)} best={best}>"

    def clear(self) -> None:
        self._levels.clear()
        self._keys.clear()
        self._names.clear()

    def replace(self, rows: Iterable[Row]) -> None:
        """Replace every level with ``rows`` (a snapshot). Raises :class:`BookDataError`."""
        self.clear()
        self.apply(rows)

    def apply(self, rows: Iterable[Row]) -> bool:
        """Apply ``rows`` in order: quantity zero removes the level, anything else upserts it.

        Returns True when a row added a level ahead of every level held (a
        new best price): only such a row can leave the book crossed.
        Raises :class:`BookDataError` at the first malformed row (the rows
        before it stay applied: the caller resyncs the whole book then).
        """
        # hot path, inlined on purpose: most rows update a level held under the
        # same spelling (one dict hit). A quantity is ASCII digits with at most
        # one dot; its zero-ness is read exactly from its digits. A price not held
        # under this spelling is found by its key: the parse cache, then a bisect.
        levels = self._levels
        top = False
        for row in rows:
            price = row[0]
            quantity = row[1]
            digits = quantity.replace(".", "", 1)
            if not (digits.isdecimal() and digits.isascii()):
                raise BookDataError(f"quantity {quantity!r} is not a non-negative decimal")
            live = digits.strip("0")
            if live and price in levels:
                levels[price] = quantity
                continue
            key = self._parsed.get(price)
            if key is None:
                key = self._parse(price)
            keys = self._keys
            i = bisect_left(keys, key)
            if i < len(keys) and keys[i] == key:  # held, under another spelling or going
                if live:
                    levels[self._names[i]] = quantity
                else:
                    del levels[self._names[i]]
                    del keys[i]
                    del self._names[i]
            elif live:
                keys.insert(i, key)
                self._names.insert(i, price)
                levels[price] = quantity
                top = top or i == 0
        return top

    def _parse(self, text: str) -> int:
        """``text`` (``digits[.digits]``, positive) as its signed key, exactly; remembered."""
        whole, _, frac = text.partition(".")
        digits = whole + frac
        if not (digits.isdecimal() and digits.isascii()):
            raise BookDataError(f"price {text!r} is not a positive decimal")
        try:
            value = int(digits)
        except ValueError:  # more digits than int() reads
            raise BookDataError(f"price {text[:40]!r}... has too many digits") from None
        if value <= 0:
            raise BookDataError(f"price {text!r} is not a positive decimal")
        if len(frac) > self.scale:
            self._rescale(len(frac))
        key: int = value * 10 ** (self.scale - len(frac))
        if self.descending:
            key = -key
        parsed = self._parsed
        if len(parsed) >= _PARSED_MAX + 2 * len(self._keys):
            parsed.clear()  # spellings of levels long gone: start again
        parsed[text] = key
        return key

    def _rescale(self, scale: int) -> None:
        factor = 10 ** (scale - self.scale)
        self._keys = [k * factor for k in self._keys]
        self._parsed.clear()
        self.scale = scale

    def _price_of(self, key: int) -> Decimal:
        return Decimal(-key if self.descending else key).scaleb(-self.scale)

    def best_price(self) -> Decimal | None:
        """The best price held, or None when the side is empty."""
        return self._price_of(self._keys[0]) if self._keys else None

    def best(self) -> Level | None:
        """The best level, or None when the side is empty."""
        if not self._keys:
            return None
        return self._level(0)

    def top(self, n: int | None = None) -> list[Level]:
        """The ``n`` best levels (all when None), best first."""
        count = len(self._keys) if n is None else max(0, min(n, len(self._keys)))
        return [self._level(i) for i in range(count)]

    def quantity_at(self, price: Decimal | str) -> Decimal | None:
        """The quantity held at exactly ``price``, or None."""
        exact = price if isinstance(price, Decimal) else _decimal_price(price)
        scaled = exact.scaleb(self.scale)
        if scaled != scaled.to_integral_value():
            return None  # finer than any price held
        key = int(scaled)
        if self.descending:
            key = -key
        i = bisect_left(self._keys, key)
        if i < len(self._keys) and self._keys[i] == key:
            return Decimal(self._levels[self._names[i]])
        return None

    def as_dict(self) -> dict[Decimal, Decimal]:
        """Every level, price -> quantity (exact)."""
        return {
            self._price_of(k): Decimal(self._levels[n])
            for k, n in zip(self._keys, self._names, strict=True)
        }

    def _level(self, i: int) -> Level:
        return Level(self._price_of(self._keys[i]), Decimal(self._levels[self._names[i]]))


def crossed(bids: BookSide, asks: BookSide) -> bool:
    """True when the best bid is at or above the best ask (a book that cannot be)."""
    if not bids._keys or not asks._keys:
        return False
    if bids.scale == asks.scale:  # the usual case: no Decimal needed
        return -bids._keys[0] >= asks._keys[0]
    bid, ask = bids.best_price(), asks.best_price()
    return bid is not None and ask is not None and bid >= ask


class _Buffered(NamedTuple):
    timestamp: int
    bids: Sequence[Row]
    asks: Sequence[Row]
    offset: int | None


class BookChange(NamedTuple):
    """What one applied update changed: ``kind`` ``"snapshot"`` (the whole book) or ``"diff"``.

    ``bids``/``asks`` are the rows as received (``[price, quantity, ...]``,
    quantity ``"0"`` for a removal); :func:`applied_change` gives them as
    :class:`Level` values.
    """

    kind: str
    bids: Sequence[Row]
    asks: Sequence[Row]
    timestamp: int
    offset: int | None


def applied_change(rows: Sequence[Row]) -> list[Level]:
    """``rows`` of a :class:`BookChange` as exact :class:`Level` values (quantity 0: removed)."""
    return [Level(Decimal(row[0]), Decimal(row[1])) for row in rows]


class BookSync:
    """One instrument's local book and the proof that it is complete; see the module docstring.

    ``max_buffer``: DIFFs kept while waiting for a snapshot; past it the
    buffer is dropped and a newer snapshot is required. ``on_change`` (if
    given) is called with a :class:`BookChange` for every applied update.
    """

    __slots__ = (
        "_buffer",
        "_covered_until",
        "_generation",
        "_in_flight",
        "asks",
        "bids",
        "buffer_overflows",
        "changes",
        "diffs_applied",
        "diffs_dropped",
        "epoch",
        "heard_at",
        "last_offset",
        "live",
        "max_buffer",
        "resyncs",
        "snapshots_applied",
        "snapshots_refused",
        "state",
        "timestamp",
        "updated_at",
    )

    def __init__(self, *, max_buffer: int = 10_000) -> None:
        self.bids = BookSide(descending=True)
        self.asks = BookSide(descending=False)
        self.state = LOADING
        self.live = False
        self.max_buffer = max_buffer
        self.epoch: str | None = None
        self.last_offset: int | None = None
        self.timestamp: int | None = None  # the wire time (ms) of the last applied update
        self.updated_at: float | None = None  # ``now`` of the last applied update
        self.heard_at: float | None = None  # ``now`` of the last publication of any kind
        self.resyncs: dict[str, int] = {}
        self.snapshots_applied = 0
        self.snapshots_refused = 0
        self.diffs_applied = 0
        self.diffs_dropped = 0  # buffered DIFFs a snapshot already covered
        self.buffer_overflows = 0
        self.changes: list[BookChange] | None = None  # set to a list to collect them
        self._buffer: list[_Buffered] = []
        self._generation = 0  # bumped at each loss of continuity
        self._in_flight: int | None = None  # the generation a pending snapshot was asked at
        self._covered_until = 0  # DIFFs older than the last REST snapshot are in it

    def __repr__(self) -> str:
        return (
            f"<BookSync {self.state} live={self.live} bids={len(self.bids)} "
            f"asks={len(self.asks)} resyncs={self.resyncs}>"
        )

    # ------------------------------------------------------------------ queries

    @property
    def usable(self) -> bool:
        """True while the book is proven complete and its channel is live."""
        return self.live and self.state == SYNCED

    @property
    def snapshot_wanted(self) -> bool:
        """True when a REST snapshot should be fetched now (none is in flight)."""
        return self.state != SYNCED and self._in_flight is None

    @property
    def buffered(self) -> int:
        """DIFFs held until a snapshot proves the book."""
        return len(self._buffer)

    @property
    def total_resyncs(self) -> int:
        return sum(self.resyncs.values())

    def silent_for(self, now: float) -> float | None:
        """Seconds since the last publication (None before the first one)."""
        return None if self.heard_at is None else now - self.heard_at

    # ------------------------------------------------------------------ stream input

    def publication(
        self,
        update_type: str,
        bids: Sequence[Row],
        asks: Sequence[Row],
        timestamp: int,
        offset: int | None,
        now: float,
    ) -> None:
        """Feed one decoded publication of the book's channel, in stream order."""
        # hot path, inlined on purpose: an in-order DIFF on a synced book is merged here.
        # A book proven uncrossed can only cross by a new best price (an update or a
        # removal never moves a best price inward): the check runs only then.
        self.heard_at = now
        if offset is not None:
            last = self.last_offset
            if last is not None and offset != last + 1:
                self._lose("gap")
            self.last_offset = offset
        if update_type != DIFF or self.state != SYNCED or timestamp < self._covered_until:
            self._not_merged(update_type, bids, asks, timestamp, offset, now)
            return
        try:
            top = self.bids.apply(bids) if bids else False
            if asks and self.asks.apply(asks):
                top = True
        except BookDataError:
            self._lose("bad_data")
            return
        if top and crossed(self.bids, self.asks):
            self._lose("crossed")
            return
        self.diffs_applied += 1
        self.timestamp = timestamp
        self.updated_at = now
        if self.changes is not None:
            self.changes.append(BookChange("diff", bids, asks, timestamp, offset))

    def _not_merged(
        self,
        update_type: str,
        bids: Sequence[Row],
        asks: Sequence[Row],
        timestamp: int,
        offset: int | None,
        now: float,
    ) -> None:
        """A publication that is not an in-order DIFF on a synced book."""
        if update_type == DIFF:
            if self.state == SYNCED:
                self.diffs_dropped += 1  # older than the last REST snapshot, so in it
            else:
                self._hold(_Buffered(timestamp, bids, asks, offset))
        elif update_type == SNAPSHOT:
            self._install(bids, asks, timestamp, offset, now, ())
        else:  # DELTA, or a kind nobody documented: never applied
            self._lose("delta")

    def gap(self, reason: str = "gap") -> None:
        """The stream lost continuity on the channel (``reason``: why, for :attr:`resyncs`)."""
        self._lose(reason)

    def set_live(self, epoch: str | None, offset: int | None) -> None:
        """The channel is subscribed again at stream position (``epoch``, ``offset``).

        Publications replayed by a recovery were fed before this call: a
        position past the last one fed means something was not replayed.
        """
        if self.epoch is not None and epoch is not None and epoch != self.epoch:
            self._lose("epoch")
        elif offset is not None and self.last_offset is not None and offset != self.last_offset:
            self._lose("gap")
        if epoch is not None:
            self.epoch = epoch
        if offset is not None:
            self.last_offset = offset
        self.live = True

    def set_not_live(self) -> None:
        """The channel is not subscribed now (disconnected, unsubscribed, refused)."""
        self.live = False

    # ------------------------------------------------------------------ snapshots

    def take_snapshot_request(self) -> int:
        """Note that a REST snapshot is being fetched; pass the returned token back with it."""
        self._in_flight = self._generation
        return self._generation

    def snapshot_failed(self, token: int) -> None:
        """The fetch asked with ``token`` failed: :attr:`snapshot_wanted` again."""
        if self._in_flight == token:
            self._in_flight = None

    def rest_snapshot(
        self, token: int, bids: Sequence[Row], asks: Sequence[Row], timestamp: int, now: float
    ) -> bool:
        """A REST snapshot fetched with ``token``: True when it proved the book (now SYNCED).

        False when it was refused (not proven: :attr:`snapshot_wanted`
        again) or not needed any more (a published snapshot came first).
        """
        if self._in_flight == token:
            self._in_flight = None
        if self.state == SYNCED:
            return False
        buffer = self._buffer
        proven = token == self._generation or (bool(buffer) and timestamp >= buffer[0].timestamp)
        if not proven:
            self.snapshots_refused += 1
            return False
        replay = [b for b in buffer if b.timestamp >= timestamp]
        self.diffs_dropped += len(buffer) - len(replay)
        self._covered_until = timestamp
        self._install(bids, asks, timestamp, None, now, replay)
        return self.state == SYNCED

    # ------------------------------------------------------------------ internals

    def _lose(self, reason: str) -> None:
        """Continuity is lost: the book is not proven until a snapshot proves it again."""
        self._generation += 1
        self._buffer = []
        if self.state == SYNCED:
            self.resyncs[reason] = self.resyncs.get(reason, 0) + 1
            self.state = RESYNCING

    def _hold(self, item: _Buffered) -> None:
        if len(self._buffer) >= self.max_buffer:
            self.buffer_overflows += 1
            self._generation += 1  # what was dropped must be in the next snapshot
            self._buffer = []
        self._buffer.append(item)

    def _install(
        self,
        bids: Sequence[Row],
        asks: Sequence[Row],
        timestamp: int,
        offset: int | None,
        now: float,
        replay: Iterable[_Buffered],
    ) -> None:
        """Replace the book with a snapshot, replay ``replay`` on it, and check it."""
        self._buffer = []
        try:
            self.bids.replace(bids)
            self.asks.replace(asks)
            for item in replay:
                self.bids.apply(item.bids)
                self.asks.apply(item.asks)
                self.diffs_applied += 1
                timestamp = max(timestamp, item.timestamp)
        except BookDataError:
            self._invalid("bad_data")
            return
        if crossed(self.bids, self.asks):
            self._invalid("crossed")
            return
        self.state = SYNCED
        self.snapshots_applied += 1
        self.timestamp = timestamp
        self.updated_at = now
        if self.changes is not None:
            self.changes.append(
                BookChange("snapshot", self.bids_rows(), self.asks_rows(), timestamp, offset)
            )

    def _invalid(self, reason: str) -> None:
        """A snapshot (and its replay) did not give a valid book: count it and ask again."""
        self.state = SYNCED  # so that _lose counts the reason once
        self._lose(reason)
        self.bids.clear()
        self.asks.clear()

    def bids_rows(self) -> list[list[str]]:
        """Every bid as ``[price, quantity]`` strings, best first."""
        return [[str(level.price), str(level.quantity)] for level in self.bids.top()]

    def asks_rows(self) -> list[list[str]]:
        """Every ask as ``[price, quantity]`` strings, best first."""
        return [[str(level.price), str(level.quantity)] for level in self.asks.top()]
