"""The account package's errors: an unavailable account, an expired quote, a portfolio not reflecting.

::

    CadenzaError
      TradingAccountUnavailableError   the account went INACTIVE, LOCKED, DISCONNECTED or
                                       UNAVAILABLE: work pending on it ends with this
      QuoteExpiredError                a quote past its expiry, refused before any I/O
                                       (also a ValueError)
      ReflectionTimeout                the portfolio did not show a proven order's outcome
                                       by the deadline, not even reloaded (also a TimeoutError)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import CadenzaError

if TYPE_CHECKING:
    from .models import Portfolio

__all__ = ["QuoteExpiredError", "ReflectionTimeout", "TradingAccountUnavailableError"]


class TradingAccountUnavailableError(CadenzaError):
    """The trading account cannot trade now: ``status`` says why (INACTIVE, DISCONNECTED, ...).

    Raised by a cancel or a submit that was pending on the account when an
    ``event.trading_account.updated`` said so: the exchange will not prove
    it, so the wait ends at once instead of at its deadline. ``order_id``
    names the order (a submit's ``clientOrderId`` before the API named it).
    """

    def __init__(self, trading_account_id: str, status: str | None) -> None:
        super().__init__(
            f"trading account {trading_account_id} is {status or 'unavailable'}: "
            "the work pending on it cannot be proven"
        )
        self.trading_account_id = trading_account_id
        self.status = status


class QuoteExpiredError(CadenzaError, ValueError):
    """A quote whose ``expire_at`` has passed (by this machine's clock); nothing was sent."""

    def __init__(self, quote_id: str, expired_for: float) -> None:
        super().__init__(f"quote {quote_id} expired {expired_for:.3f}s ago: nothing was sent")
        self.quote_id = quote_id
        self.expired_for = expired_for


class ReflectionTimeout(CadenzaError, TimeoutError):
    """The portfolio showed no update at or after the order's final event, even reloaded.

    ``portfolio_updated_at`` is the newest server time the portfolio showed
    (Unix ms, None: it carried none), ``order_updated_at`` the order's;
    ``portfolio`` the REST portfolio read at the deadline (None when that
    read failed: ``__cause__`` says why).
    """

    def __init__(
        self,
        order_id: str,
        order_updated_at: int,
        portfolio_updated_at: int | None,
        portfolio: Portfolio | None,
        timeout: float,
    ) -> None:
        super().__init__(
            f"the portfolio did not reflect order {order_id} (updated at {order_updated_at} ms) "
            f"within {timeout:g}s: its newest update is "
            f"{'unknown' if portfolio_updated_at is None else f'{portfolio_updated_at} ms'}"
        )
        self.order_id = order_id
        self.order_updated_at = order_updated_at
        self.portfolio_updated_at = portfolio_updated_at
        self.portfolio = portfolio
