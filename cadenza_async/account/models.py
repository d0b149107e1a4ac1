"""Account wire models: portfolios, balances, positions, trading accounts, quotes, health.

Every documented form decodes (``spec/cadenza-market-account.md`` 3-5): the
REST ``Portfolio`` and the event's ``RpcPortfolio`` (all fields optional,
``updateMode``), REST ``TradingAccount`` and ``RpcTradingAccount``
(``externalTradingAccountId`` or ``externalAccountId``), the ``Quote`` and
the health answer. Times are integer Unix milliseconds whatever the wire
carried (ms, an RFC 3339 string, or only the ``*DateTime`` companion).
Amounts are exact :class:`~decimal.Decimal` values (a JSON string or
number, never a float). Unknown fields are ignored and unknown enum values
kept as strings. A portfolio publication is read bare, as ``{data}`` or as
``{metadata, data}`` (:func:`decode_portfolio_event`). Decoders are built
once, at import.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Final

import msgspec

from ..models import datetime_to_ms, parse_time

__all__ = [
    "UNAVAILABLE_STATUSES",
    "Balance",
    "Credential",
    "Health",
    "HealthCheck",
    "Portfolio",
    "PortfolioSummary",
    "Position",
    "Quote",
    "TradingAccount",
    "decode_health",
    "decode_portfolio_event",
    "decode_portfolios",
    "decode_quote",
    "decode_trading_account_event",
    "decode_trading_accounts",
]

if TYPE_CHECKING:
    _Ms = int
else:
    # integer ms, or an RFC 3339 string msgspec parses into a datetime (made ms after decoding)
    _Ms = int | datetime

#: Trading account statuses in which nothing can be traded on the account.
UNAVAILABLE_STATUSES: Final = frozenset({"INACTIVE", "LOCKED", "DISCONNECTED", "UNAVAILABLE"})


class Balance(msgspec.Struct, rename="camel", omit_defaults=True):
    """One asset's balance: ``free`` + ``locked`` (in open orders) = ``total``; ``borrowed``, ``net``.

    Amounts are exact decimals (None when the payload did not carry one: an
    event's entries are all optional). ``updated_at`` is the server's time (ms).
    """

    security_symbol: str | None = None
    security_type: str | None = None
    status: str | None = None
    free: Decimal | None = None
    locked: Decimal | None = None
    borrowed: Decimal | None = None
    total: Decimal | None = None
    net: Decimal | None = None
    frozen: Decimal | None = None
    interest_owed: Decimal | None = None
    trading_account_id: str | None = None
    balance_id: str | None = None
    external_balance_id: str | None = None
    position_id: str | None = None
    created_at: _Ms | None = None
    updated_at: _Ms | None = None
    updated_at_date_time: str | None = None

    def __post_init__(self) -> None:
        self.updated_at = _ms(self.updated_at, self.updated_at_date_time)
        self.created_at = _ms(self.created_at, None)


def _ms(value: object, companion: str | None) -> int | None:
    if value is None:
        return None if companion is None else parse_time(companion)
    if isinstance(value, datetime):
        return datetime_to_ms(value)
    return value if isinstance(value, int) else None


class Position(msgspec.Struct, rename="camel", omit_defaults=True):
    """One position: ``position_side`` LONG or SHORT, ``quantity``, entry price and PnL (exact)."""

    position_id: str | None = None
    security_symbol: str | None = None
    instrument_id: str | None = None
    security_type: str | None = None
    status: str | None = None
    position_side: str | None = None
    quantity: Decimal | None = None
    entry_price: Decimal | None = None
    exit_price: Decimal | None = None
    current_price: Decimal | None = None
    unrealized_pnl: Decimal | None = None
    realized_pnl: Decimal | None = None
    trading_account_id: str | None = None
    external_position_id: str | None = None
    created_at: _Ms | None = None
    updated_at: _Ms | None = None
    closed_at: _Ms | None = None
    created_at_date_time: str | None = None
    updated_at_date_time: str | None = None
    closed_at_date_time: str | None = None

    def __post_init__(self) -> None:
        self.updated_at = _ms(self.updated_at, self.updated_at_date_time)
        self.created_at = _ms(self.created_at, self.created_at_date_time)
        self.closed_at = _ms(self.closed_at, self.closed_at_date_time)


class PortfolioSummary(msgspec.Struct, rename="camel", omit_defaults=True):
    """The account's totals in ``currency``: equity, margin, risk exposure (exact decimals)."""

    currency: str | None = None
    equity: Decimal | None = None
    margin: Decimal | None = None
    margin_loan: Decimal | None = None
    margin_usage: Decimal | None = None
    margin_requirement: Decimal | None = None
    margin_level: Decimal | None = None
    credit: Decimal | None = None
    risk_exposure: Decimal | None = None
    max_risk_exposure: Decimal | None = None
    risk_exposure_rate: Decimal | None = None
    leverage: int | None = None
    trading_account_id: str | None = None
    portfolio_summary_id: str | None = None


class Credential(msgspec.Struct, rename="camel", omit_defaults=True):
    """A credential of a trading account (never a secret: its kind and status)."""

    credential_id: str | None = None
    venue: str | None = None
    credential_type: str | None = None
    nickname: str | None = None
    status: str | None = None


class TradingAccount(msgspec.Struct, rename="camel", omit_defaults=True):
    """A trading account and its status (REST ``TradingAccount`` or ``RpcTradingAccount``).

    ``available`` is False in INACTIVE, LOCKED, DISCONNECTED and
    UNAVAILABLE: nothing can be traded on the account then.
    """

    trading_account_id: str = ""
    venue: str | None = None
    nickname: str | None = None
    status: str | None = None
    account_type: str | None = None
    external_account_type: str | None = None
    external_trading_account_id: str | None = None
    external_account_id: str | None = None
    position_mode: str | None = None
    collateral_mode: str | None = None
    margin_mode: str | None = None
    user_id: str | None = None
    tenant_id: str | None = None
    credentials: list[Credential] = []
    created_at: _Ms | None = None
    updated_at: _Ms | None = None
    created_at_date_time: str | None = None
    updated_at_date_time: str | None = None

    def __post_init__(self) -> None:
        self.updated_at = _ms(self.updated_at, self.updated_at_date_time)
        self.created_at = _ms(self.created_at, self.created_at_date_time)

    @property
    def available(self) -> bool:
        """False when the status says nothing can be traded on the account now."""
        return self.status not in UNAVAILABLE_STATUSES

    @property
    def external_id(self) -> str | None:
        """The venue's id of the account, under either wire name."""
        return self.external_trading_account_id or self.external_account_id


class Portfolio(msgspec.Struct, rename="camel", omit_defaults=True):
    """An account's balances, open positions and summary (REST ``Portfolio`` or ``RpcPortfolio``).

    ``update_mode`` is the event's ``updateMode`` (``SNAPSHOT``/``DELTA``;
    None on REST and legacy events: the whole portfolio). ``updated_at`` is
    the server's time (ms).
    """

    trading_account_id: str = ""
    venue: str | None = None
    balances: list[Balance] | None = None
    positions: list[Position] | None = None
    summary: PortfolioSummary | None = None
    update_mode: str | None = None
    account_info: TradingAccount | None = None
    updated_at: _Ms | None = None
    updated_at_date_time: str | None = None

    def __post_init__(self) -> None:
        self.updated_at = _ms(self.updated_at, self.updated_at_date_time)

    def balance(self, security_symbol: str) -> Balance | None:
        """The balance of ``security_symbol`` (e.g. ``"USDT"``), or None."""
        for balance in self.balances or ():
            if balance.security_symbol == security_symbol:
                return balance
        return None

    def position(self, position_id: str) -> Position | None:
        for position in self.positions or ():
            if position.position_id == position_id:
                return position
        return None


class Quote(msgspec.Struct, rename="camel", omit_defaults=True):
    """A firm RFQ quote: ``price`` for ``quantity`` of ``base_asset``, valid until ``expire_at``.

    ``expire_at`` is the server's time (Unix ms). Execute it with
    :meth:`~cadenza_async.CadenzaClient.execute_quote` before then.
    """

    quote_id: str
    price: Decimal
    expire_at: _Ms
    quantity: Decimal | None = None
    quote_quantity: Decimal | None = None
    order_side: str | None = None
    base_asset: str | None = None
    quote_asset: str | None = None
    instrument_id: str | None = None
    venue: str | None = None
    status: str | None = None
    reject_reason: str | None = None
    quantity_type: str | None = None
    dealer_account_id: str | None = None
    trader_account_id: str | None = None
    quote_request_id: str | None = None
    external_quote_id: str | None = None
    pricing_profile_id: str | None = None
    created_at: _Ms | None = None
    updated_at: _Ms | None = None

    def __post_init__(self) -> None:
        expire_at = _ms(self.expire_at, None)
        if expire_at is None:
            raise msgspec.ValidationError("expireAt is not a time")
        self.expire_at = expire_at
        self.created_at = _ms(self.created_at, None)
        self.updated_at = _ms(self.updated_at, None)

    def expires_in(self, now_ms: int) -> float:
        """Seconds left before ``expire_at`` at ``now_ms`` (negative once expired)."""
        return (self.expire_at - now_ms) / 1000


class HealthCheck(msgspec.Struct, omit_defaults=True):
    status: str | None = None


class Health(msgspec.Struct, rename="camel", omit_defaults=True):
    """``GET /api/v3/health``: ``status`` (``healthy``, ``degraded``, ``unhealthy``), ``version``,
    the server's ``timestamp`` (ms) and each dependency's check.

    ``http_status`` is the answer's status (200 or 503).
    """

    status: str | None = None
    version: str | None = None
    timestamp: _Ms | None = None
    iso_date_time: str | None = None
    checks: dict[str, HealthCheck] = {}
    http_status: int = 200

    def __post_init__(self) -> None:
        self.timestamp = _ms(self.timestamp, self.iso_date_time)

    @property
    def healthy(self) -> bool:
        return self.status == "healthy"


_portfolios: Final = msgspec.json.Decoder(list[Portfolio])
_portfolio: Final = msgspec.json.Decoder(Portfolio)
_accounts: Final = msgspec.json.Decoder(list[TradingAccount])
_account: Final = msgspec.json.Decoder(TradingAccount)
_quote: Final = msgspec.json.Decoder(Quote)
_health: Final = msgspec.json.Decoder(Health)
_object: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])


def decode_portfolios(raw: bytes | msgspec.Raw) -> list[Portfolio]:
    """A REST list of portfolios. Raises ``msgspec.DecodeError``/``ValidationError``."""
    return _portfolios.decode(raw)


def _payload(raw: bytes | msgspec.Raw) -> bytes | msgspec.Raw:
    """The payload of a publication: inside ``{data}`` / ``{metadata, data}``, or bare."""
    top = _object.decode(raw)
    if "data" in top and not {"balances", "positions", "summary", "nickname"} & top.keys():
        return top["data"]
    return raw


def decode_portfolio_event(raw: bytes | msgspec.Raw) -> Portfolio:
    """The portfolio an ``event.portfolio.updated`` carries, in any documented form."""
    return _portfolio.decode(_payload(raw))


def decode_trading_account_event(raw: bytes | msgspec.Raw) -> TradingAccount:
    """The account an ``event.trading_account.updated`` carries, in any documented form."""
    return _account.decode(_payload(raw))


def decode_trading_accounts(raw: bytes | msgspec.Raw) -> list[TradingAccount]:
    return _accounts.decode(raw)


def decode_quote(raw: bytes | msgspec.Raw) -> Quote:
    return _quote.decode(raw)


def decode_health(raw: bytes, http_status: int) -> Health:
    """The health answer (not enveloped; a 503 carries the same shape)."""
    health = _health.decode(raw)
    return msgspec.structs.replace(health, http_status=http_status)
