"""Every documented form of the account payloads decodes: REST and RPC models, both envelopes."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from cadenza_async.account.models import (
    decode_health,
    decode_portfolio_event,
    decode_portfolios,
    decode_quote,
    decode_trading_account_event,
    decode_trading_accounts,
)
from cadenza_async.models import AccountEvent, decode_channel_event

ACCOUNT = "550e8400-e29b-41d4-a716-446655440000"
REST_PORTFOLIO = (
    b'{"tradingAccountId":"%s","venue":"BINANCE","updatedAt":1703052635110,'
    b'"updatedAtDateTime":"2023-12-20T06:10:35.11Z","newField":{"x":1},'
    b'"balances":[{"securitySymbol":"USDT","securityType":"CRYPTO","tradingAccountId":"%s",'
    b'"status":"ACTIVE","free":"10.50","locked":"0.25","borrowed":"0","total":"10.75",'
    b'"net":"10.75","updatedAt":1703052635110,"externalBalanceId":null}],'
    b'"positions":[{"positionId":"660e8400-e29b-41d4-a716-446655440000","securitySymbol":"BTC",'
    b'"tradingAccountId":"%s","securityType":"CRYPTO","status":"OPEN","positionSide":"LONG",'
    b'"quantity":"0.1","entryPrice":"50000","unrealizedPnl":"-1.5","createdAt":1,"updatedAt":2,'
    b'"closedAtDateTime":null}],'
    b'"summary":{"tradingAccountId":"%s","currency":"USDT","leverage":null,"equity":"10.75",'
    b'"margin":"0","marginLoan":"0","marginUsage":"0","marginRequirement":"0",'
    b'"marginLevel":"0","credit":"0","riskExposure":"0"}}'
).replace(b"%s", ACCOUNT.encode())

RPC_PORTFOLIO = (
    b'{"tradingAccountId":"%s","updateMode":"DELTA","updatedAt":"2023-12-20T06:10:35.110Z",'
    b'"balances":[{"balanceId":"770e8400-e29b-41d4-a716-446655440000","securitySymbol":"BTC",'
    b'"free":"1","locked":"0","total":"1","frozen":"0","collateralEnabled":true,'
    b'"updatedAt":"2023-12-20T06:10:35Z"}],"accountInfo":{"tradingAccountId":"%s",'
    b'"status":"ACTIVE","externalAccountId":"ext"}}'
).replace(b"%s", ACCOUNT.encode())


def test_the_rest_portfolio_decodes_exactly_and_ignores_unknown_fields():
    (portfolio,) = decode_portfolios(b"[" + REST_PORTFOLIO + b"]")
    usdt = portfolio.balance("USDT")
    assert usdt.free == Decimal("10.50")
    assert usdt.total == Decimal("10.75")
    assert portfolio.updated_at == 1703052635110
    (position,) = portfolio.positions
    assert position.unrealized_pnl == Decimal("-1.5")
    assert position.position_side == "LONG"
    assert portfolio.summary.leverage is None
    assert portfolio.update_mode is None


@pytest.mark.parametrize(
    "wrap",
    [
        lambda body: b'{"data":' + body + b"}",
        lambda body: (
            b'{"metadata":{"eventType":"event.portfolio.updated","eventId":"e",'
            b'"timestamp":"2023-12-20T06:10:35Z"},"data":' + body + b"}"
        ),
        lambda body: body,
    ],
    ids=["data", "metadata-data", "bare"],
)
def test_a_portfolio_event_reads_in_every_envelope(wrap):
    raw = wrap(RPC_PORTFOLIO)
    event = decode_channel_event(raw)
    assert isinstance(event, AccountEvent)
    assert event.kind == "portfolio"
    portfolio = decode_portfolio_event(event.data)
    assert portfolio.update_mode == "DELTA"
    assert portfolio.updated_at == 1703052635110
    assert portfolio.balance("BTC").updated_at == 1703052635000
    assert portfolio.account_info.external_id == "ext"


def test_trading_accounts_read_both_external_id_names_and_any_status():
    rest = decode_trading_accounts(
        b'[{"tradingAccountId":"a","externalTradingAccountId":"x","venue":"BINANCE",'
        b'"nickname":"n","accountType":"SPOT","externalAccountType":"spot","credentials":[],'
        b'"status":"NEW_STATUS","createdAt":1,"updatedAt":2}]'
    )
    assert rest[0].external_id == "x"
    assert rest[0].available  # a status the SDK does not know is kept, not refused
    event = decode_trading_account_event(
        b'{"data":{"tradingAccountId":"a","externalAccountId":"y","status":"DISCONNECTED",'
        b'"updatedAt":"2023-12-20T06:10:35Z"}}'
    )
    assert event.external_id == "y"
    assert not event.available
    assert event.updated_at == 1703052635000


def test_a_quote_reads_its_ms_expiry_and_exact_price():
    quote = decode_quote(
        b'{"quoteId":"q","dealerAccountId":"d","baseAsset":"BTC","quoteAsset":"USDT",'
        b'"orderSide":"BUY","quantity":"0.01","quoteQuantity":"500.05","price":"50005",'
        b'"status":"CREATED","createdAt":1,"expireAt":1703052645110,'
        b'"expireAtDateTime":"2023-12-20T06:10:45.11Z"}'
    )
    assert quote.price == Decimal("50005")
    assert quote.expire_at == 1703052645110
    assert quote.expires_in(1703052644110) == 1.0
    with pytest.raises(msgspec.ValidationError):
        decode_quote(b'{"quoteId":"q","price":"1","expireAt":"not a time"}')


def test_health_reads_the_200_and_the_stale_503_map():
    healthy = decode_health(
        b'{"status":"healthy","timestamp":1,"version":"3.0.1","checks":{"database":'
        b'{"status":"healthy"},"temporal":{"status":"healthy"},"redis":{"status":"healthy"}}}',
        200,
    )
    assert healthy.healthy
    down = decode_health(b'{"status":"unhealthy","checks":{"queue":{"status":"unhealthy"}}}', 503)
    assert not down.healthy
    assert down.http_status == 503
    assert down.checks["queue"].status == "unhealthy"
