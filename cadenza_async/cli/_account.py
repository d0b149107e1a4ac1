"""``cadenza-async portfolio``, ``accounts`` and ``quote``: account state and RFQ on the command line.

``portfolio`` prints the account's balances and open positions (a table, or
``--json``: one object per portfolio). ``accounts`` lists the trading
accounts with their status. ``quote`` asks the RFQ dealer for a firm quote
and prints it; with ``--execute`` it executes the quote with proof after
asking on the terminal (``--yes`` without asking; without a terminal
``--yes`` is needed, refused before any request).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import msgspec

from ..account.models import Portfolio, Quote
from ..errors import ConfigurationError
from ._errors import EXIT_FAILED, EXIT_OK
from ._placing import positive_seconds
from ._prompt import confirmed, stdin_is_terminal
from ._session import Context

__all__ = ["add_account_parsers"]


def add_account_parsers(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
    epilog: str,
) -> None:
    """Add ``portfolio``, ``accounts`` and ``quote`` to the command parser."""
    portfolio = commands.add_parser(
        "portfolio",
        parents=parents,
        help="show an account's balances and open positions",
        description="Print the balances (free, locked, total) and open positions of the "
        "account (--account or CADENZA_TRADING_ACCOUNT_ID; --all-accounts: every account "
        "the token sees).",
        epilog=epilog,
    )
    portfolio.add_argument(
        "--all-accounts", action="store_true", help="every account the token sees"
    )
    portfolio.set_defaults(handler=cmd_portfolio)
    accounts = commands.add_parser(
        "accounts",
        parents=parents,
        help="list the trading accounts and their status",
        description="List the trading accounts the token sees, with venue and status.",
        epilog=epilog,
    )
    accounts.add_argument("--venue", help="only this venue, e.g. BINANCE")
    accounts.set_defaults(handler=cmd_accounts)
    quote = commands.add_parser(
        "quote",
        parents=parents,
        help="ask the RFQ dealer for a firm quote (--execute: take it, with proof)",
        description="Request a firm quote; with --execute, execute it (asking first on a "
        "terminal) and wait for the exchange's proof, within the quote's expiry.",
        epilog=epilog,
    )
    quote.add_argument("side", choices=("BUY", "SELL"), help="BUY or SELL")
    quote.add_argument("quantity", help="base quantity, e.g. 0.01")
    quote.add_argument("instrument", help="instrument id, VENUE:BASE/QUOTE")
    quote.add_argument("--dealer", required=True, help="the dealer's account id")
    quote.add_argument("--ttl", type=int, help="seconds the quote stays valid (1..300)")
    quote.add_argument("--execute", action="store_true", help="execute the quote, with proof")
    quote.add_argument("--yes", action="store_true", help="with --execute: do not ask")
    quote.add_argument("--timeout", type=positive_seconds, help="execution deadline (s)")
    quote.set_defaults(handler=cmd_quote)


async def cmd_portfolio(ctx: Context) -> int:
    """Print the portfolio of the account (or of every account)."""
    args, out = ctx.args, ctx.out
    async with ctx.session() as client:
        account = None if args.all_accounts else ctx.account(client, "portfolio")
        portfolios = await client.get_portfolio(account)
    if out.json_mode:
        for portfolio in portfolios:
            out.emit(msgspec.to_builtins(portfolio))
        return EXIT_OK
    for portfolio in portfolios:
        _show(out, portfolio)
    if not portfolios:
        out.note("no portfolio")
    return EXIT_OK


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _show(out: Any, portfolio: Portfolio) -> None:
    out.table(
        f"balances of {portfolio.trading_account_id}",
        ("asset", "free", "locked", "total"),
        [
            (b.security_symbol or "", _text(b.free), _text(b.locked), _text(b.total))
            for b in portfolio.balances or ()
        ],
    )
    positions = portfolio.positions or ()
    if positions:
        out.table(
            f"open positions of {portfolio.trading_account_id}",
            ("instrument", "side", "quantity", "entry price", "unrealized PnL"),
            [
                (
                    p.instrument_id or p.security_symbol or "",
                    p.position_side or "",
                    _text(p.quantity),
                    _text(p.entry_price),
                    _text(p.unrealized_pnl),
                )
                for p in positions
            ],
        )
    summary = portfolio.summary
    if summary is not None and summary.equity is not None:
        out.say(f"equity {summary.equity} {summary.currency or ''}".rstrip())


async def cmd_accounts(ctx: Context) -> int:
    """Print the trading accounts with their status."""
    args, out = ctx.args, ctx.out
    async with ctx.session() as client:
        accounts = await client.get_trading_accounts(venue=args.venue)
    if out.json_mode:
        for account in accounts:
            out.emit(msgspec.to_builtins(account))
        return EXIT_OK
    out.table(
        f"{len(accounts)} trading accounts",
        ("account", "venue", "status", "type", "nickname"),
        [
            (
                a.trading_account_id,
                a.venue or "",
                a.status or "",
                a.account_type or "",
                a.nickname or "",
            )
            for a in accounts
        ],
    )
    return EXIT_OK


def _quote_line(quote: Quote) -> str:
    left = quote.expires_in(time.time_ns() // 1_000_000)
    return (
        f"quote {quote.quote_id}: {quote.order_side} {quote.quantity} "
        f"{quote.base_asset or quote.instrument_id} at {quote.price} "
        f"(valid {max(0.0, left):.1f}s more)"
    )


async def cmd_quote(ctx: Context) -> int:
    """Request a quote; with ``--execute``, ask (unless ``--yes``) and execute it with proof."""
    args, out = ctx.args, ctx.out
    if args.execute and not args.yes and not stdin_is_terminal():
        raise ConfigurationError(
            "quote --execute asks for confirmation on a terminal: pass --yes to execute "
            "without asking"
        )
    async with ctx.session() as client:
        quote = await client.request_quote(
            dealer_account_id=args.dealer,
            order_side=args.side,
            instrument_id=args.instrument,
            quantity=args.quantity,
            ttl=args.ttl,
        )
        if out.json_mode:
            out.emit(msgspec.to_builtins(quote))
        else:
            out.say(_quote_line(quote))
        if not args.execute:
            return EXIT_OK
        if not args.yes and not await confirmed(f"Execute {_quote_line(quote)}? [y/N] "):
            out.note("not executed (answer y to execute, or pass --yes)")
            return EXIT_FAILED
        result = await client.execute_quote(quote, timeout=args.timeout)
    if out.json_mode:
        out.emit(
            {
                "quoteId": quote.quote_id,
                "accepted": result.accepted,
                "source": result.source,
                "order": msgspec.to_builtins(result.order),
            }
        )
    else:
        out.say(
            f"order {result.order_id} {result.status} (proven by {result.source} in "
            f"{result.latency * 1000:.0f} ms)"
        )
    return EXIT_OK if result.accepted else EXIT_FAILED
