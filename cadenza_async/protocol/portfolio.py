"""A live portfolio's merge and continuity rules, sans-I/O: updates in, a proven portfolio out.

Rule of this file: no sockets, no clocks, no tasks. The caller feeds every
publication of ``tradingAccount:{id}`` with its Centrifugo offset (the
portfolio updates decoded, anything else as ``None``: its offset still
counts), every gap and live/not-live change the stream reports, and every
REST portfolio it fetched because :attr:`PortfolioSync.reload_wanted` said
so, each with ``now``. The portfolio is **never silently wrong**: it says
:attr:`PortfolioSync.usable` only while everything it holds is proven by an
unbroken chain from a snapshot (a REST load or a ``SNAPSHOT`` event).

``event.portfolio.updated`` carries an ``RpcPortfolio`` whose ``updateMode``
is ``SNAPSHOT`` or ``DELTA``; the legacy event carries the REST
``Portfolio`` (no ``updateMode``: the whole portfolio). DELTA's semantics
are not specified (``spec/cadenza-market-account.md``, Q21): the keys the
spec suggests are used (balances by ``securitySymbol``, positions by
``positionId``), and anything that cannot be merged by them is healed by a
REST reload instead of guessed at:

================================  =========================================================
input                             what happens
================================  =========================================================
first live, nothing loaded        LOADING: a REST load is wanted; updates are buffered
SNAPSHOT update (or one without   replaces balances, open positions and the summary; SYNCED
``updateMode``: a whole           (a published snapshot is in stream order: it proves
portfolio)                        everything before it)
DELTA while SYNCED                balances upserted by ``securitySymbol``, positions by
                                  ``positionId`` (``status`` CLOSED removes one), the
                                  summary replaced when present
an entry older than the one held  skipped (``updatedAt`` of both known, the new one older):
                                  an older state never overwrites a newer one
a CLOSED position seen again,     skipped: a closed position does not come back from an
older than its closing            older update
DELTA while LOADING/RELOADING     buffered (bounded; an overflow asks for another reload)
DELTA entry without its key,      RELOADING, reason ``unmergeable``: never applied
an ``updateMode`` not listed
offset not last + 1               RELOADING, reason ``gap``
``gap(reason)`` from the stream   RELOADING with that reason (``not_recovered``, ...)
live again, another epoch         RELOADING, reason ``epoch``
live again, offset moved          RELOADING, reason ``gap`` (something was not replayed)
not live (disconnected, ...)      not usable until live again (recovered: usable at once)
REST portfolio asked after the    replaces everything; the updates buffered since the
latest loss                       request went out are replayed on it (older entries
                                  skipped by the rule above); SYNCED
REST portfolio asked before a     refused (counted); another reload is wanted
later loss
================================  =========================================================

The times compared are the server's (``updatedAt``, Unix ms): the portfolio
never compares a server time with the caller's clock. :attr:`PortfolioSync.updated_at`
is the newest server time applied, which is what
:meth:`~cadenza_async.account.LivePortfolio.reflects` waits on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Generic, NamedTuple, Protocol, TypeVar

__all__ = [
    "PORTFOLIO_STATES",
    "RELOAD_REASONS",
    "PortfolioSync",
    "PortfolioUpdate",
]

LOADING: Final = "loading"
SYNCED: Final = "synced"
RELOADING: Final = "reloading"
PORTFOLIO_STATES: Final = (LOADING, SYNCED, RELOADING)

#: Why a portfolio lost its proof (keys of :attr:`PortfolioSync.reloads`).
RELOAD_REASONS: Final = (
    "gap",
    "not_recovered",
    "unsubscribed",
    "unrecoverable",
    "epoch",
    "unmergeable",
    "bad_data",
    "overflow",
)

SNAPSHOT: Final = "SNAPSHOT"
DELTA: Final = "DELTA"
CLOSED: Final = "CLOSED"
#: Closed positions remembered (so an older update cannot bring one back).
MAX_CLOSED: Final = 10_000


class BalanceLike(Protocol):
    @property
    def security_symbol(self) -> str | None: ...

    @property
    def updated_at(self) -> int | None: ...


class PositionLike(Protocol):
    @property
    def position_id(self) -> str | None: ...

    @property
    def status(self) -> str | None: ...

    @property
    def updated_at(self) -> int | None: ...


B = TypeVar("B", bound=BalanceLike)
P = TypeVar("P", bound=PositionLike)
S = TypeVar("S")


class PortfolioUpdate(NamedTuple, Generic[B, P, S]):
    """One portfolio payload: ``mode`` ``"SNAPSHOT"``, ``"DELTA"`` or None (a whole portfolio).

    ``balances``/``positions`` None: the payload did not carry them (a DELTA
    then changes none). ``updated_at``: the payload's server time (Unix ms) or None.
    """

    mode: str | None
    balances: Sequence[B] | None
    positions: Sequence[P] | None
    summary: S | None
    updated_at: int | None


class _Held(NamedTuple, Generic[B, P, S]):
    update: PortfolioUpdate[B, P, S]
    after_request: bool  # arrived after the pending REST load was asked for


def _older(new: int | None, held: int | None) -> bool:
    return new is not None and held is not None and new < held


class PortfolioSync(Generic[B, P, S]):
    """One account's portfolio and the proof that it is complete; see the module docstring."""

    def __init__(self, *, max_buffer: int = 10_000) -> None:
        self.balances: dict[str, B] = {}
        self.positions: dict[str, P] = {}
        self.summary: S | None = None
        self.state = LOADING
        self.live = False
        self.max_buffer = max_buffer
        self.epoch: str | None = None
        self.last_offset: int | None = None
        self.updated_at: int | None = None  # the newest server time applied (ms)
        self.applied_at: float | None = None  # ``now`` of the last change applied
        self.source: str | None = None  # "event" or "rest": what the last change came from
        self.reloads: dict[str, int] = {}
        self.loads = 0  # REST portfolios applied
        self.loads_refused = 0
        self.snapshots = 0  # SNAPSHOT updates applied from the stream
        self.deltas = 0  # DELTA updates merged
        self.entries_skipped = 0  # entries older than the one held
        self.changes: list[PortfolioUpdate[B, P, S]] | None = None  # set to a list to collect
        self._closed: dict[str, int | None] = {}  # position id -> when it was closed
        self._buffer: list[_Held[B, P, S]] = []
        self._generation = 0  # bumped at each loss of continuity
        self._in_flight: int | None = None  # the generation a pending load was asked at

    def __repr__(self) -> str:
        return (
            f"<PortfolioSync {self.state} live={self.live} balances={len(self.balances)} "
            f"positions={len(self.positions)} reloads={self.reloads}>"
        )

    # ------------------------------------------------------------------ queries

    @property
    def usable(self) -> bool:
        """True while the portfolio is proven complete and its channel is live."""
        return self.live and self.state == SYNCED

    @property
    def reload_wanted(self) -> bool:
        """True when a REST load should be fetched now (none is in flight)."""
        return self.state != SYNCED and self._in_flight is None

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    # ------------------------------------------------------------------ stream input

    def publication(
        self, offset: int | None, update: PortfolioUpdate[B, P, S] | None, now: float
    ) -> None:
        """Feed one publication of the channel, in stream order (``update`` None: not a portfolio)."""
        last = self.last_offset
        if offset is not None:
            if last is not None and offset != last + 1:
                self._lose("gap")
            self.last_offset = offset
        if update is None:
            return
        mode = update.mode
        if mode not in (None, SNAPSHOT, DELTA) or (mode == DELTA and not _mergeable(update)):
            self._lose("unmergeable")
            return
        if mode == DELTA and self.state != SYNCED:
            self._hold(update)
            return
        self._apply(update, now, "event")

    def bad_data(self) -> None:
        """A portfolio update that did not decode: whatever it said is unknown now."""
        self._lose("bad_data")

    def gap(self, reason: str = "gap") -> None:
        """The stream lost continuity on the channel (``reason``: why, for :attr:`reloads`)."""
        self._lose(reason)

    def set_live(self, epoch: str | None, offset: int | None) -> None:
        """The channel is subscribed at stream position (``epoch``, ``offset``)."""
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
        """The channel is not subscribed now."""
        self.live = False

    # ------------------------------------------------------------------ REST loads

    def take_reload_request(self) -> int:
        """Note that a REST load is being fetched; pass the returned token back with it."""
        self._in_flight = self._generation
        self._buffer = [_Held(held.update, False) for held in self._buffer]
        return self._generation

    def reload_failed(self, token: int) -> None:
        """The fetch asked with ``token`` failed: :attr:`reload_wanted` again."""
        if self._in_flight == token:
            self._in_flight = None

    def rest_snapshot(self, token: int, update: PortfolioUpdate[B, P, S], now: float) -> bool:
        """A REST portfolio fetched with ``token``: True when it proved the portfolio (SYNCED).

        False when refused (asked before a later loss: :attr:`reload_wanted`
        again) or not needed any more (a published snapshot came first).
        """
        if self._in_flight == token:
            self._in_flight = None
        if token != self._generation:
            self.loads_refused += 1
            return False
        if self.state == SYNCED:
            return False
        replay = [held.update for held in self._buffer if held.after_request]
        self._buffer = []
        self.loads += 1
        self._replace(update, now, "rest", force=True)
        for item in replay:
            self._apply(item, now, "event")
        return self.state == SYNCED

    # ------------------------------------------------------------------ internals

    def _lose(self, reason: str) -> None:
        self._generation += 1
        self._buffer = []
        if self.state == SYNCED:
            self.reloads[reason] = self.reloads.get(reason, 0) + 1
            self.state = RELOADING

    def _hold(self, update: PortfolioUpdate[B, P, S]) -> None:
        if len(self._buffer) >= self.max_buffer:
            self._generation += 1  # what was dropped must be in the next load
            self._buffer = []
            self.reloads["overflow"] = self.reloads.get("overflow", 0) + 1
        self._buffer.append(_Held(update, self._in_flight is not None))

    def _apply(self, update: PortfolioUpdate[B, P, S], now: float, source: str) -> None:
        if update.mode == DELTA:
            self._merge(update, now, source)
        else:
            self._replace(update, now, source, force=False)

    def _replace(
        self, update: PortfolioUpdate[B, P, S], now: float, source: str, *, force: bool
    ) -> None:
        """A whole portfolio: replaces what is held (unless older than what is held)."""
        if not force and _older(update.updated_at, self.updated_at) and self.state == SYNCED:
            self.entries_skipped += 1
            return
        balances = {b.security_symbol: b for b in update.balances or () if b.security_symbol}
        positions = {
            p.position_id: p for p in update.positions or () if p.position_id and p.status != CLOSED
        }
        self.balances = balances
        self.positions = positions
        self.summary = update.summary
        if source == "event":
            self.snapshots += 1
        self._done(update, now, source)
        self._buffer = []
        self.state = SYNCED

    def _merge(self, update: PortfolioUpdate[B, P, S], now: float, source: str) -> None:
        balances = self.balances
        for balance in update.balances or ():
            key = balance.security_symbol
            assert key is not None  # (checked by _mergeable)
            held = balances.get(key)
            if held is not None and _older(balance.updated_at, held.updated_at):
                self.entries_skipped += 1
                continue
            balances[key] = balance
        for position in update.positions or ():
            self._merge_position(position)
        if update.summary is not None and not _older(update.updated_at, self.updated_at):
            self.summary = update.summary
        self.deltas += 1
        self._done(update, now, source)

    def _merge_position(self, position: P) -> None:
        key = position.position_id
        assert key is not None  # (checked by _mergeable)
        held = self.positions.get(key)
        when = position.updated_at
        if held is not None and _older(when, held.updated_at):
            self.entries_skipped += 1
            return
        if key in self._closed and (when is None or not _older(self._closed[key], when)):
            if position.status != CLOSED:
                self.entries_skipped += 1  # closed at or after this update: stays closed
            return
        if position.status == CLOSED:
            self.positions.pop(key, None)
            if len(self._closed) >= MAX_CLOSED:
                self._closed.pop(next(iter(self._closed)))
            self._closed[key] = when
        else:
            self.positions[key] = position

    def _done(self, update: PortfolioUpdate[B, P, S], now: float, source: str) -> None:
        when = update.updated_at
        if when is not None and (self.updated_at is None or when > self.updated_at):
            self.updated_at = when
        self.applied_at = now
        self.source = source
        if self.changes is not None:
            self.changes.append(update)


def _mergeable(update: PortfolioUpdate[B, P, S]) -> bool:
    """True when every entry of a DELTA has its merge key."""
    return all(b.security_symbol for b in update.balances or ()) and all(
        p.position_id for p in update.positions or ()
    )
