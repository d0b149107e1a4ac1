"""The ``cadenza-async`` command line: demo, sim, cancel, cancel-many, cancel-all, watch.

Real endpoints come from the ``CADENZA_*`` environment variables (or flags);
``--json`` prints one JSON object per line for scripts. Progress bars and
tables use ``rich`` when it is installed (the ``cli`` extra) and plain text
otherwise; the library itself never imports it.

Exit status: 0 every order reached a final state (an order that filled before
the cancel is an outcome, shown with ``cancelled: false``); 1 at least one
cancel failed with an error; 2 a usage or configuration error; 130 interrupted.
Errors print one line, never a traceback, never the token.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

import msgspec

from .client import CadenzaClient
from .errors import CadenzaError, ConfigurationError
from .models import CancelResult, OrderStatus, TradeOrder

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from .testing import CadenzaSimulator

__all__ = ["main", "run"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_json_line = msgspec.json.Encoder().encode

Outcome = CancelResult | TradeOrder | CadenzaError


# ---- output ------------------------------------------------------------------------------


class _Output:
    """Where the command writes: rich when available, plain text otherwise, or JSON lines.

    Human text goes to stdout, progress and warnings to stderr; in JSON mode
    stdout carries only JSON objects.
    """

    def __init__(self, *, json_mode: bool = False, plain: bool = False) -> None:
        self.json_mode = json_mode
        self.console: Console | None = None
        self.err_console: Console | None = None
        if not json_mode and not plain:
            try:
                from rich.console import Console
            except ImportError:  # the `cli` extra is not installed
                pass
            else:
                self.console = Console(highlight=False)
                self.err_console = Console(stderr=True, highlight=False)
        self.secrets: list[str] = []

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "***")
        return text

    def say(self, text: str = "", style: str | None = None) -> None:
        """A line for people (suppressed in JSON mode)."""
        if self.json_mode:
            return
        text = self.redact(text)
        if self.console is not None:
            self.console.print(text, style=style, markup=False, highlight=False)
        else:
            print(text, flush=True)

    def emit(self, obj: dict[str, Any]) -> None:
        """One JSON object on one line of stdout."""
        sys.stdout.write(self.redact(_json_line(obj).decode()) + "\n")
        sys.stdout.flush()

    def note(self, text: str) -> None:
        """A remark on stderr (both modes)."""
        text = self.redact(text)
        if self.err_console is not None:
            self.err_console.print(text, style="dim", markup=False, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def error(self, text: str) -> None:
        """The one-line error message on stderr."""
        text = "error: " + self.redact(text).replace("\n", " ")
        if self.err_console is not None:
            self.err_console.print(text, style="bold red", markup=False, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def table(self, title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
        if self.json_mode:
            return
        cells = [[self.redact(str(cell)) for cell in row] for row in rows]
        if self.console is not None:
            from rich.table import Table
            from rich.text import Text

            table = Table(title=title, title_justify="left", show_lines=False)
            for name in columns:
                table.add_column(name)
            for row in cells:
                table.add_row(*(Text(cell) for cell in row))
            self.console.print(table)
            return
        widths = [len(name) for name in columns]
        for row in cells:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
        print(title)
        print("  ".join(name.ljust(w) for name, w in zip(columns, widths, strict=True)).rstrip())
        print("  ".join("-" * w for w in widths))
        for row in cells:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        sys.stdout.flush()

    def progress(self, total: int, label: str) -> _ProgressBar:
        return _ProgressBar(self, total, label)


class _ProgressBar:
    """A live progress bar (rich) or a carriage-return counter on a terminal (plain)."""

    def __init__(self, out: _Output, total: int, label: str) -> None:
        self._out = out
        self.total = total
        self.label = label
        self.done = 0
        self.failed = 0
        self._started = time.perf_counter()
        self._last_plain = 0.0
        self._progress: Progress | None = None
        self._task: Any = None
        self._plain_live = not out.json_mode and out.err_console is None and sys.stderr.isatty()

    def __enter__(self) -> _ProgressBar:
        if self._out.err_console is not None:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TextColumn("{task.fields[failed]}", style="red"),
                TimeElapsedColumn(),
                console=self._out.err_console,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=self.total, rate="", failed="")
        return self

    def advance(self, *, failed: bool = False) -> None:
        self.done += 1
        self.failed += failed
        elapsed = time.perf_counter() - self._started
        rate = f"{self.done / elapsed:,.0f}/s" if elapsed > 0 else ""
        if self._progress is not None:
            self._progress.update(
                self._task,
                advance=1,
                rate=rate,
                failed=f"{self.failed} failed" if self.failed else "",
            )
        elif self._plain_live and (elapsed - self._last_plain >= 0.1 or self.done == self.total):
            self._last_plain = elapsed
            sys.stderr.write(f"\r{self.label} {self.done}/{self.total} {rate}  ")
            sys.stderr.flush()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
        elif self._plain_live:
            sys.stderr.write("\n")
            sys.stderr.flush()


# ---- outcomes ----------------------------------------------------------------------------


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _outcome_json(order_id: str, outcome: Outcome) -> dict[str, Any]:
    """The JSON line for one order's outcome."""
    if isinstance(outcome, CancelResult):
        return {
            "order_id": order_id,
            "ok": True,
            "cancelled": outcome.cancelled,
            "status": outcome.status,
            "confirmed": True,
            "source": outcome.source,
            "latency": round(outcome.latency, 6),
            "acked_after": None if outcome.acked_after is None else round(outcome.acked_after, 6),
            "order": msgspec.to_builtins(outcome.order),
        }
    if isinstance(outcome, TradeOrder):
        return {
            "order_id": order_id,
            "ok": True,
            "cancelled": outcome.status == OrderStatus.CANCELLED,
            "status": outcome.status,
            "confirmed": False,
            "order": msgspec.to_builtins(outcome),
        }
    return {
        "order_id": order_id,
        "ok": False,
        "error": type(outcome).__name__,
        "message": str(outcome),
    }


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    return sorted_values[round(q * (len(sorted_values) - 1))]


@dataclass
class _Tally:
    """Counts outcomes of many cancels for the summary table."""

    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None
    cancelled: int = 0
    not_cancelled: Counter[str] = field(default_factory=Counter)
    unconfirmed: Counter[str] = field(default_factory=Counter)
    errors: dict[str, CadenzaError] = field(default_factory=dict)
    sources: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    def add(self, order_id: str, outcome: Outcome) -> None:
        if isinstance(outcome, CancelResult):
            self.sources[outcome.source] += 1
            self.latencies.append(outcome.latency)
            if outcome.cancelled:
                self.cancelled += 1
            else:
                self.not_cancelled[outcome.status] += 1
        elif isinstance(outcome, TradeOrder):
            self.unconfirmed[outcome.status] += 1
        else:
            self.errors[order_id] = outcome

    @property
    def total(self) -> int:
        return (
            self.cancelled
            + sum(self.not_cancelled.values())
            + sum(self.unconfirmed.values())
            + len(self.errors)
        )

    @property
    def elapsed(self) -> float:
        end = self.finished if self.finished is not None else time.perf_counter()
        return end - self.started

    def rows(self) -> list[tuple[str, str]]:
        rows = [("orders", f"{self.total:,}")]
        if self.cancelled or self.latencies:
            rows.append(("cancelled (confirmed)", f"{self.cancelled:,}"))
        for status, n in sorted(self.not_cancelled.items()):
            rows.append((f"not cancelled: {status}", f"{n:,}"))
        for status, n in sorted(self.unconfirmed.items()):
            rows.append((f"cancel sent, reply {status} (not confirmed)", f"{n:,}"))
        errors = Counter(type(exc).__name__ for exc in self.errors.values())
        for name, n in sorted(errors.items()):
            rows.append((f"failed: {name}", f"{n:,}"))
        if self.sources:
            shown = ", ".join(f"{src} {n:,}" for src, n in self.sources.most_common())
            rows.append(("confirmed by", shown))
        if self.latencies:
            ordered = sorted(self.latencies)
            rows.append(
                (
                    "latency p50 / p99 / max",
                    f"{_ms(_percentile(ordered, 0.5))} / {_ms(_percentile(ordered, 0.99))}"
                    f" / {_ms(ordered[-1])}",
                )
            )
        elapsed = self.elapsed
        rows.append(("elapsed", f"{elapsed:.2f} s"))
        if elapsed > 0 and self.total:
            rows.append(("throughput", f"{self.total / elapsed:,.0f} orders/s"))
        return rows


def _show_tally(out: _Output, tally: _Tally, order: Sequence[str], max_errors: int = 20) -> None:
    out.table("Summary", ("", "value"), tally.rows())
    if not tally.errors:
        return
    failed = [oid for oid in order if oid in tally.errors]
    failed += [oid for oid in tally.errors if oid not in set(failed)]
    rows = [(oid, _error_text(tally.errors[oid])) for oid in failed[:max_errors]]
    if len(failed) > max_errors:
        rows.append(("...", f"{len(failed) - max_errors} more"))
    out.table("Failed", ("order id", "error"), rows)


def _describe(order_id: str, outcome: Outcome) -> str:
    if isinstance(outcome, CancelResult):
        verdict = "cancelled" if outcome.cancelled else "NOT cancelled"
        acked = f", HTTP/RPC reply after {_ms(outcome.acked_after)}" if outcome.acked_after else ""
        return (
            f"{order_id}  {outcome.status}  {verdict}: confirmed by {outcome.source} "
            f"after {_ms(outcome.latency)}{acked}"
        )
    if isinstance(outcome, TradeOrder):
        return f"{order_id}  {outcome.status}  (the server's reply; not confirmed: use --confirm)"
    return f"{order_id}  failed: {_error_text(outcome)}"


# ---- the client from flags and environment -----------------------------------------------


def _client(args: argparse.Namespace, out: _Output) -> CadenzaClient:
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


def _account(args: argparse.Namespace, client: CadenzaClient) -> str | None:
    account: str | None = args.account or client.config.trading_account_id
    return account


def _read_ids(source: str) -> list[str]:
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


async def _closing(iterator: AsyncIterator[Any]) -> None:
    aclose: Callable[[], Awaitable[Any]] | None = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


# ---- commands ----------------------------------------------------------------------------


async def _cmd_cancel(args: argparse.Namespace, out: _Output) -> int:
    async with _client(args, out) as client:
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
        out.emit(_outcome_json(args.order_id, outcome))
    elif isinstance(outcome, CadenzaError):
        out.error(_describe(args.order_id, outcome))
    else:
        out.say(_describe(args.order_id, outcome))
    return EXIT_FAILED if isinstance(outcome, CadenzaError) else EXIT_OK


async def _cancel_with_progress(
    out: _Output,
    ids: Sequence[str],
    results: AsyncIterator[Any],
    label: str,
) -> _Tally:
    """Drain ``results`` into a tally, with a progress bar and JSON lines.

    Items are outcomes, or ``(order_id, outcome)`` pairs.
    """
    tally = _Tally()
    with out.progress(len(set(ids)), label) as bar:
        try:
            async for item in results:
                oid, outcome = item if isinstance(item, tuple) else (_outcome_id(item), item)
                tally.add(oid, outcome)
                bar.advance(failed=isinstance(outcome, CadenzaError))
                if out.json_mode:
                    out.emit(_outcome_json(oid, outcome))
        finally:
            await _closing(results)
    tally.finished = time.perf_counter()
    return tally


async def _cmd_cancel_many(args: argparse.Namespace, out: _Output) -> int:
    ids = _read_ids(args.file)
    if not ids:
        out.note("no order ids given")
        return EXIT_OK
    async with _client(args, out) as client:
        results = client.cancel_many_iter(
            ids,
            concurrency=args.concurrency,
            confirm=not args.no_confirm,
            timeout=args.timeout,
            trading_account_id=args.account,
        )
        tally = await _cancel_with_progress(out, ids, results, "cancelling")
    _show_tally(out, tally, ids)
    return EXIT_FAILED if tally.errors else EXIT_OK


async def _cmd_cancel_all(args: argparse.Namespace, out: _Output) -> int:
    async with _client(args, out) as client:
        account = _account(args, client)
        if account is None:
            raise ConfigurationError("cancel-all needs --account or CADENZA_TRADING_ACCOUNT_ID")
        scope = f" on {args.instrument}" if args.instrument else ""
        out.note(f"cancelling every open order of {account}{scope} ...")
        tally = _Tally()
        outcomes = await client.cancel_all_open(account, instrument_id=args.instrument)
        tally.finished = time.perf_counter()
    order: list[str] = []
    for outcome in outcomes:
        oid = _outcome_id(outcome)
        order.append(oid)
        tally.add(oid, outcome)
        if out.json_mode:
            out.emit(_outcome_json(oid, outcome))
    _show_tally(out, tally, order)
    return EXIT_FAILED if tally.errors else EXIT_OK


def _outcome_id(outcome: Outcome) -> str:
    if isinstance(outcome, CancelResult):
        return outcome.order_id
    if isinstance(outcome, TradeOrder):
        return outcome.trade_order_id
    return outcome.order_id or "?"


def _order_line(order: TradeOrder) -> str:
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


async def _cmd_watch(args: argparse.Namespace, out: _Output) -> int:
    async with _client(args, out) as client:
        account = _account(args, client)
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
                    out.say(_order_line(order))
                seen += 1
                if args.count and seen >= args.count:
                    break
        finally:
            await _closing(updates)
    return EXIT_OK


def _cmd_sim(args: argparse.Namespace, out: _Output) -> int:
    from .testing import serve

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


# ---- demo --------------------------------------------------------------------------------


@dataclass
class _Step:
    label: str
    ok: bool
    detail: str
    seconds: float


async def _demo_step(
    out: _Output, label: str, title: str, body: Callable[[], Awaitable[tuple[bool, str]]]
) -> _Step:
    """Run one demo step; its check failing, or a CadenzaError, marks it FAILED."""
    out.say()
    out.say(title, style="bold cyan")
    started = time.perf_counter()
    try:
        ok, detail = await body()
    except (CadenzaError, TimeoutError, asyncio.TimeoutError) as exc:
        ok, detail = False, _error_text(exc)
    step = _Step(label, ok, detail, time.perf_counter() - started)
    out.say(("  ok: " if ok else "  FAILED: ") + detail, style="green" if ok else "bold red")
    return step


async def _cmd_demo(args: argparse.Namespace, out: _Output) -> int:
    from .testing import CadenzaSimulator

    out.say("cadenza-async demo: an exchange simulator on loopback, no network", style="bold")
    steps: list[_Step] = []
    async with CadenzaSimulator(cancel_delay=0.05) as sim:
        options: dict[str, Any] = {
            "token": sim.token,
            "api_url": sim.api_url,
            "ws_url": sim.ws_url,
            "trading_account_id": sim.trading_account_id,
        }
        out.say(f"simulator at {sim.api_url}, one WebSocket at {sim.ws_url}")
        async with CadenzaClient(**options) as client:
            steps.append(
                await _demo_step(
                    out,
                    "1. cancel_and_confirm",
                    "1. cancel_and_confirm, with a 50 ms exchange delay",
                    lambda: _demo_single(out, sim, client),
                )
            )
            steps.append(
                await _demo_step(
                    out,
                    f"2. bulk {args.bulk:,}",
                    f"2. bulk cancel of {args.bulk:,} orders (cancel_many_iter, concurrency 64)",
                    lambda: _demo_bulk(out, sim, client, args.bulk),
                )
            )
            steps.append(
                await _demo_step(
                    out,
                    f"3. fire-and-forget x{args.burst}",
                    f"3. {args.burst} fire-and-forget cancels, drained when the client closes",
                    lambda: _demo_burst(out, sim, options, args.burst),
                )
            )
            steps.append(
                await _demo_step(
                    out,
                    "4. reconnect mid-cancel",
                    "4. the WebSocket drops (close code 3001) while a cancel is in flight",
                    lambda: _demo_reconnect(out, sim, client),
                )
            )
            steps.append(
                await _demo_step(
                    out,
                    "5. filled first",
                    "5. the order fills before the cancel lands",
                    lambda: _demo_filled(out, sim, client),
                )
            )
    out.say()
    out.table(
        "6. Summary",
        ("step", "check", "detail", "time"),
        [(s.label, "ok" if s.ok else "FAILED", s.detail, f"{s.seconds:.2f} s") for s in steps],
    )
    failed = [s for s in steps if not s.ok]
    if failed:
        out.say(f"{len(failed)} of {len(steps)} checks failed", style="bold red")
        return EXIT_FAILED
    out.say(f"all {len(steps)} checks held", style="bold green")
    return EXIT_OK


async def _demo_single(
    out: _Output, sim: CadenzaSimulator, client: CadenzaClient
) -> tuple[bool, str]:
    sim.cancel_delay = 0.05
    order = sim.create_order(instrument_id="BINANCE:BTC/USDT", order_side="BUY", limit_price="100")
    result = await client.cancel_and_confirm(order.trade_order_id)
    out.say(f"  order {result.order_id}")
    if result.acked_after is not None:
        out.say(
            f"  cancel sent -> HTTP reply       {_ms(result.acked_after):>10}   "
            "PENDING_CANCEL: the exchange has not processed it yet"
        )
    else:
        out.say("  the exchange's event arrived before the HTTP reply")
    out.say(
        f"  cancel sent -> confirmation     {_ms(result.latency):>10}   "
        f"{result.status} (source: {result.source}): cancel_and_confirm returns here"
    )
    final = sim.get_order(order.trade_order_id)
    ok = (
        result.cancelled
        and result.source == "ws"
        and (result.acked_after is None or result.acked_after <= result.latency)
        and final is not None
        and final.status == OrderStatus.CANCELLED
    )
    return ok, (
        f"{result.status} confirmed by {result.source} after {_ms(result.latency)}; "
        f"the HTTP reply came after {_ms(result.acked_after)}"
    )


async def _demo_bulk(
    out: _Output, sim: CadenzaSimulator, client: CadenzaClient, n: int
) -> tuple[bool, str]:
    sim.cancel_delay = 0.01
    ids = [order.trade_order_id for order in sim.create_orders(n)]
    results = client.cancel_many_iter(ids, concurrency=64)
    tally = await _cancel_with_progress(out, ids, results, "  cancelling")
    still_open = sum(
        1 for oid in ids if (o := sim.get_order(oid)) is None or o.status != OrderStatus.CANCELLED
    )
    ordered = sorted(tally.latencies) or [0.0]
    detail = (
        f"{tally.cancelled:,}/{n:,} cancelled and confirmed in {tally.elapsed:.2f} s "
        f"({n / tally.elapsed:,.0f}/s; p50 {_ms(_percentile(ordered, 0.5))}, "
        f"p99 {_ms(_percentile(ordered, 0.99))})"
    )
    if tally.errors:
        detail += f"; {len(tally.errors)} failed"
    return tally.cancelled == n and not tally.errors and still_open == 0, detail


async def _demo_burst(
    out: _Output, sim: CadenzaSimulator, options: dict[str, Any], n: int
) -> tuple[bool, str]:
    sim.cancel_delay = 0.01
    ids = [order.trade_order_id for order in sim.create_orders(n)]
    started = time.perf_counter()
    async with CadenzaClient(**options) as client:
        handles = [client.cancel_nowait(oid) for oid in ids]
        fired = time.perf_counter() - started
        pending = sum(1 for h in handles if not h.done())
        out.say(
            f"  fired {n} cancels in {_ms(fired)}; {pending} still in flight when the "
            "`async with` block ends"
        )
    drained = time.perf_counter() - started
    failures = [h for h in handles if not h.done() or h.exception() is not None]
    applied = sim.cancels_applied
    reached = sum(1 for oid in ids if applied[oid] == 1)
    cancelled = sum(
        1 for oid in ids if (o := sim.get_order(oid)) is not None and o.status == "CANCELLED"
    )
    out.say(f"  after close: {reached}/{n} cancels applied by the exchange, each exactly once")
    ok = not failures and reached == n and cancelled == n
    return ok, f"{reached}/{n} reached the exchange; closing drained them in {_ms(drained)}"


async def _demo_reconnect(
    out: _Output, sim: CadenzaSimulator, client: CadenzaClient
) -> tuple[bool, str]:
    sim.cancel_delay = 0.3
    order = sim.create_order()
    oid = order.trade_order_id
    connects = sim.connect_count
    task = asyncio.ensure_future(client.cancel_and_confirm(oid, timeout=10.0))
    try:
        await sim.wait_for(
            lambda: (o := sim.get_order(oid)) is not None and o.status == "PENDING_CANCEL"
        )
        out.say("  exchange says PENDING_CANCEL; dropping every WebSocket connection now")
        await sim.disconnect_all(3001)
        result = await task
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    await sim.wait_for(lambda: sim.connect_count > connects)
    out.say(f"  reconnected ({sim.connect_count - connects} new connection) and resubscribed")
    ok = result.cancelled and result.status == OrderStatus.CANCELLED
    return ok, (
        f"{result.status} confirmed by {result.source} after {_ms(result.latency)} "
        "across the reconnect"
    )


async def _demo_filled(
    out: _Output, sim: CadenzaSimulator, client: CadenzaClient
) -> tuple[bool, str]:
    sim.cancel_delay = 0.0
    order = sim.create_order(quantity="2")
    sim.fill_on_next_cancel(order.trade_order_id)
    result = await client.cancel_and_confirm(order.trade_order_id)
    out.say(
        f"  cancelled={result.cancelled}, status {result.status}, executed "
        f"{result.order.executed_quantity}: an outcome, not an exception"
    )
    ok = not result.cancelled and result.status == OrderStatus.FILLED
    return ok, f"cancelled={result.cancelled}, {result.status} (source: {result.source})"


# ---- argument parsing and entry points ---------------------------------------------------

_EPILOG = (
    "Endpoints and credentials come from CADENZA_API_URL, CADENZA_WS_URL, CADENZA_TOKEN and "
    "CADENZA_TRADING_ACCOUNT_ID (flags win). Exit status: 0 every order reached a final state, "
    "1 a cancel failed, 2 usage or configuration error, 130 interrupted."
)


def _parser() -> argparse.ArgumentParser:
    connection = argparse.ArgumentParser(add_help=False)
    group = connection.add_argument_group("connection (defaults: CADENZA_* environment)")
    group.add_argument("--api-url", help="REST base URL (CADENZA_API_URL)")
    group.add_argument("--ws-url", help="Centrifugo WebSocket URL (CADENZA_WS_URL)")
    group.add_argument(
        "--token",
        help="access token; prefer CADENZA_TOKEN: a flag is visible in the process list",
    )
    group.add_argument("--account", help="trading account id (CADENZA_TRADING_ACCOUNT_ID)")
    group.add_argument(
        "--via",
        choices=("http", "ws"),
        help="send cancels over HTTP (default) or as a WebSocket RPC (needs --account: "
        "an order whose account is not given is cancelled over HTTP)",
    )
    group.add_argument(
        "--allow-insecure",
        action="store_true",
        help="allow http:// and ws:// to non-loopback hosts",
    )
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="one JSON object per line")
    output.add_argument("--plain", action="store_true", help="plain text: no colours, no bars")

    parser = argparse.ArgumentParser(
        prog="cadenza-async",
        description="Cancel Cadenza orders and know the exchange processed them.",
        epilog=_EPILOG,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="run the offline demo against the embedded simulator",
        description="A tour against an in-process exchange simulator: no network, no token.",
    )
    demo.add_argument("--plain", action="store_true", help="plain text: no colours, no bars")
    demo.add_argument("--bulk", type=_positive_int, default=1000, help="orders in the bulk step")
    demo.add_argument("--burst", type=_positive_int, default=200, help="fire-and-forget cancels")
    demo.set_defaults(handler=_cmd_demo, json=False)

    sim = commands.add_parser(
        "sim",
        help="run the exchange simulator until Ctrl-C",
        description="Serve the Cadenza exchange simulator (REST + Centrifugo WebSocket).",
    )
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    sim.add_argument("--cancel-delay", type=float, default=0.0, help="exchange delay (s)")
    sim.add_argument("--orders", type=int, default=0, help="open orders to create at start")
    sim.add_argument("--token", dest="sim_token", help="the simulator's token (default: random)")
    sim.add_argument("--account", dest="sim_account", help="the simulator's account id")
    sim.add_argument("--ping-interval", type=float, default=25.0)
    sim.add_argument("--history-size", type=int, default=300)
    sim.add_argument("--event-shape", choices=("order", "status_change"), default="order")
    sim.add_argument("--no-uvloop", action="store_true", help="use the default asyncio loop")
    sim.set_defaults(handler=None, json=False, plain=True)

    cancel = commands.add_parser(
        "cancel",
        parents=[connection, output],
        help="cancel one order",
        description="Cancel one order; with --confirm, wait until the exchange processed it.",
        epilog=_EPILOG,
    )
    cancel.add_argument("order_id", metavar="ID")
    cancel.add_argument(
        "--confirm", action="store_true", help="wait for the exchange's confirmation"
    )
    cancel.add_argument("--timeout", type=_positive_float, help="confirmation deadline (s)")
    cancel.set_defaults(handler=_cmd_cancel)

    many = commands.add_parser(
        "cancel-many",
        parents=[connection, output],
        help="cancel many orders (ids from a file or stdin)",
        description="Cancel the orders listed one per line in FILE (or stdin), confirmed.",
        epilog=_EPILOG,
    )
    many.add_argument("file", nargs="?", default="-", metavar="FILE", help="'-' for stdin")
    many.add_argument("--concurrency", type=_positive_int, default=64)
    many.add_argument(
        "--no-confirm", action="store_true", help="stop at the HTTP reply; do not confirm"
    )
    many.add_argument("--timeout", type=_positive_float, help="per-order confirmation deadline")
    many.set_defaults(handler=_cmd_cancel_many)

    cancel_all = commands.add_parser(
        "cancel-all",
        parents=[connection, output],
        help="cancel every open order of an account",
        description="List the account's open orders and cancel them all, confirmed.",
        epilog=_EPILOG,
    )
    cancel_all.add_argument("--instrument", help="only orders on this instrument")
    cancel_all.set_defaults(handler=_cmd_cancel_all)

    watch = commands.add_parser(
        "watch",
        parents=[connection, output],
        help="print order updates as they arrive",
        description="Print the account's order updates until Ctrl-C (or --count updates).",
        epilog=_EPILOG,
    )
    watch.add_argument("--count", type=_positive_int, help="stop after N updates")
    watch.set_defaults(handler=_cmd_watch)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _parse(argv: Sequence[str] | None) -> argparse.Namespace | int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    return args


def _output(args: argparse.Namespace) -> _Output:
    out = _Output(json_mode=bool(args.json), plain=bool(args.plain))
    token = getattr(args, "token", None)
    out.secrets = [s for s in (token, os.environ.get("CADENZA_TOKEN")) if s]
    return out


async def _dispatch(args: argparse.Namespace, out: _Output) -> int:
    try:
        code: int = await args.handler(args, out)
    except ConfigurationError as exc:
        out.error(str(exc))
        return EXIT_USAGE
    except CadenzaError as exc:
        out.error(_error_text(exc))
        return EXIT_FAILED
    except Exception as exc:  # no traceback for users; the one line names what happened
        out.error(f"unexpected {_error_text(exc)}")
        return EXIT_FAILED
    return code


async def run(argv: Sequence[str] | None = None) -> int:
    """The command inside a running event loop (``sim`` excepted); returns the exit status."""
    args = _parse(argv)
    if isinstance(args, int):
        return args
    if args.handler is None:
        raise RuntimeError("`sim` runs its own event loop: call main()")
    return await _dispatch(args, _output(args))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cadenza-async`` console script; returns the exit status."""
    args = _parse(argv)
    if isinstance(args, int):
        return args
    out = _output(args)
    if args.handler is None:
        return _cmd_sim(args, out)
    try:
        return asyncio.run(_dispatch(args, out))
    except KeyboardInterrupt:
        if args.command == "watch":
            return EXIT_OK
        out.error("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
