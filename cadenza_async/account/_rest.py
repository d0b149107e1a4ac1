"""AccountRest: the account, RFQ and health REST calls, checked before any I/O, decoded into typed models.

Each call has one deadline (``timeout``, default ``timeouts.request``)
covering every page it reads; the HTTP layer retries look-ups and
translates errors. A ``data`` that does not decode is an
:class:`~cadenza_async.errors.UnexpectedResponseError`, never a silent
empty answer.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Final, TypeVar

import msgspec

from .._validate import (
    check_account_id,
    check_client_order_id,
    check_decimal,
    check_enum,
    check_instrument_id,
    check_timeout,
)
from ..errors import UnexpectedResponseError
from ..http import HttpApi
from ..models import Envelope, encoder
from .models import (
    Health,
    Portfolio,
    Quote,
    TradingAccount,
    decode_health,
    decode_portfolios,
    decode_quote,
    decode_trading_accounts,
)

__all__ = [
    "ACCOUNT_LIST_PATH",
    "HEALTH_PATH",
    "PORTFOLIO_LIST_PATH",
    "RFQ_PATH",
    "AccountRest",
    "QuoteRequest",
    "quote_request",
]

PORTFOLIO_LIST_PATH: Final = "/api/v3/tradingAccount/portfolio/list"
ACCOUNT_LIST_PATH: Final = "/api/v3/tradingAccount/list"
RFQ_PATH: Final = "/api/v3/quote/rfq"
HEALTH_PATH: Final = "/api/v3/health"
_PAGE: Final = 1000
_MAX_PAGES: Final = 100

T = TypeVar("T")


class QuoteRequest(msgspec.Struct, rename="camel", omit_defaults=True, frozen=True):
    """The body of ``POST /api/v3/quote/rfq`` (``QuoteRfqRequest``), as sent."""

    dealer_account_id: str
    order_side: str
    quote_request_id: str
    instrument_id: str | None = None
    base_asset: str | None = None
    quote_asset: str | None = None
    quantity: str | None = None
    quote_quantity: str | None = None
    trader_account_id: str | None = None
    ttl: int | None = None


def quote_request(
    *,
    dealer_account_id: object,
    order_side: object,
    instrument_id: object = None,
    base_asset: object = None,
    quote_asset: object = None,
    quantity: object = None,
    quote_quantity: object = None,
    trader_account_id: object = None,
    ttl: object = None,
    quote_request_id: object = None,
) -> QuoteRequest:
    """An RFQ checked whole before any I/O; ``TypeError``/``ValueError`` naming the field.

    Exactly one of ``instrument_id`` and ``base_asset``/``quote_asset``, and
    exactly one of ``quantity`` and ``quote_quantity`` (the spec's reading
    of the request: the schema leaves it unsaid). ``ttl`` is whole seconds
    1..300 (the server's default 10 when None). ``quote_request_id`` (free
    text, the request's idempotency key) is generated when None.
    """
    side = check_enum(order_side, "order_side")
    _check_rfq_choices(instrument_id, base_asset, quote_asset, quantity, quote_quantity, ttl)
    return QuoteRequest(
        dealer_account_id=check_account_id(dealer_account_id),
        order_side=side,
        quote_request_id=str(uuid.uuid4())
        if quote_request_id is None
        else check_client_order_id(quote_request_id),
        instrument_id=None if instrument_id is None else check_instrument_id(instrument_id),
        base_asset=base_asset,  # type: ignore[arg-type]  # checked above
        quote_asset=quote_asset,  # type: ignore[arg-type]
        quantity=None if quantity is None else check_decimal(quantity, "quantity"),
        quote_quantity=None
        if quote_quantity is None
        else check_decimal(quote_quantity, "quote_quantity"),
        trader_account_id=None
        if trader_account_id is None
        else check_account_id(trader_account_id),
        ttl=ttl,  # type: ignore[arg-type]
    )


def _check_rfq_choices(
    instrument_id: object,
    base_asset: object,
    quote_asset: object,
    quantity: object,
    quote_quantity: object,
    ttl: object,
) -> None:
    """The RFQ's exactly-one-of rules and its ``ttl``; ``ValueError`` naming the fields."""
    if (instrument_id is None) == (base_asset is None and quote_asset is None):
        raise ValueError("give instrument_id, or base_asset and quote_asset (one of the two)")
    if instrument_id is None and (base_asset is None or quote_asset is None):
        raise ValueError("base_asset and quote_asset go together")
    for name, asset in (("base_asset", base_asset), ("quote_asset", quote_asset)):
        if asset is not None and (not isinstance(asset, str) or not asset.isalnum()):
            raise ValueError(f"{name} must be an asset symbol such as 'BTC', not {asset!r}")
    if (quantity is None) == (quote_quantity is None):
        raise ValueError("give quantity (base) or quote_quantity (quote currency): one of the two")
    if ttl is not None and (
        not isinstance(ttl, int) or isinstance(ttl, bool) or not 1 <= ttl <= 300
    ):
        raise ValueError(f"ttl must be whole seconds from 1 to 300, not {ttl!r}")


def _decoded(envelope: Envelope, decode: Callable[[msgspec.Raw], T], what: str) -> T:
    try:
        return decode(envelope.data)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, ArithmeticError) as exc:
        raise UnexpectedResponseError(
            f"the answer's data is not {what}: {str(exc)[:200]}",
            status=200,
            request_id=envelope.details.request_id if envelope.details else None,
        ) from None


class AccountRest:
    """The account endpoints over the client's :class:`~cadenza_async.http.HttpApi`."""

    def __init__(self, http: HttpApi, request_timeout: float) -> None:
        self._http = http
        self._timeout = request_timeout

    def deadline(self, timeout: float | None) -> float:
        """The event-loop time a call with ``timeout`` (None: the request timeout) ends by."""
        seconds = check_timeout(timeout)
        return asyncio.get_running_loop().time() + (self._timeout if seconds is None else seconds)

    async def _pages(
        self,
        path: str,
        params: list[tuple[str, str]],
        decode: Callable[[msgspec.Raw], list[T]],
        what: str,
        deadline: float,
    ) -> list[T]:
        found: list[T] = []
        for page in range(_MAX_PAGES):
            query = [*params, ("limit", str(_PAGE)), ("offset", str(page * _PAGE))]
            envelope = await self._http.get_envelope(path, query, deadline=deadline)
            batch = _decoded(envelope, decode, what)
            found += batch
            more = envelope.pagination.has_next if envelope.pagination else None
            if not batch or more is False or (more is None and len(batch) < _PAGE):
                break
        return found

    async def portfolios(
        self, trading_account_id: str | None, *, deadline: float
    ) -> list[Portfolio]:
        """Every portfolio (of one account), every page read by ``deadline``."""
        params = [] if trading_account_id is None else [("tradingAccountId", trading_account_id)]
        return await self._pages(
            PORTFOLIO_LIST_PATH, params, decode_portfolios, "a list of portfolios", deadline
        )

    async def trading_accounts(
        self, *, venue: str | None, status: str | None, deadline: float
    ) -> list[TradingAccount]:
        """Every trading account the token sees (of ``venue``, in ``status``)."""
        params = []
        for key, value in (("venue", venue), ("accountStatus", status)):
            if value is not None:
                if not isinstance(value, str) or not value.replace("_", "").isalnum():
                    raise ValueError(f"{key} must be a name such as 'BINANCE', not {value!r}")
                params.append((key, value))
        return await self._pages(
            ACCOUNT_LIST_PATH, params, decode_trading_accounts, "a list of accounts", deadline
        )

    async def request_quote(self, request: QuoteRequest, *, deadline: float) -> Quote:
        """``POST /api/v3/quote/rfq``: a firm quote (retried with its ``quoteRequestId``)."""
        envelope = await self._http.post_envelope(
            RFQ_PATH, encoder.encode(request), idempotent=True, deadline=deadline
        )
        return _decoded(envelope, decode_quote, "a quote")

    async def health(self, *, deadline: float) -> Health:
        """``GET /api/v3/health`` once: 200 (healthy) or 503 (unhealthy), both typed."""
        status, raw = await self._http.get_unenveloped(
            HEALTH_PATH, ok=(200, 503), deadline=deadline
        )
        try:
            return decode_health(raw, status)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UnexpectedResponseError(
                f"HTTP {status} from the health endpoint is not a health answer: {str(exc)[:200]}",
                status=status,
            ) from None
