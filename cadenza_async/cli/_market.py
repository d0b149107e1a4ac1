"""``cadenza-async book``, ``ticker`` and ``instruments``: market data on the command line.

``book`` keeps a live local book and redraws its ladder in a terminal (a
rich live display); when stdout is not a terminal (or with ``--json``) it
writes one line per update instead: plain text, or one JSON object.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec

from ..market.live import LiveOrderBook
from ._errors import EXIT_OK
from ._session import Context

__all__ = ["add_market_parsers"]


def _depth(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError("depth must be 1..100")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("count must be >= 1")
    return value


def add_market_parsers(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
    epilog: str,
) -> None:
    """Add ``book``, ``ticker`` and ``instruments`` to the command parser."""
    book = commands.add_parser(
        "book",
        parents=parents,
        help="show a live order book (a ladder in a terminal, lines when piped)",
        description="Keep a local order book from the WebSocket and show it until Ctrl-C.",
        epilog=epilog,
    )
    book.add_argument("instrument", help="instrument id, VENUE:BASE/QUOTE")
    book.add_argument("--depth", type=_depth, default=10, help="levels a side shown (1..100)")
    book.add_argument("--count", type=_count, help="stop after N updates")
    book.set_defaults(handler=cmd_book)
    ticker = commands.add_parser(
        "ticker",
        parents=parents,
        help="show an instrument's ticker (--follow: every update)",
        description="Print the current ticker; with --follow, every update until Ctrl-C.",
        epilog=epilog,
    )
    ticker.add_argument("instrument", help="instrument id, VENUE:BASE/QUOTE")
    ticker.add_argument("--follow", action="store_true", help="keep printing updates")
    ticker.add_argument("--count", type=_count, help="with --follow: stop after N updates")
    ticker.set_defaults(handler=cmd_ticker)
    insts = commands.add_parser(
        "instruments",
        parents=parents,
        help="list instruments and their order rules",
        description="List the instruments (of a venue) with lot size, pip size and limits.",
        epilog=epilog,
    )
    insts.add_argument("--venue", help="only this venue, e.g. BINANCE")
    insts.set_defaults(handler=cmd_instruments)


def _ladder_rows(book: LiveOrderBook, depth: int) -> list[tuple[str, str, str]]:
    asks = list(reversed(book.asks(depth)))
    rows = [("ask", str(level.price), str(level.quantity)) for level in asks]
    rows += [("bid", str(level.price), str(level.quantity)) for level in book.bids(depth)]
    return rows


def _state(book: LiveOrderBook) -> str:
    resyncs = sum(book.resyncs.values())
    flag = "usable" if book.usable else book.state
    return f"{flag}{' stale' if book.stale else ''}, resyncs {resyncs}"


def _line(book: LiveOrderBook) -> str:
    bid, ask = book.best_bid, book.best_ask

    def show(level: Any) -> str:
        return f"{level.quantity} @ {level.price}" if level else "-"

    return f"{book.instrument_id} bid {show(bid)}  ask {show(ask)}  spread {book.spread}  [{_state(book)}]"


def _record(book: LiveOrderBook, depth: int) -> dict[str, Any]:
    def levels(side: list[Any]) -> list[list[str]]:
        return [[str(lv.price), str(lv.quantity)] for lv in side]

    return {
        "instrumentId": book.instrument_id,
        "usable": book.usable,
        "stale": book.stale,
        "timestamp": book.timestamp,
        "bids": levels(book.bids(depth)),
        "asks": levels(book.asks(depth)),
        "resyncs": book.resyncs,
    }


async def cmd_book(ctx: Context) -> int:
    """Show the live book until Ctrl-C (exit 130), ``--count`` updates, or stdout closes."""
    args, out = ctx.args, ctx.out
    interactive = not out.json_mode and out.console is not None and sys.stdout.isatty()
    async with ctx.session() as client, client.order_book(args.instrument) as book:
        await book.wait_ready(client.config.timeouts.connect)
        if interactive:
            return await _ladder(book, args, out)
        shown = 0
        changes = book.changes()
        try:
            while True:
                if out.json_mode:
                    out.emit(_record(book, args.depth))
                else:
                    out.say(_line(book))
                shown += 1
                if out.stdout_closed or (args.count and shown >= args.count):
                    break
                await anext(changes)
        finally:
            await changes.aclose()
    return EXIT_OK


async def _ladder(book: LiveOrderBook, args: argparse.Namespace, out: Any) -> int:
    from rich.live import Live
    from rich.table import Table

    def render() -> Table:
        table = Table(title=f"{book.instrument_id}  [{_state(book)}]", min_width=40)
        table.add_column("side")
        table.add_column("price", justify="right")
        table.add_column("quantity", justify="right")
        for side, price, qty in _ladder_rows(book, args.depth):
            table.add_row(side, price, qty, style="red" if side == "ask" else "green")
        return table

    shown = 0
    changes = book.changes()
    try:
        with Live(render(), console=out.console, auto_refresh=False) as live:
            while not (args.count and shown >= args.count):
                await anext(changes)
                shown += 1
                live.update(render(), refresh=True)
    finally:
        await changes.aclose()
    return EXIT_OK


async def cmd_ticker(ctx: Context) -> int:
    """Print the ticker, or follow its updates."""
    args, out = ctx.args, ctx.out

    def show(ticker: Any) -> None:
        if out.json_mode:
            out.emit(msgspec.to_builtins(ticker))
        else:
            out.say(
                f"{ticker.instrument_id or args.instrument} last {ticker.last_price} "
                f"bid {ticker.bid_quantity} @ {ticker.bid_price} "
                f"ask {ticker.ask_quantity} @ {ticker.ask_price}"
            )

    async with ctx.session() as client:
        if not args.follow:
            show(await client.get_ticker(args.instrument))
            return EXIT_OK
        async with client.ticker(args.instrument) as live:
            await live.wait_ready(client.config.timeouts.connect)
            show(live.latest)
            shown = 1
            updates = live.updates()
            try:
                while not out.stdout_closed and not (args.count and shown >= args.count):
                    show(await anext(updates))
                    shown += 1
            finally:
                await updates.aclose()
    return EXIT_OK


async def cmd_instruments(ctx: Context) -> int:
    """Print the instruments with their rules."""
    args, out = ctx.args, ctx.out
    async with ctx.session() as client:
        insts = await client.instruments(args.venue)
    if out.json_mode:
        for inst in insts:
            out.emit(msgspec.to_builtins(inst))
        return EXIT_OK
    out.table(
        f"{len(insts)} instruments" + (f" on {args.venue}" if args.venue else ""),
        ("instrument", "status", "lot size", "pip size", "min qty", "max qty", "min notional"),
        [
            (
                i.instrument_id,
                i.status or "",
                i.lot_size or "",
                i.pip_size or "",
                i.min_quantity or "",
                i.max_quantity or "",
                i.min_notional or "",
            )
            for i in insts
        ],
    )
    return EXIT_OK
