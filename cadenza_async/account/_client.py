"""The client's account methods (a mixin of CadenzaClient) and the object that owns their state.

:class:`Account` owns the account REST calls, the live portfolios and what
the account channels say about the accounts themselves
(``event.trading_account.updated``): readers of
:meth:`AccountMethods.trading_account_updates` get each one, and an account
that becomes unavailable (INACTIVE, LOCKED, DISCONNECTED, UNAVAILABLE) ends
the cancels and submits pending on it at once with
:class:`~cadenza_async.account.TradingAccountUnavailableError`.
:class:`AccountMethods` is what :class:`~cadenza_async.CadenzaClient`
gains: ``get_portfolio``, ``portfolio``, ``get_trading_accounts``,
``trading_account_updates``, ``request_quote``, ``execute_quote``,
``health``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Final

import msgspec

from .._validate import check_account_id, check_client_order_id, check_timeout
from ..errors import CadenzaError
from ..http import HttpApi
from ..models import AccountEvent, NewOrder, SubmitResult
from ..stream import OrderStream
from ._rest import AccountRest, quote_request
from .errors import QuoteExpiredError, TradingAccountUnavailableError
from .live import LivePortfolio, PortfolioViews
from .models import Health, Portfolio, Quote, TradingAccount, decode_trading_account_event

if TYPE_CHECKING:
    from ..placing import Placer

__all__ = ["Account", "AccountMethods", "quote_order"]

log = logging.getLogger("cadenza_async.account")

#: Updates a slow ``trading_account_updates()`` reader may fall behind by (the oldest go).
UPDATES_BUFFER: Final = 1000

FailAccount = Callable[[str, Callable[[], CadenzaError]], None]


class Account:
    """One client's account state: REST, live portfolios, trading-account events."""

    def __init__(
        self,
        http: HttpApi,
        stream: OrderStream,
        ensure_stream: Callable[[], Awaitable[None]],
        request_timeout: float,
        keeps: Callable[[str], bool],
        fail_account: FailAccount,
    ) -> None:
        self.rest = AccountRest(http, request_timeout)
        self.views = PortfolioViews(stream, self.rest, ensure_stream, keeps)
        self._fail_account = fail_account
        self._readers: list[collections.deque[TradingAccount]] = []
        self._wake: asyncio.Event | None = None
        self.statuses: dict[str, str | None] = {}
        self.bad_account_events = 0
        self.closed = False

    def holds(self, account: str) -> bool:
        """True while a live portfolio of ``account`` is held (keep its channel)."""
        return self.views.holds(account)

    async def aclose(self) -> None:
        self.closed = True
        if self._wake is not None:
            self._wake.set()
        await self.views.aclose()

    def on_account_event(self, event: AccountEvent, account: str) -> None:
        """The stream's ``on_account_event`` listener: trading-account events are acted on here."""
        if event.kind != "trading_account":
            return
        try:
            info = decode_trading_account_event(event.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.bad_account_events += 1
            log.warning("a trading account event on %s did not decode", account)
            return
        if info.trading_account_id and info.trading_account_id != account:
            self.bad_account_events += 1
            return
        if not info.trading_account_id:
            info = msgspec.structs.replace(info, trading_account_id=account)
        self.statuses[account] = info.status
        if not info.available:
            status = info.status
            log.warning("trading account %s is %s: failing the work pending on it", account, status)
            self._fail_account(account, lambda: TradingAccountUnavailableError(account, status))
        for reader in self._readers:
            reader.append(info)
        if self._wake is not None:
            self._wake.set()

    async def updates(self) -> AsyncIterator[TradingAccount]:
        reader: collections.deque[TradingAccount] = collections.deque(maxlen=UPDATES_BUFFER)
        self._readers.append(reader)
        try:
            while not self.closed:
                while reader:
                    yield reader.popleft()
                wake = self._wake
                if wake is None or wake.is_set():
                    wake = self._wake = asyncio.Event()
                await wake.wait()
        finally:
            self._readers.remove(reader)


def quote_order(
    quote: Quote, trading_account_id: str | None, client_order_id: str | None
) -> NewOrder:
    """The submit that executes ``quote`` (``orderType`` QUOTED, its ``quoteId``), checked.

    Its ``clientOrderId`` defaults to ``quote-{quoteId}``: a quote can be
    executed once, and executing it again sends the same idempotency key,
    so it never places a second order. Raises ``ValueError`` for a quote
    without side, quantity or instrument.
    """
    if not isinstance(quote, Quote):
        raise TypeError(f"quote must be a Quote from request_quote, not {type(quote).__name__}")
    instrument = quote.instrument_id
    if instrument is None and quote.base_asset and quote.quote_asset:
        venue = quote.venue or "FERMATA"
        instrument = f"{venue}:{quote.base_asset}/{quote.quote_asset}"
    if instrument is None or quote.order_side is None or quote.quantity is None:
        raise ValueError(f"quote {quote.quote_id} names no instrument, side or quantity")
    from ..placing import new_order

    return new_order(
        instrument_id=instrument,
        order_side=quote.order_side,
        order_type="QUOTED",
        quantity=quote.quantity,
        client_order_id=f"quote-{quote.quote_id}"
        if client_order_id is None
        else check_client_order_id(client_order_id),
        trading_account_id=trading_account_id or quote.trader_account_id,
        quote_id=quote.quote_id,
    )


class AccountMethods:
    """Account methods of :class:`~cadenza_async.CadenzaClient` (``docs/guides/portfolio.md``,
    ``docs/guides/quotes.md``)."""

    _account: Account
    _placer: Placer

    def _check_open(self) -> None:  # provided by the client
        raise NotImplementedError

    def _start_stream(self) -> asyncio.Task[None]:  # provided by the client
        raise NotImplementedError

    async def get_portfolio(
        self, trading_account_id: str | None = None, *, timeout: float | None = None
    ) -> list[Portfolio]:
        """The portfolios (of one account, or of every account the token sees) by REST.

        Each :class:`~cadenza_async.account.Portfolio` has its balances
        (free, locked, borrowed, total: exact decimals), open positions and
        summary. ``timeout`` (default ``timeouts.request``) bounds every page.
        """
        self._check_open()
        if trading_account_id is not None:
            trading_account_id = check_account_id(trading_account_id)
        rest = self._account.rest
        return await rest.portfolios(trading_account_id, deadline=rest.deadline(timeout))

    def portfolio(self, trading_account_id: str) -> LivePortfolio:
        """A live portfolio: ``async with client.portfolio(account) as live: await live.wait_ready()``.

        Seeded by REST, kept current by ``event.portfolio.updated`` on the
        account's channel (shared with the account's cancels and submits),
        reloaded after any gap. See :class:`~cadenza_async.account.LivePortfolio`.
        """
        self._check_open()
        return self._account.views.portfolio(check_account_id(trading_account_id))

    async def get_trading_accounts(
        self,
        *,
        venue: str | None = None,
        status: str | None = None,
        timeout: float | None = None,
    ) -> list[TradingAccount]:
        """Every trading account the token sees (of ``venue``, in ``status``), with its status."""
        self._check_open()
        rest = self._account.rest
        return await rest.trading_accounts(
            venue=venue, status=status, deadline=rest.deadline(timeout)
        )

    async def trading_account_updates(self) -> AsyncIterator[TradingAccount]:
        """Every ``event.trading_account.updated`` on the subscribed accounts, as it arrives.

        An account that becomes unavailable has already failed the work
        pending on it when its update is read here. Ends when the client closes.
        """
        self._check_open()
        async for update in self._account.updates():
            yield update

    async def request_quote(
        self,
        *,
        dealer_account_id: str,
        order_side: str,
        instrument_id: str | None = None,
        base_asset: str | None = None,
        quote_asset: str | None = None,
        quantity: str | Decimal | None = None,
        quote_quantity: str | Decimal | None = None,
        trader_account_id: str | None = None,
        ttl: int | None = None,
        quote_request_id: str | None = None,
        timeout: float | None = None,
    ) -> Quote:
        """Ask the RFQ dealer for a firm quote: a :class:`~cadenza_async.account.Quote`.

        Give ``instrument_id`` (or ``base_asset`` and ``quote_asset``) and
        ``quantity`` (or ``quote_quantity``); ``ttl`` asks for that many
        seconds of validity (1..300; the server's default is 10). Every field
        is checked before any I/O. The request carries a ``quoteRequestId``
        (generated when None), so a retry never asks twice.
        """
        self._check_open()
        request = quote_request(
            dealer_account_id=dealer_account_id,
            order_side=order_side,
            instrument_id=instrument_id,
            base_asset=base_asset,
            quote_asset=quote_asset,
            quantity=quantity,
            quote_quantity=quote_quantity,
            trader_account_id=trader_account_id,
            ttl=ttl,
            quote_request_id=quote_request_id,
        )
        rest = self._account.rest
        return await rest.request_quote(request, deadline=rest.deadline(timeout))

    async def execute_quote(
        self,
        quote: Quote,
        *,
        trading_account_id: str | None = None,
        client_order_id: str | None = None,
        timeout: float | None = None,
    ) -> SubmitResult:
        """Execute ``quote`` and return once the exchange proved the order accepted or refused.

        The quote goes out as a submit (``orderType`` QUOTED, its
        ``quoteId``, its side and quantity) on ``trading_account_id``
        (default: the quote's trader account, else the configured one),
        with the same proof and idempotency as ``submit_and_confirm``: its
        ``clientOrderId`` defaults to ``quote-{quoteId}``, so executing a
        quote twice places one order. The call is bounded by the earlier
        of ``timeout`` and the quote's expiry (read with this machine's
        clock: ``doctor`` checks its skew). Raises
        :class:`~cadenza_async.account.QuoteExpiredError` for a quote
        already expired (nothing is sent), and what ``submit_and_confirm`` raises.
        """
        self._check_open()
        order = self._placer.prepare(quote_order(quote, trading_account_id, client_order_id))
        check_timeout(timeout)
        left = quote.expires_in(time.time_ns() // 1_000_000)
        if left <= 0:
            raise QuoteExpiredError(quote.quote_id, -left)
        bounded = min(self._placer._check_timeout(timeout), left)
        self._start_stream()
        return await self._placer.submit_and_confirm(order, timeout=bounded)

    async def health(self, *, timeout: float | None = None) -> Health:
        """``GET /api/v3/health`` (no token needed): a :class:`~cadenza_async.account.Health`.

        Asked once (a probe: no retry). A 503 is an answer (``status``
        ``"unhealthy"``, ``http_status`` 503), not an error.
        """
        self._check_open()
        rest = self._account.rest
        return await rest.health(deadline=rest.deadline(timeout))
