"""The live portfolio: one account's balances and positions, seeded by REST, kept current by events.

The same idea as the live market views (:mod:`cadenza_async.market.live`),
not a copy of it: a view of one channel (``tradingAccount:{id}``), kept
current from its publications and healed from REST whenever continuity is
not proven. The merge and continuity rules are the sans-I/O
:class:`~cadenza_async.protocol.portfolio.PortfolioSync`; this module
decodes, fetches and waits. Every holder of one account shares one view;
the account's channel is shared with the cancels, submits and order
updates of that account, so the last holder leaving releases it only when
none of them needs it (:class:`PortfolioViews`).

:meth:`LivePortfolio.reflects` answers the question after a proven fill:
does the balance I read include it? See its docstring for what it can and
cannot prove.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Final, Literal, NamedTuple

import msgspec

from ..errors import CadenzaError
from ..market.live import MarketViews, _ChannelView, _Handle
from ..models import AccountEvent, CancelResult, SubmitResult, decode_channel_event
from ..protocol.centrifugo import StreamPosition
from ..protocol.portfolio import PortfolioSync, PortfolioUpdate
from ..protocol.proof import final_slice
from ..stream import OrderStream, channel_for
from ._rest import AccountRest
from .errors import ReflectionTimeout
from .models import (
    Balance,
    Portfolio,
    PortfolioSummary,
    Position,
    TradingAccount,
    decode_portfolio_event,
    decode_trading_account_event,
)

__all__ = ["LivePortfolio", "PortfolioChange", "PortfolioViews", "Reflection"]

log = logging.getLogger("cadenza_async.account")

#: Orders whose arrival on the channel a portfolio view remembers (for reflects' ties).
_ORDERS_HEARD: Final = 4096

Update = PortfolioUpdate[Balance, Position, PortfolioSummary]


class PortfolioChange(NamedTuple):
    """One change applied: ``kind`` ``"snapshot"`` (everything replaced: a REST load or a
    SNAPSHOT event) or ``"delta"`` (the entries listed changed; a CLOSED position went),
    with the server time of the change (Unix ms, or None)."""

    kind: str
    balances: list[Balance]
    positions: list[Position]
    updated_at: int | None


class Reflection(NamedTuple):
    """What :meth:`LivePortfolio.reflects` saw: the portfolio shows the order's outcome.

    ``source`` ``"stream"``: the live view showed it (an event, or a load it
    made anyway); ``"rest"``: only the REST reload at the deadline did (the
    view now holds that reload). ``portfolio_updated_at`` and
    ``order_updated_at`` are the two server times compared (Unix ms);
    ``waited`` the seconds the call took.
    """

    source: Literal["stream", "rest"]
    portfolio_updated_at: int
    order_updated_at: int
    waited: float


def update_of(portfolio: Portfolio) -> Update:
    """The sans-I/O core's input for one decoded portfolio.

    A payload without its own time takes the newest of its entries' times
    (None when none has one).
    """
    when = portfolio.updated_at
    if when is None:
        times = [b.updated_at for b in portfolio.balances or () if b.updated_at is not None]
        times += [p.updated_at for p in portfolio.positions or () if p.updated_at is not None]
        when = max(times, default=None)
    return PortfolioUpdate(
        portfolio.update_mode,
        portfolio.balances,
        portfolio.positions,
        portfolio.summary,
        when,
    )


def _change_of(update: Update) -> PortfolioChange:
    kind = "delta" if update.mode == "DELTA" else "snapshot"
    return PortfolioChange(
        kind, list(update.balances or ()), list(update.positions or ()), update.updated_at
    )


class _PortfolioView(_ChannelView[PortfolioChange]):
    """One account's live portfolio (a :class:`~cadenza_async.stream.ChannelObserver`)."""

    views: PortfolioViews

    def __init__(self, views: PortfolioViews, account: str) -> None:
        super().__init__(views, channel_for(account), account)
        self.account = account
        self.sync: PortfolioSync[Balance, Position, PortfolioSummary] = PortfolioSync()
        self.info: TradingAccount | None = None
        self.venue: str | None = None
        self.foreign = 0  # payloads naming another account, dropped
        # Arrival order on the account's channel, for reflects()'s ties: each input (a
        # publication, a REST load when it is asked) takes the next number; the state's
        # is that of the input that last set it; an order's, that of its latest event.
        self.inputs = 0
        self.state_input = 0
        self.order_inputs: dict[str, int] = {}

    @property
    def ready(self) -> bool:
        return self.sync.usable

    def _apply(self, data: msgspec.Raw, offset: int | None, now: float) -> None:
        sync = self.sync
        self.inputs += 1
        try:
            event = decode_channel_event(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            sync.publication(offset, None, now)  # a bad order event: the stream reports it
            return
        if not isinstance(event, AccountEvent):
            self._order_heard(event.trade_order_id)
            sync.publication(offset, None, now)
            return
        if event.kind == "trading_account":
            sync.publication(offset, None, now)
            self.info = decode_trading_account_event(event.data)
            return
        if event.kind != "portfolio":
            sync.publication(offset, None, now)
            return
        try:
            portfolio = decode_portfolio_event(event.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            sync.publication(offset, None, now)
            sync.bad_data()
            log.warning("%s: a portfolio update did not decode; reloading", self.channel)
            return
        if portfolio.trading_account_id and portfolio.trading_account_id != self.account:
            self.foreign += 1
            sync.publication(offset, None, now)
            return
        if portfolio.account_info is not None:
            self.info = portfolio.account_info
        self._feed(lambda: sync.publication(offset, update_of(portfolio), now), self.inputs)

    def _order_heard(self, order_id: str) -> None:
        """An order's event arrived on the channel (its arrival number kept, a bounded few)."""
        heard = self.order_inputs
        heard.pop(order_id, None)
        heard[order_id] = self.inputs
        if len(heard) > _ORDERS_HEARD:
            del heard[next(iter(heard))]  # the one heard longest ago

    def _feed(self, step: Callable[[], object], number: int) -> None:
        """Run ``step`` on the core, emitting what it applied to the readers of changes().

        ``number``: the input's arrival number, kept as the state's when it sets the time.
        """
        sync = self.sync
        if self._feeds:
            sync.changes = []
        before = sync.loads + sync.snapshots + sync.deltas
        try:
            step()
        finally:
            if sync.loads + sync.snapshots + sync.deltas != before:  # something applied
                self.state_input = number
            for update in sync.changes or ():
                self._emit(_change_of(update))
            sync.changes = None

    def _lost(self, reason: str) -> None:
        self.sync.gap(reason)

    def _went_live(self, position: StreamPosition | None) -> None:
        if position is None:
            self.sync.set_not_live()
        else:
            self.sync.set_live(position.epoch, position.offset)

    def _needs_heal(self) -> bool:
        return self.sync.reload_wanted

    async def _heal(self) -> None:
        await self.load(self.sync.take_reload_request(), None)

    async def load(self, token: int, deadline: float | None) -> Portfolio:
        """One REST load asked with ``token``, fed to the core; the portfolio read."""
        sync = self.sync
        rest = self.views.account_rest
        self.inputs += 1
        number = self.inputs  # a load shows what happened before it was asked, not after
        try:
            found = await rest.portfolios(self.account, deadline=deadline or rest.deadline(None))
        except BaseException:
            sync.reload_failed(token)
            raise
        portfolio = next(
            (p for p in found if p.trading_account_id in (self.account, "")),
            Portfolio(trading_account_id=self.account, balances=[], positions=[]),
        )
        if portfolio.venue is not None:
            self.venue = portfolio.venue
        now = self.views.loop.time()
        self._feed(lambda: sync.rest_snapshot(token, update_of(portfolio), now), number)
        return portfolio

    def _restart_item(self) -> PortfolioChange:
        sync = self.sync
        return PortfolioChange(
            "snapshot", list(sync.balances.values()), list(sync.positions.values()), sync.updated_at
        )

    def snapshot(self) -> Portfolio:
        sync = self.sync
        return Portfolio(
            trading_account_id=self.account,
            venue=self.venue,
            balances=list(sync.balances.values()),
            positions=list(sync.positions.values()),
            summary=sync.summary,
            account_info=self.info,
            updated_at=sync.updated_at,
        )


class LivePortfolio(_Handle[_PortfolioView]):
    """An account's portfolio kept current: ``async with client.portfolio(account) as live:``.

    Seeded by ``GET /api/v3/tradingAccount/portfolio/list`` and then kept
    current from ``event.portfolio.updated`` on the account's channel (see
    :mod:`cadenza_async.protocol.portfolio` for the merge rules). Reads are
    synchronous and exact: :meth:`balance`, :attr:`balances`,
    :attr:`positions`, :attr:`summary`, :attr:`portfolio`. Trust them while
    :attr:`usable` (not :attr:`stale`): the view reloads itself by REST
    whenever it cannot prove continuity, and :attr:`reloads` counts why.
    """

    async def __aenter__(self) -> LivePortfolio:
        await super().__aenter__()
        return self

    @property
    def trading_account_id(self) -> str:
        return self.view.account

    @property
    def usable(self) -> bool:
        """True while every entry is proven by an unbroken stream and the channel is live."""
        return self.view.sync.usable

    @property
    def stale(self) -> bool:
        """True while the view cannot vouch for what it holds (loading, reloading, not live)."""
        return not self.view.sync.usable

    @property
    def state(self) -> str:
        """``"loading"``, ``"synced"`` or ``"reloading"``."""
        return self.view.sync.state

    @property
    def reloads(self) -> dict[str, int]:
        """Reloads so far by reason (``gap``, ``not_recovered``, ``epoch``, ``unmergeable``, ...)."""
        return dict(self.view.sync.reloads)

    @property
    def updated_at(self) -> int | None:
        """The newest server time (Unix ms) of what the view applied."""
        return self.view.sync.updated_at

    @property
    def applied_at(self) -> float | None:
        """When (event-loop time) the last change was applied."""
        return self.view.sync.applied_at

    def balance(self, security_symbol: str) -> Balance | None:
        """The balance of ``security_symbol`` (``"USDT"``), or None when the account has none."""
        return self.view.sync.balances.get(security_symbol)

    @property
    def balances(self) -> dict[str, Balance]:
        return dict(self.view.sync.balances)

    @property
    def positions(self) -> dict[str, Position]:
        """Open positions by ``positionId``."""
        return dict(self.view.sync.positions)

    @property
    def summary(self) -> PortfolioSummary | None:
        return self.view.sync.summary

    @property
    def account(self) -> TradingAccount | None:
        """The trading account as its last ``event.trading_account.updated`` showed it (or None)."""
        return self.view.info

    @property
    def portfolio(self) -> Portfolio:
        """Everything held now, as one :class:`Portfolio`."""
        return self.view.snapshot()

    @property
    def stats(self) -> dict[str, int]:
        sync = self.view.sync
        return {
            "loads": sync.loads,
            "loads_refused": sync.loads_refused,
            "snapshots": sync.snapshots,
            "deltas": sync.deltas,
            "entries_skipped": sync.entries_skipped,
            "bad_publications": self.view.bad_publications,
            "foreign": self.view.foreign,
        }

    def changes(self) -> AsyncGenerator[PortfolioChange, None]:
        """Every change applied from now on (a reader far behind gets one ``"snapshot"``).

        Ends when the last holder of the portfolio leaves.
        """
        return self.view.items()

    async def reflects(
        self, result: CancelResult | SubmitResult, timeout: float = 5.0
    ) -> Reflection:
        """Return once the portfolio shows an update at or after ``result``'s proven order.

        Precisely: once the view is usable and the newest server time it
        applied (``updatedAt`` of a portfolio event or load) is at or after
        the ``updatedAt`` of the order that proved ``result``. At the
        deadline (less a final slice kept for it) the portfolio is reloaded
        by REST once: :class:`Reflection` ``source`` says which showed it
        (``"stream"`` or ``"rest"``). Raises :class:`~cadenza_async.account.ReflectionTimeout`
        when neither did, ``ValueError`` for an order without ``updatedAt``
        (nothing to compare) or a bad timeout.

        Its limits, stated once: both times are the **server's** (never this
        machine's clock), but they may come from two services (orders and
        portfolios), so "at or after" assumes they share a clock to the
        millisecond. An update stamped at or after the order's final event
        is taken to include it: that is ordering by time, not a causal link
        the API states; a portfolio service that stamps a state computed
        before the fill with a later time would fool it. An update in the
        same millisecond counts only when it arrived on the account's channel
        after the order's event (or was loaded by a REST request sent after
        it): a load made just before the fill, stamped in its millisecond, is
        not taken for it. An event without any time proves nothing (the reload
        at the deadline decides then).
        """
        order = result.order
        target = order.updated_at
        if target is None:
            raise ValueError("the result's order carries no updatedAt: nothing to compare with")
        if not (isinstance(timeout, (int, float)) and not isinstance(timeout, bool)) or not (
            0 < timeout < float("inf")
        ):
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        view = self.view
        loop = view.views.loop
        started = loop.time()
        deadline = started + timeout
        watch_until = deadline - final_slice(timeout)
        while True:
            sync = view.sync
            if sync.usable and self._shows(sync.updated_at, target, order.trade_order_id):
                assert sync.updated_at is not None
                return Reflection("stream", sync.updated_at, target, loop.time() - started)
            left = watch_until - loop.time()
            if left <= 0:
                break
            await self._changed(left)
        return await self._reload_at_deadline(order.trade_order_id, target, started, deadline)

    def _shows(self, updated_at: int | None, target: int, order_id: str) -> bool:
        """True when the state stamped ``updated_at`` comes after the order's final event.

        A later time does. The same millisecond does only when the state arrived on
        the channel after the order's event (or was asked by REST after it): a
        load stamped in the very millisecond of a fill, but made before it, is not
        taken for it.
        """
        if updated_at is None or updated_at < target:
            return False
        if updated_at > target:
            return True
        view = self.view
        heard = view.order_inputs.get(order_id)
        return heard is not None and view.state_input > heard

    async def _changed(self, timeout: float) -> None:
        """Wait for the next change applied, or a stream change, at most ``timeout`` seconds."""
        view = self.view
        waiter = view.views.loop.create_future()
        view._waiters.append(waiter)
        waiter_feed = view.views.stream.changed()
        try:
            await asyncio.wait(
                (waiter, waiter_feed), timeout=timeout, return_when="FIRST_COMPLETED"
            )
        finally:
            waiter.cancel()

    async def _reload_at_deadline(
        self, order_id: str, target: int, started: float, deadline: float
    ) -> Reflection:
        view = self.view
        sync = view.sync
        loop = view.views.loop
        sync.gap("deadline")  # the stream did not show it in time: trust a fresh load only
        token = sync.take_reload_request()
        portfolio: Portfolio | None = None
        try:
            portfolio = await view.load(token, max(deadline, loop.time() + 0.05))
        except CadenzaError as exc:
            view._after_input()  # (the view heals on its own)
            raise ReflectionTimeout(
                order_id, target, sync.updated_at, None, deadline - started
            ) from exc
        view._after_input()
        shown = update_of(portfolio).updated_at
        if shown is not None and shown >= target:
            return Reflection("rest", shown, target, loop.time() - started)
        raise ReflectionTimeout(order_id, target, shown, portfolio, deadline - started)


class PortfolioViews(MarketViews):
    """Every live portfolio of one client: one per account, shared, released when unheld.

    ``keeps(account)`` says whether another part of the client needs the
    account's channel (pending cancels or submits, ``order_updates()``, a
    subscribed account): the last holder of a portfolio then leaves it subscribed.
    """

    def __init__(
        self,
        stream: OrderStream,
        rest: AccountRest,
        ensure_stream: Callable[[], Awaitable[None]],
        keeps: Callable[[str], bool],
    ) -> None:
        super().__init__(stream, rest, ensure_stream)  # type: ignore[arg-type]
        self.account_rest = rest
        self._keeps = keeps

    def portfolio(self, account: str) -> LivePortfolio:
        channel = channel_for(account)
        return LivePortfolio(self, lambda: _PortfolioView(self, account), channel)

    def holds(self, account: str) -> bool:
        """True while a live portfolio of ``account`` is held."""
        return channel_for(account) in self._views

    def _release_channel(self, channel: str) -> None:
        account = channel[len(channel_for("")) :]
        if not self._keeps(account):
            self.stream.release(channel)
