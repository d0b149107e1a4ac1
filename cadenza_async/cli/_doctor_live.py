"""The doctor's optional live proof: one test order far from the market, placed, then its cancel proven.

Only with ``--place-test-order --instrument X --price P --quantity Q``, and
only after a confirmation on the terminal (or ``--yes``). The order is a
LIMIT GTC order; before it is placed, its price is compared with the last
fill price of the instrument among the account's recent orders, and it is
refused unless at least :data:`FAR_FROM_MARKET` (20%) away on the passive
side: a BUY at most 80% of that price, a SELL at least 120%. With no fill
to compare with, the price cannot be checked, and the prompt says so. The
order is then cancelled with ``cancel_and_confirm``: the line shows the
submit's and the cancel's acknowledgement, the confirmation latency, and
what proved it.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from ..client import CadenzaClient
from ..errors import CadenzaError, ConfigurationError, TransportError
from ..models import TradeOrder
from ._doctor_report import CheckReport
from ._outcomes import error_text, ms
from ._output import Output
from ._prompt import ask
from ._prompt import stdin_is_terminal as _stdin_is_terminal

__all__ = [
    "FAR_FROM_MARKET",
    "LiveOrder",
    "ask",
    "last_fill_price",
    "live_order_request",
    "positive_decimal",
    "price_refusal",
    "prove_live",
]

#: How far from the last fill price a test order must be (a fraction of it), on the passive side.
FAR_FROM_MARKET: Final = Decimal("0.20")
#: Orders looked at for the instrument's last fill price.
_PRICE_LOOKBACK: Final = 50
_CHECK: Final = "live.order"
_PROOF_SOURCES: Final = {
    "ws": "the WebSocket event",
    "http": "the cancel's HTTP reply",
    "rest": "a REST look-up",
}


# ---- the flags and the question -------------------------------------------------------------


def positive_decimal(text: str) -> Decimal:
    """An argparse type: a finite decimal above zero."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a decimal number: {text!r}") from None
    if not value.is_finite() or value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


@dataclass(frozen=True)
class LiveOrder:
    """The test order asked for with ``--place-test-order``."""

    instrument: str
    side: str
    price: Decimal
    quantity: Decimal


def live_order_request(args: argparse.Namespace) -> LiveOrder | None:
    """The test order the flags ask for, or None; raises ConfigurationError (exit 2) for flags that do not fit."""
    extras = [
        flag
        for flag, value in (
            ("--instrument", args.instrument),
            ("--price", args.price),
            ("--quantity", args.quantity),
            ("--side", args.side),
            ("--yes", args.yes or None),
        )
        if value is not None
    ]
    if not args.place_test_order:
        if extras:
            raise ConfigurationError(f"{', '.join(extras)}: only with --place-test-order")
        return None
    missing = [
        flag
        for flag, value in (
            ("--instrument", args.instrument),
            ("--price", args.price),
            ("--quantity", args.quantity),
        )
        if value is None
    ]
    if missing:
        raise ConfigurationError(f"--place-test-order needs {', '.join(missing)}")
    if not args.instrument.strip():
        raise ConfigurationError("--instrument must not be empty")
    if not args.yes and not _stdin_is_terminal():
        raise ConfigurationError(
            "--place-test-order asks for confirmation on a terminal: "
            "pass --yes to place the order without asking"
        )
    return LiveOrder(args.instrument.strip(), args.side or "BUY", args.price, args.quantity)


# ---- prices ---------------------------------------------------------------------------------


def _fill_price(order: TradeOrder) -> Decimal | None:
    try:
        executed = Decimal(order.executed_quantity or "0")
        if not executed.is_finite() or executed <= 0:
            return None
        if order.executed_price:
            price = Decimal(order.executed_price)
        elif order.executed_cost:
            price = Decimal(order.executed_cost) / executed
        else:
            return None
    except (InvalidOperation, ArithmeticError):
        return None
    return price if price.is_finite() and price > 0 else None


def last_fill_price(orders: Sequence[TradeOrder]) -> Decimal | None:
    """The price of the most recent fill among ``orders`` (executed price, or cost / quantity)."""
    best: tuple[int, Decimal] | None = None
    for order in orders:
        price = _fill_price(order)
        if price is None:
            continue
        stamp = order.updated_at or order.created_at or 0
        if best is None or stamp > best[0]:
            best = (stamp, price)
    return None if best is None else best[1]


def price_refusal(side: str, price: Decimal, last: Decimal) -> str | None:
    """Why ``price`` is too near ``last`` for a test order (None when it is far enough).

    Far means at least :data:`FAR_FROM_MARKET` away on the passive side: a
    BUY at most 80% of the last price, a SELL at least 120%.
    """
    if side == "BUY":
        bound = last * (1 - FAR_FROM_MARKET)
        if price > bound:
            return (
                f"a BUY at {price} is not at least 20% below the last fill price {last} "
                f"(at most {bound.normalize():f})"
            )
        return None
    bound = last * (1 + FAR_FROM_MARKET)
    if price < bound:
        return (
            f"a SELL at {price} is not at least 20% above the last fill price {last} "
            f"(at least {bound.normalize():f})"
        )
    return None


# ---- the proof ------------------------------------------------------------------------------


async def prove_live(
    report: CheckReport,
    out: Output,
    client: CadenzaClient,
    account: str,
    live: LiveOrder,
    *,
    environment: str,
    confirmed: bool,
) -> None:
    """The ``live.order`` check: the price compared, the question asked (unless ``confirmed``), the proof."""
    try:
        page = await client.list_orders(
            trading_account_id=account, instrument_id=live.instrument, limit=_PRICE_LOOKBACK
        )
    except CadenzaError as exc:
        report.fail(
            _CHECK,
            f"nothing placed: cannot look up the last price of {live.instrument} "
            f"({error_text(exc)})",
            "see rest.auth",
        )
        return
    last = last_fill_price(page.orders)
    if last is not None:
        refusal = price_refusal(live.side, live.price, last)
        if refusal is not None:
            report.fail(
                _CHECK,
                f"refused, nothing placed: {refusal}",
                "choose a price at least 20% away from the market on the passive side "
                "(BUY below, SELL above)",
                data={"last_price": str(last)},
            )
            return
        gap = abs(live.price - last) / last * 100
        where = "below" if live.side == "BUY" else "above"
        price_note = f"{gap:.0f}% {where} the last fill price {last}"
    else:
        price_note = (
            f"no recent fill of {live.instrument} on this account: the price could not "
            "be checked against the market"
        )
    what = (
        f"a {live.side} LIMIT order for {live.quantity:f} {live.instrument} at "
        f"{live.price:f} ({price_note}) on the {environment} account {account}"
    )
    if confirmed:
        out.note(f"placing {what}, then cancelling it")
    else:
        answer = await ask(f"Place {what}, then cancel it? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            report.skip(_CHECK, "declined at the prompt: nothing placed")
            return
    await _place_and_cancel(report, out, client, account, live, last)


async def _place_and_cancel(
    report: CheckReport,
    out: Output,
    client: CadenzaClient,
    account: str,
    live: LiveOrder,
    last: Decimal | None,
) -> None:
    data: dict[str, Any] = {"last_price": None if last is None else str(last)}
    try:
        await client.subscribe_account(account)  # so the exchange's event can prove the cancel
    except CadenzaError as exc:
        report.fail(
            _CHECK,
            f"nothing placed: the order stream cannot subscribe the account ({error_text(exc)})",
            "see ws.connect and ws.subscribe",
            data=data,
        )
        return
    started = time.perf_counter()
    try:
        order = await client.submit_order(
            instrument_id=live.instrument,
            order_side=live.side,
            order_type="LIMIT",
            quantity=f"{live.quantity:f}",
            limit_price=f"{live.price:f}",
            time_in_force="GTC",
            trading_account_id=account,
        )
    except TransportError as exc:
        report.fail(
            _CHECK,
            f"the submit got no answer ({exc}): the order may or may not exist",
            f"look with `cadenza-async orders --instrument {live.instrument}` and cancel it "
            "if it is there",
            data=data,
        )
        return
    except CadenzaError as exc:
        report.fail(
            _CHECK,
            f"the order was refused, nothing placed: {error_text(exc)}",
            "check the instrument, price and quantity against the venue's rules",
            data=data,
        )
        return
    submitted = time.perf_counter() - started
    oid = order.trade_order_id
    data.update(order_id=oid, submit_ack=submitted, submit_status=order.status)
    if order.is_terminal:
        reason = f": {order.reject_reason}" if order.reject_reason else ""
        report.fail(
            _CHECK,
            f"the exchange answered the test order {oid} with {order.status}{reason}",
            "check the instrument, price and quantity against the venue's rules",
            data=data,
        )
        return
    out.note(f"placed test order {oid} ({order.status}); cancelling it")
    try:
        result = await client.cancel_and_confirm(oid, trading_account_id=account)
    except CadenzaError as exc:
        report.fail(
            _CHECK,
            f"test order {oid}: the cancel was not proven ({error_text(exc)}); "
            "it may still be live",
            f"cancel it now: cadenza-async cancel {oid}",
            data=data,
        )
        return
    data.update(
        status=result.status,
        cancelled=result.cancelled,
        source=result.source,
        cancel_ack=result.acked_after,
        confirm_latency=result.latency,
    )
    proof = _PROOF_SOURCES.get(result.source, result.source)
    if not result.cancelled:
        report.fail(
            _CHECK,
            f"test order {oid} ended {result.status}, not CANCELLED (proven by {proof})",
            "the price was not far enough from the market: check the account's positions",
            data=data,
        )
        return
    report.ok(
        _CHECK,
        f"placed {oid} (submit acknowledged in {ms(submitted)}) and cancelled it: "
        f"cancel acknowledged in {ms(result.acked_after)}, confirmed in "
        f"{ms(result.latency)} by {proof} ({result.source})",
        elapsed=submitted + result.latency,
        data=data,
    )
