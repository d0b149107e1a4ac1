"""``cadenza-async demo``: a scripted tour against an in-process exchange simulator."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..client import CadenzaClient
from ..errors import CadenzaError
from ..models import OrderStatus
from ._commands import cancel_with_progress
from ._errors import EXIT_FAILED, EXIT_OK
from ._outcomes import error_text, ms, percentile
from ._output import Output
from ._session import Context

if TYPE_CHECKING:
    from ..testing import CadenzaSimulator

__all__ = ["cmd_demo"]


@dataclass
class _Step:
    label: str
    ok: bool
    detail: str
    seconds: float


async def _demo_step(
    out: Output, label: str, title: str, body: Callable[[], Awaitable[tuple[bool, str]]]
) -> _Step:
    """Run one demo step; its check failing, or a CadenzaError, marks it FAILED."""
    out.say()
    out.say(title, style="bold cyan")
    started = time.perf_counter()
    try:
        ok, detail = await body()
    except (CadenzaError, TimeoutError, asyncio.TimeoutError) as exc:
        ok, detail = False, error_text(exc)
    step = _Step(label, ok, detail, time.perf_counter() - started)
    out.say(("  ok: " if ok else "  FAILED: ") + detail, style="green" if ok else "bold red")
    return step


async def cmd_demo(ctx: Context) -> int:
    """The tour: six steps, each checked against the simulator's own record."""
    args, out = ctx.args, ctx.out
    from ..testing import CadenzaSimulator

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
            steps.append(
                await _demo_step(
                    out,
                    "6. requote",
                    "6. a requote: replace_and_confirm pulls the quote, then places the next",
                    lambda: _demo_requote(out, sim, client),
                )
            )
    out.say()
    out.table(
        "7. Summary",
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
    out: Output, sim: CadenzaSimulator, client: CadenzaClient
) -> tuple[bool, str]:
    sim.cancel_delay = 0.05
    order = sim.create_order(instrument_id="BINANCE:BTC/USDT", order_side="BUY", limit_price="100")
    result = await client.cancel_and_confirm(order.trade_order_id)
    out.say(f"  order {result.order_id}")
    if result.acked_after is not None:
        out.say(
            f"  cancel sent -> HTTP reply       {ms(result.acked_after):>10}   "
            "PENDING_CANCEL: the exchange has not processed it yet"
        )
    else:
        out.say("  the exchange's event arrived before the HTTP reply")
    out.say(
        f"  cancel sent -> confirmation     {ms(result.latency):>10}   "
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
        f"{result.status} confirmed by {result.source} after {ms(result.latency)}; "
        f"the HTTP reply came after {ms(result.acked_after)}"
    )


async def _demo_bulk(
    out: Output, sim: CadenzaSimulator, client: CadenzaClient, n: int
) -> tuple[bool, str]:
    sim.cancel_delay = 0.01
    ids = [order.trade_order_id for order in sim.create_orders(n)]
    results = client.cancel_many_iter(ids, concurrency=64)
    tally = await cancel_with_progress(out, ids, results, "  cancelling")
    still_open = sum(
        1 for oid in ids if (o := sim.get_order(oid)) is None or o.status != OrderStatus.CANCELLED
    )
    ordered = sorted(tally.latencies) or [0.0]
    detail = (
        f"{tally.cancelled:,}/{n:,} cancelled and confirmed in {tally.elapsed:.2f} s "
        f"({n / tally.elapsed:,.0f}/s; p50 {ms(percentile(ordered, 0.5))}, "
        f"p99 {ms(percentile(ordered, 0.99))})"
    )
    if tally.errors:
        detail += f"; {len(tally.errors)} failed"
    return tally.cancelled == n and not tally.errors and still_open == 0, detail


async def _demo_burst(
    out: Output, sim: CadenzaSimulator, options: dict[str, Any], n: int
) -> tuple[bool, str]:
    sim.cancel_delay = 0.01
    ids = [order.trade_order_id for order in sim.create_orders(n)]
    started = time.perf_counter()
    async with CadenzaClient(**options) as client:
        handles = [client.cancel_nowait(oid) for oid in ids]
        fired = time.perf_counter() - started
        pending = sum(1 for h in handles if not h.done())
        out.say(
            f"  fired {n} cancels in {ms(fired)}; {pending} still in flight when the "
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
    return ok, f"{reached}/{n} reached the exchange; closing drained them in {ms(drained)}"


async def _demo_reconnect(
    out: Output, sim: CadenzaSimulator, client: CadenzaClient
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
        f"{result.status} confirmed by {result.source} after {ms(result.latency)} "
        "across the reconnect"
    )


async def _demo_filled(
    out: Output, sim: CadenzaSimulator, client: CadenzaClient
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


async def _demo_requote(
    out: Output, sim: CadenzaSimulator, client: CadenzaClient
) -> tuple[bool, str]:
    sim.cancel_delay = 0.02
    sim.accept_delay = 0.02
    instrument = "BINANCE:ETH/USDT"
    fields: dict[str, Any] = {
        "instrument_id": instrument,
        "order_side": "SELL",
        "order_type": "LIMIT",
        "quantity": "1",
        "time_in_force": "GTC",
    }
    first = await client.submit_and_confirm(**fields, limit_price="3000.0")
    acked = first.acked_after
    how = (
        f"the reply came after {ms(acked)}, still SUBMITTED; proven by {first.source}"
        if acked is not None and acked < first.latency
        else f"proven by {first.source}"
    )
    out.say(f"  quote at 3000.0: {first.status} after {ms(first.latency)} ({how})")
    current, ok = first.order_id, first.accepted
    for price in ("3000.5", "3001.0", "3000.8"):
        rep = await client.replace_and_confirm(current, **fields, limit_price=price)
        cancel, submit = rep.cancel, rep.submit
        if cancel is None or submit is None or not submit.accepted:
            ok = False
            out.say(f"  requote to {price}: {rep.outcome}")
            break
        out.say(
            f"  requote to {price}: old {cancel.status} after {ms(cancel.latency)}, "
            f"then new {submit.status} after {ms(submit.latency)}"
        )
        current = submit.order_id
    sim.fill(current)
    rep = await client.replace_and_confirm(current, **fields, limit_price="3002.0")
    out.say(
        f"  the quote filled before the next requote: {rep.outcome}, nothing placed "
        "(place_if_filled=True would place it)"
    )
    sim.accept_delay = 0.0
    peak = sim.peak_live_orders(instrument)
    ok = ok and rep.outcome == "old_filled" and rep.submit is None and peak == 1
    out.say(f"  quotes live on the exchange at any one instant, at most: {peak}")
    return ok, f"3 requotes and a fill, never more than {peak} live quote"
