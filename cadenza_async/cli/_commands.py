"""The commands that talk to an API: cancel, cancel-many, cancel-all, watch; and sim."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from ..client import CadenzaClient
from ..errors import CadenzaError, ConfigurationError
from ..models import CancelResult, TradeOrder
from ._outcomes import Outcome, Tally, describe, outcome_json, show_tally
from ._output import Output

if TYPE_CHECKING:
    from ..testing import CadenzaSimulator

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def client_from_args(args: argparse.Namespace, out: Output) -> CadenzaClient:
    """A client from ``CADENZA_*`` variables, flags winning. Raises ConfigurationError."""
    if args.token:
        out.note(
            "warning: --token is visible to other users in the process list; "
            "prefer the CADENZA_TOKEN environment variable"
        )
    return CadenzaClient.from_env(
        token=args.token,
        api_url=args.api_url,
        ws_url=args.ws_url,
        trading_account_id=args.account,
        cancel_via=args.via,
        allow_insecure=True if args.allow_insecure else None,
    )


def account_of(args: argparse.Namespace, client: CadenzaClient) -> str | None:
    account: str | None = args.account or client.config.trading_account_id
    return account


def read_ids(source: str) -> list[str]:
    """Order ids, one per line, from a file or ``-`` (stdin); blank lines and ``#`` comments skipped."""
    if source == "-":
        lines: Iterable[str] = sys.stdin.read().splitlines()
    else:
        try:
            with open(source, encoding="utf-8") as fh:
                lines = fh.read().splitlines()
        except OSError as exc:
            raise ConfigurationError(f"cannot read {source}: {exc.strerror}") from None
    ids = []
    for line in lines:
        text = line.split("#", 1)[0].strip()
        if text:
            ids.append(text)
    return ids


async def closing(iterator: AsyncIterator[Any]) -> None:
    aclose: Callable[[], Awaitable[Any]] | None = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


async def cmd_cancel(args: argparse.Namespace, out: Output) -> int:
    async with client_from_args(args, out) as client:
        outcome: Outcome
        try:
            if args.confirm:
                outcome = await client.cancel_and_confirm(
                    args.order_id, trading_account_id=args.account, timeout=args.timeout
                )
            else:
                outcome = await client.cancel(args.order_id, trading_account_id=args.account)
        except ConfigurationError:
            raise
        except CadenzaError as exc:
            outcome = exc
    if out.json_mode:
        out.emit(outcome_json(args.order_id, outcome))
    elif isinstance(outcome, CadenzaError):
        out.error(describe(args.order_id, outcome))
    else:
        out.say(describe(args.order_id, outcome))
    return EXIT_FAILED if isinstance(outcome, CadenzaError) else EXIT_OK


async def cancel_with_progress(
    out: Output,
    ids: Sequence[str],
    results: AsyncIterator[Any],
    label: str,
) -> Tally:
    """Drain ``results`` into a tally, with a progress bar and JSON lines.

    Items are outcomes, or ``(order_id, outcome)`` pairs.
    """
    tally = Tally()
    with out.progress(len(set(ids)), label) as bar:
        try:
            async for item in results:
                oid, outcome = item if isinstance(item, tuple) else (outcome_id(item), item)
                tally.add(oid, outcome)
                bar.advance(failed=isinstance(outcome, CadenzaError))
                if out.json_mode:
                    out.emit(outcome_json(oid, outcome))
        finally:
            await closing(results)
    tally.finished = time.perf_counter()
    return tally


async def cmd_cancel_many(args: argparse.Namespace, out: Output) -> int:
    ids = read_ids(args.file)
    if not ids:
        out.note("no order ids given")
        return EXIT_OK
    async with client_from_args(args, out) as client:
        results = client.cancel_many_iter(
            ids,
            concurrency=args.concurrency,
            confirm=not args.no_confirm,
            timeout=args.timeout,
            trading_account_id=args.account,
        )
        tally = await cancel_with_progress(out, ids, results, "cancelling")
    show_tally(out, tally, ids)
    return EXIT_FAILED if tally.errors else EXIT_OK


async def cmd_cancel_all(args: argparse.Namespace, out: Output) -> int:
    async with client_from_args(args, out) as client:
        account = account_of(args, client)
        if account is None:
            raise ConfigurationError("cancel-all needs --account or CADENZA_TRADING_ACCOUNT_ID")
        scope = f" on {args.instrument}" if args.instrument else ""
        out.note(f"cancelling every open order of {account}{scope} ...")
        tally = Tally()
        outcomes = await client.cancel_all_open(account, instrument_id=args.instrument)
        tally.finished = time.perf_counter()
    order: list[str] = []
    for outcome in outcomes:
        oid = outcome_id(outcome)
        order.append(oid)
        tally.add(oid, outcome)
        if out.json_mode:
            out.emit(outcome_json(oid, outcome))
    show_tally(out, tally, order)
    return EXIT_FAILED if tally.errors else EXIT_OK


def outcome_id(outcome: Outcome) -> str:
    if isinstance(outcome, CancelResult):
        return outcome.order_id
    if isinstance(outcome, TradeOrder):
        return outcome.trade_order_id
    return outcome.order_id or "?"


def order_line(order: TradeOrder) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime()) + f".{int(time.time() * 1000) % 1000:03d}"
    parts = [stamp, order.trade_order_id, order.status]
    if order.order_side:
        parts.append(order.order_side)
    if order.quantity:
        parts.append(order.quantity)
    if order.instrument_id:
        parts.append(order.instrument_id)
    if order.limit_price:
        parts.append(f"@ {order.limit_price}")
    if order.executed_quantity and order.executed_quantity not in ("0", "0.0"):
        parts.append(f"executed {order.executed_quantity}")
    return "  ".join(parts)


async def cmd_watch(args: argparse.Namespace, out: Output) -> int:
    async with client_from_args(args, out) as client:
        account = account_of(args, client)
        if account is None:
            raise ConfigurationError("watch needs --account or CADENZA_TRADING_ACCOUNT_ID")
        until = f"{args.count} updates" if args.count else "Ctrl-C"
        out.note(f"watching order updates on {account} until {until}")
        seen = 0
        updates = client.order_updates()
        try:
            async for order in updates:
                if out.json_mode:
                    out.emit(msgspec.to_builtins(order))
                else:
                    out.say(order_line(order))
                seen += 1
                if args.count and seen >= args.count:
                    break
        finally:
            await closing(updates)
    return EXIT_OK


def cmd_sim(args: argparse.Namespace, out: Output) -> int:
    from ..testing import serve

    def started(sim: CadenzaSimulator) -> None:
        out.note(
            "point the command line at it: "
            f"export CADENZA_API_URL={sim.api_url} CADENZA_WS_URL={sim.ws_url} "
            f"CADENZA_TOKEN={sim.token} CADENZA_TRADING_ACCOUNT_ID={sim.trading_account_id}"
        )

    coro = serve(
        args.host,
        args.port,
        orders=args.orders,
        out=lambda line: print(line, flush=True),
        started=started,
        cancel_delay=args.cancel_delay,
        token=args.sim_token,
        trading_account_id=args.sim_account,
        ping_interval=args.ping_interval,
        history_size=args.history_size,
        event_shape=args.event_shape,
    )
    runner: Callable[[Any], Any] = asyncio.run
    if not args.no_uvloop:
        with contextlib.suppress(ImportError):
            import uvloop

            runner = uvloop.run
    try:
        runner(coro)
    except KeyboardInterrupt:
        return EXIT_OK
    except OSError as exc:
        out.error(f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}")
        return EXIT_FAILED
    return EXIT_OK
