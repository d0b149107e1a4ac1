"""Account state and quotes: portfolios (REST and live), trading accounts, RFQ quotes, health.

The client's methods (:meth:`CadenzaClient.get_portfolio
<cadenza_async.CadenzaClient.get_portfolio>`, ``portfolio``,
``get_trading_accounts``, ``trading_account_updates``, ``request_quote``,
``execute_quote``, ``health``) are the way in; this package holds the
models, the live portfolio and the errors they raise.
"""

from __future__ import annotations

from .errors import QuoteExpiredError, ReflectionTimeout, TradingAccountUnavailableError
from .live import LivePortfolio, PortfolioChange, Reflection
from .models import (
    Balance,
    Health,
    Portfolio,
    PortfolioSummary,
    Position,
    Quote,
    TradingAccount,
)

__all__ = [
    "Balance",
    "Health",
    "LivePortfolio",
    "Portfolio",
    "PortfolioChange",
    "PortfolioSummary",
    "Position",
    "Quote",
    "QuoteExpiredError",
    "Reflection",
    "ReflectionTimeout",
    "TradingAccount",
    "TradingAccountUnavailableError",
]
