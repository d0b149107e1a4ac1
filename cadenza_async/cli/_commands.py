"""The commands that talk to an API: cancel, cancel-many, cancel-all, orders, watch.

Each takes a :class:`Context` and returns the exit status; failures they do
not turn into an outcome propagate to the entry point, which maps them with
:func:`~cadenza_async.cli._errors.explain`.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any

import msgspec

from .._validate import check_order_id
from ..client import CadenzaClient
from ..errors import CadenzaError, ConfigurationError, InvalidOrderIdError
from ..models import TradeOrder
from ._errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, auth_failure, explain
from ._outcomes import (
    Outcome,
    Tally,
    describe,
    is_failure,
    outcome_id,
    outcome_json,
    show_tally,
)
from ._output import Output, clean_line
from ._prompt import confirmed, stdin_is_terminal
from ._session import Context

__all__ = [
    "cancel_with_progress",
    "cmd_cancel",
    "cmd_cancel_all",
    "cmd_cancel_many",
    "cmd_orders",
    "cmd_watch",
    "list_open_orders",
    "read_ids",
]

# Paging guards for listing an account's orders: a server that keeps saying "more"
# without new orders, or pages past this many, ends the listing.
LIST_PAGE_SIZE = 500
LIST_MAX_PAGES = 2_000


def _no_confirm_conflicts(args: Any) -> None:
    """Flags that mean nothing without confirmation are refused, not ignored."""
    if not args.no_confirm:
        return
    if args.via == "ws":
        raise ConfigurationError(
            "--via ws needs confirmation: with --no-confirm the cancel goes over HTTP"
        )
    if args.timeout is not None:
        raise ConfigurationError("--timeout is the confirmation deadline: drop it or --no-confirm")


# ---- cancel -------------------------------------------------------------------------------


async def cmd_cancel(ctx: Context) -> int:
    """Cancel one order: confirmed by default, the HTTP reply alone with ``--no-confirm``."""
    args, out = ctx.args, ctx.out
    _no_confirm_conflicts(args)
    args.order_id = check_order_id(args.order_id)  # (InvalidOrderIdError: exit 2, nothing sent)
    started_ms = time.time_ns() // 1_000_000
    outcome: Outcome
    async with ctx.session() as client:
        try:
            if args.no_confirm:
                outcome = await client.cancel(args.order_id, trading_account_id=args.account)
            else:
                outcome = await client.cancel_and_confirm(
                    args.order_id, trading_account_id=args.account, timeout=args.timeout
                )
        except CadenzaError as exc:
            outcome = _as_outcome(exc)
    if out.json_mode:
        out.emit(outcome_json(args.order_id, outcome))
    elif is_failure(outcome):
        assert isinstance(outcome, CadenzaError)
        message, _ = explain(outcome, ctx.config)
        out.error(f"{clean_line(args.order_id)}  failed: {message}")
    else:
        out.say(describe(args.order_id, outcome, started_ms=started_ms))
    return EXIT_FAILED if is_failure(outcome) else EXIT_OK


def _as_outcome(exc: CadenzaError) -> Outcome:
    """An error that is this order's outcome; settings and refused tokens end the command."""
    if isinstance(exc, ConfigurationError) or auth_failure(exc) is not None:
        raise exc
    return exc


# ---- many cancels ---------------------------------------------------------------------------


def read_ids(sources: Sequence[str], files: Sequence[str]) -> list[str]:
    """Order ids from arguments, ``-`` (stdin) and files (one per line; blanks and ``#`` skipped).

    Raises ConfigurationError for an unreadable file, or for an argument that
    names a file (ids from a file need ``--file``).
    """
    ids: list[str] = []
    for source in sources:
        if source == "-":
            ids += _ids_in(sys.stdin.read().splitlines())
        elif os.path.isfile(source):
            raise ConfigurationError(
                f"{source} is a file: pass --file {source} to read ids from it"
            )
        else:
            ids.append(source)
    for path in files:
        if path == "-":
            ids += _ids_in(sys.stdin.read().splitlines())
            continue
        try:
            with open(path, encoding="utf-8") as fh:
                ids += _ids_in(fh.read().splitlines())
        except OSError as exc:
            raise ConfigurationError(f"cannot read {path}: {exc.strerror}") from None
    return ids


async def _aclose(iterator: AsyncIterator[Any]) -> None:
    """Stop an async generator now (not when it is collected)."""
    aclose: Callable[[], Awaitable[Any]] | None = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


def _ids_in(lines: Iterable[str]) -> list[str]:
    """The ids in ``lines``: one per line, ``#`` comments and blanks skipped; a JSON object
    line (``orders --json``, ``cancel --json``) gives its ``tradeOrderId`` or ``order_id``."""
    ids = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("{"):
            ids.append(_id_of_json(stripped))
            continue
        text = stripped.split("#", 1)[0].strip()
        if text:
            ids.append(text)
    return ids


def _id_of_json(line: str) -> str:
    try:
        document = msgspec.json.decode(line)
    except msgspec.DecodeError:
        raise ConfigurationError(f"not a JSON line: {line[:60]!r}") from None
    found = (
        document.get("tradeOrderId") or document.get("order_id")
        if isinstance(document, dict)
        else None
    )
    if not isinstance(found, str):
        raise ConfigurationError(f"a JSON line without tradeOrderId or order_id: {line[:60]!r}")
    return found


def check_ids(ids: Sequence[str]) -> list[str]:
    """Every id checked before anything is sent (lower case); ConfigurationError naming the bad one."""
    checked = []
    for number, oid in enumerate(ids, start=1):
        try:
            checked.append(check_order_id(oid))
        except InvalidOrderIdError as exc:
            raise ConfigurationError(
                f"id {number} of {len(ids)}: {exc}; nothing was cancelled"
            ) from None
    return checked


async def cancel_with_progress(
    out: Output,
    ids: Sequence[str],
    results: AsyncIterator[Any],
    label: str,
    tally: Tally | None = None,
) -> Tally:
    """Drain ``results`` into a tally, with a progress bar and JSON lines.

    Items are outcomes, or ``(order_id, outcome)`` pairs. Cancelled (Ctrl-C),
    the tally keeps what arrived and counts the rest as ``no_outcome``; the
    cancellation propagates.
    """
    tally = Tally() if tally is None else tally
    expected = len(set(ids))
    with out.progress(expected, label) as bar:
        try:
            async for item in results:
                oid, outcome = item if isinstance(item, tuple) else (outcome_id(item), item)
                tally.add(oid, outcome)
                bar.advance(failed=is_failure(outcome))
                if out.json_mode:
                    out.emit(outcome_json(oid, outcome))
        except asyncio.CancelledError:
            tally.no_outcome = max(0, expected - tally.total)
            raise
        finally:
            tally.finished = time.perf_counter()
            await _aclose(results)
    return tally


async def _cancel_and_report(
    ctx: Context,
    client: CadenzaClient,
    ids: Sequence[str],
    *,
    confirm: bool,
    account: str | None,
    label: str,
) -> int:
    """Cancel ``ids`` with a progress bar, then the summary; the exit status.

    Interrupted, the summary covers the outcomes so far and the
    cancellation propagates (the entry point exits 130).
    """
    args, out = ctx.args, ctx.out
    results = client.cancel_many_iter(
        ids,
        concurrency=args.concurrency,
        confirm=confirm,
        timeout=args.timeout,
        trading_account_id=account,
    )
    tally = Tally()
    try:
        await cancel_with_progress(out, ids, results, label, tally)
    except asyncio.CancelledError:
        show_tally(out, tally, ids)
        out.error(
            f"interrupted: {tally.no_outcome:,} of {len(set(ids)):,} orders have no outcome "
            "(each may or may not be cancelled)"
        )
        out.interrupt_reported = True
        raise
    show_tally(out, tally, ids)
    auth = tally.auth_error
    if auth is not None:
        out.error(explain(auth, ctx.config)[0])
        return EXIT_USAGE
    setting = tally.settings_error
    if setting is not None:  # the same for every order: say it once
        out.error(explain(setting, ctx.config)[0])
        return EXIT_USAGE
    return EXIT_FAILED if tally.errors else EXIT_OK


async def cmd_cancel_many(ctx: Context) -> int:
    """Cancel the ids given as arguments, in ``--file`` files, or on stdin (``-``)."""
    args = ctx.args
    _no_confirm_conflicts(args)
    ids = check_ids(read_ids(args.ids, args.file))
    if not ids:
        raise ConfigurationError("no order ids given: pass IDs, --file FILE, or - to read stdin")
    async with ctx.session() as client:
        return await _cancel_and_report(
            ctx, client, ids, confirm=not args.no_confirm, account=args.account, label="cancelling"
        )


# ---- an account's open orders ---------------------------------------------------------------


async def list_open_orders(
    client: CadenzaClient, account: str, instrument: str | None, out: Output
) -> list[TradeOrder]:
    """The account's non-terminal orders, every page (:meth:`CadenzaClient.list_open_orders`)."""
    return await client.list_open_orders(
        account, instrument_id=instrument, page_size=LIST_PAGE_SIZE, max_pages=LIST_MAX_PAGES
    )


def _check_can_ask(args: Any) -> None:
    """``cancel-all`` asks on a terminal; elsewhere it needs ``--yes`` (refused before any I/O)."""
    if not args.yes and not stdin_is_terminal():
        raise ConfigurationError(
            "cancel-all asks for confirmation on a terminal: pass --yes to cancel without asking"
        )


async def cmd_cancel_all(ctx: Context) -> int:
    """List the account's open orders, ask (unless ``--yes``), then cancel them all, confirmed."""
    args, out = ctx.args, ctx.out
    _check_can_ask(args)
    async with ctx.session() as client:
        account = ctx.account(client, "cancel-all")
        scope = f" on {args.instrument}" if args.instrument else ""
        orders = await list_open_orders(client, account, args.instrument, out)
        if not orders:
            out.note(f"nothing to cancel: no open orders on {account}{scope}")
            return EXIT_OK
        what = f"{len(orders):,} open orders of {account}{scope}"
        if not args.yes and not await confirmed(f"Cancel {what}? [y/N] "):
            out.note("nothing cancelled (answer y to cancel, or pass --yes)")
            return EXIT_FAILED
        out.note(f"cancelling {what}")
        ids = [order.trade_order_id for order in orders]
        return await _cancel_and_report(
            ctx, client, ids, confirm=True, account=account, label="cancelling"
        )


async def cmd_orders(ctx: Context) -> int:
    """Print the account's open orders: a table, or one JSON object per order."""
    args, out = ctx.args, ctx.out
    async with ctx.session() as client:
        account = ctx.account(client, "orders")
        orders = await list_open_orders(client, account, args.instrument, out)
    scope = f" on {args.instrument}" if args.instrument else ""
    if args.ids or out.json_mode:  # one id (for `cancel-many -`) or one object per line
        for order in orders:
            if args.ids:
                out.line(order.trade_order_id)
            else:
                out.emit(msgspec.to_builtins(order))
            if out.stdout_closed:
                break
        return EXIT_OK
    if not orders:
        out.say(f"no open orders on {account}{scope}")
        return EXIT_OK
    out.table(
        f"{len(orders):,} open orders of {account}{scope}",
        ("order id", "status", "side", "quantity", "price", "executed", "instrument"),
        [
            (
                order.trade_order_id,
                order.status or "-",
                order.order_side or "",
                order.quantity or "",
                order.limit_price or "",
                order.executed_quantity or "",
                order.instrument_id or "",
            )
            for order in orders
        ],
    )
    return EXIT_OK


# ---- watch ----------------------------------------------------------------------------------


def order_line(order: TradeOrder) -> str:
    """One update as a line; every field came from the server, so each is cleaned."""
    stamp = time.strftime("%H:%M:%S", time.localtime()) + f".{int(time.time() * 1000) % 1000:03d}"
    parts = [stamp, order.trade_order_id, order.status or "-"]
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
    return "  ".join(clean_line(part) for part in parts)


async def cmd_watch(ctx: Context) -> int:
    """Print order updates until Ctrl-C (exit 130), ``--count`` updates, or stdout closes."""
    args, out = ctx.args, ctx.out
    async with ctx.streaming() as client:
        account = ctx.account(client, "watch")
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
                if out.stdout_closed or (args.count and seen >= args.count):
                    break
        finally:
            await _aclose(updates)
    return EXIT_OK
