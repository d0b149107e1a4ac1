"""The account methods of BlockingCadenzaClient, and its live portfolio for threads.

The same names as :class:`~cadenza_async.account._client.AccountMethods`,
no await. ``with client.portfolio(account) as live:`` reads on the client's
event loop (``live.balance("USDT")``, ``live.usable``), so a thread never
sees a portfolio half-way through an update; ``wait_ready`` and
``reflects`` block; ``changes()`` is a blocking iterator.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..market._blocking import BlockingLiveView, BlockingMarketMethods
from ..models import CancelResult, SubmitResult
from ._client import AccountMethods
from .live import LivePortfolio, Reflection
from .models import Health, Portfolio, Quote, TradingAccount

__all__ = ["BlockingAccountMethods", "BlockingLivePortfolio"]


class BlockingLivePortfolio(BlockingLiveView):
    """A live portfolio used from threads (see :class:`~cadenza_async.account.LivePortfolio`)."""

    def __enter__(self) -> BlockingLivePortfolio:
        super().__enter__()
        return self

    def reflects(self, result: CancelResult | SubmitResult, timeout: float = 5.0) -> Reflection:
        """Block until the portfolio shows ``result``'s order (see the async ``reflects``)."""
        view: LivePortfolio = self._live()
        return self._owner._run(lambda: view.reflects(result, timeout))


class BlockingAccountMethods(BlockingMarketMethods):
    """Account state and quotes on :class:`~cadenza_async.BlockingCadenzaClient`."""

    _client: Any  # (a CadenzaClient: its AccountMethods)

    def get_portfolio(
        self, trading_account_id: str | None = None, *, timeout: float | None = None
    ) -> list[Portfolio]:
        client: AccountMethods = self._client
        return self._run(lambda: client.get_portfolio(trading_account_id, timeout=timeout))

    def portfolio(self, trading_account_id: str) -> BlockingLivePortfolio:
        """``with client.portfolio(account) as live: live.wait_ready(); live.balance("USDT")``."""
        client: AccountMethods = self._client
        return BlockingLivePortfolio(self, lambda: client.portfolio(trading_account_id))

    def get_trading_accounts(self, **options: Any) -> list[TradingAccount]:
        client: AccountMethods = self._client
        return self._run(lambda: client.get_trading_accounts(**options))

    def trading_account_updates(self) -> Iterator[TradingAccount]:
        """Every ``event.trading_account.updated``, as a blocking iterator."""
        client: AccountMethods = self._client
        return self._iterate(client.trading_account_updates)

    def request_quote(self, **fields: Any) -> Quote:
        client: AccountMethods = self._client
        return self._run(lambda: client.request_quote(**fields))

    def execute_quote(self, quote: Quote, **options: Any) -> SubmitResult:
        client: AccountMethods = self._client
        return self._run(lambda: client.execute_quote(quote, **options))

    def health(self, *, timeout: float | None = None) -> Health:
        client: AccountMethods = self._client
        return self._run(lambda: client.health(timeout=timeout))
