"""The commands that place orders with proof: ``submit`` and ``replace``.

``submit`` places one order and waits until the exchange proved it accepted
or refused it; ``replace`` cancels an order and, once it is proven final,
places the new one (never two live orders). Exit status: 0 when the new
order is accepted (``replace``: also when the old order filled and nothing
was placed, as asked), 1 when it was refused, nothing could be proven, or
the call failed; 2 usage, configuration, refused token.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

import msgspec

from .._validate import (
    ORDER_TYPES,
    TIME_IN_FORCE,
    Unlisted,
    check_order,
    check_order_id,
    check_timeout,
)
from ..errors import CadenzaError, ConfigurationError
from ..models import ReplaceResult, SubmitResult
from ._errors import EXIT_FAILED, EXIT_OK, auth_failure, explain
from ._outcomes import ms
from ._output import clean_line
from ._session import Context

__all__ = ["add_placing_parsers", "cmd_replace", "cmd_submit"]


def add_placing_parsers(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
    epilog: str,
) -> None:
    """Add ``submit`` and ``replace`` to the command parser."""
    order = argparse.ArgumentParser(add_help=False)
    fields = order.add_argument_group("the new order")
    fields.add_argument("--instrument", required=True, help="instrument id, VENUE:BASE/QUOTE")
    fields.add_argument("--side", required=True, type=str.upper, help="BUY or SELL")
    fields.add_argument(
        "--type",
        dest="order_type",
        type=str.upper,
        default="LIMIT",
        help=f"order type (default LIMIT): {', '.join(ORDER_TYPES)}; a MARKET order takes "
        "no --price, the LIMIT ones need it",
    )
    fields.add_argument("--quantity", required=True, help="a decimal number > 0, e.g. 0.01")
    fields.add_argument("--price", help="limit price, a decimal number > 0 (LIMIT orders)")
    fields.add_argument("--stop-price", help="stop price, a decimal number > 0")
    fields.add_argument("--tif", type=str.upper, help=f"time in force: {', '.join(TIME_IN_FORCE)}")
    fields.add_argument(
        "--unlisted",
        action="store_true",
        help="send --side, --type and --tif as given even when this version does not list "
        "them (a value the API added since)",
    )
    fields.add_argument(
        "--client-order-id",
        help="the submit's idempotency key (default: a fresh uuid4); sending the same one "
        "again places no second order",
    )
    fields.add_argument("--timeout", type=positive_seconds, help="the whole call's deadline (s)")
    fields.add_argument(
        "--via",
        choices=("http", "ws"),
        help="send over HTTP (default) or as WebSocket RPCs",
    )

    submit = commands.add_parser(
        "submit",
        parents=[*parents, order],
        help="place an order and wait for the exchange's proof",
        description="Place one order and wait until the exchange proved it accepted it "
        "(OPEN, ...) or refused it (REJECTED, with its reason). Exit 0 accepted, 1 refused "
        "or unproven.",
        epilog=epilog,
    )
    submit.set_defaults(handler=cmd_submit)

    replace = commands.add_parser(
        "replace",
        parents=[*parents, order],
        help="cancel an order, then place its replacement once the old one is final",
        description="Cancel ID and wait until it is proven final; only then place the new "
        "order. Never two live orders. An old order that filled is not replaced unless "
        "--place-if-filled.",
        epilog=epilog,
    )
    replace.add_argument("old_order_id", metavar="ID", help="the order to replace")
    replace.add_argument(
        "--place-if-filled",
        action="store_true",
        help="place the new order even when the old one filled",
    )
    replace.set_defaults(handler=cmd_replace)


def positive_seconds(text: str) -> float:
    """A command-line number of seconds: finite and > 0 (argparse's type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    try:
        check_timeout(value)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a finite number of seconds > 0") from None
    return value


def _enum(args: argparse.Namespace, value: str | None) -> str | None:
    return Unlisted(value) if value is not None and args.unlisted else value


def _order_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The new order's keywords, checked whole before anything connects (ConfigurationError)."""
    order = {
        "instrument_id": args.instrument,
        "order_side": _enum(args, args.side),
        "order_type": _enum(args, args.order_type),
        "quantity": args.quantity,
        "limit_price": args.price,
        "stop_price": args.stop_price,
        "time_in_force": _enum(args, args.tif),
        "client_order_id": args.client_order_id,
        "trading_account_id": args.account,
    }
    try:
        check_order(**order)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(_as_flags(str(exc))) from None
    return {**order, "timeout": args.timeout}


# The order's fields as the command line names them.
_FLAGS = (
    ("instrument_id", "--instrument"),
    ("order_side", "--side"),
    ("order_type", "--type"),
    ("quantity", "--quantity"),
    ("limit_price", "--price"),
    ("stop_price", "--stop-price"),
    ("time_in_force", "--tif"),
    ("client_order_id", "--client-order-id"),
)


def _as_flags(message: str) -> str:
    for field, flag in _FLAGS:
        message = re.sub(rf"\b{field}\b", flag, message)
    return message.replace("goes as Unlisted(", "goes with --unlisted (")


def _raise_if_fatal(exc: CadenzaError) -> None:
    """Settings and refused tokens end the command (exit 2); other errors are its outcome."""
    if isinstance(exc, ConfigurationError) or auth_failure(exc) is not None:
        raise exc


def submit_json(result: SubmitResult) -> dict[str, Any]:
    return {
        "order_id": result.order_id,
        "client_order_id": result.client_order_id,
        "accepted": result.accepted,
        "status": result.status,
        "reject_reason": result.reject_reason,
        "source": result.source,
        "latency": round(result.latency, 6),
        "acked_after": None if result.acked_after is None else round(result.acked_after, 6),
        "order": msgspec.to_builtins(result.order),
    }


def error_json(exc: CadenzaError) -> dict[str, Any]:
    line: dict[str, Any] = {"error": type(exc).__name__, "message": str(exc)}
    client_id = getattr(exc, "client_order_id", None)
    if client_id is not None:
        line["client_order_id"] = client_id
    last = getattr(exc, "last_known", None)
    if last is not None:
        line["last_known"] = msgspec.to_builtins(last)
    return line


def _describe_submit(result: SubmitResult) -> str:
    verdict = "accepted" if result.accepted else "refused"
    text = (
        f"{clean_line(result.order_id)}  {clean_line(result.status)}  {verdict} "
        f"(proven by {result.source} after {ms(result.latency)}; "
        f"clientOrderId {clean_line(result.client_order_id)})"
    )
    if result.reject_reason:
        text += f": {clean_line(result.reject_reason)}"
    return text


async def cmd_submit(ctx: Context) -> int:
    """Place one order with proof; 0 accepted, 1 refused or failed."""
    args, out = ctx.args, ctx.out
    args.submit_via = args.via
    order = _order_kwargs(args)
    outcome: SubmitResult | CadenzaError
    async with ctx.session() as client:
        try:
            outcome = await client.submit_and_confirm(**order)
        except CadenzaError as exc:
            _raise_if_fatal(exc)
            outcome = exc
    if isinstance(outcome, CadenzaError):
        if out.json_mode:
            out.emit({"ok": False, **error_json(outcome)})
        else:
            out.error(f"submit failed: {explain(outcome, ctx.config)[0]}")
        return EXIT_FAILED
    if out.json_mode:
        out.emit({"ok": outcome.accepted, **submit_json(outcome)})
    else:
        out.say(_describe_submit(outcome))
    return EXIT_OK if outcome.accepted else EXIT_FAILED


def replace_json(result: ReplaceResult) -> dict[str, Any]:
    cancel = result.cancel
    return {
        "outcome": result.outcome,
        "replaced": result.replaced,
        "cancel": None
        if cancel is None
        else {
            "order_id": cancel.order_id,
            "status": cancel.status,
            "cancelled": cancel.cancelled,
            "source": cancel.source,
            "latency": round(cancel.latency, 6),
        },
        "cancel_error": None if result.cancel_error is None else error_json(result.cancel_error),
        "submit": None if result.submit is None else submit_json(result.submit),
    }


async def cmd_replace(ctx: Context) -> int:
    """Cancel ``ID`` until proven final, then place the new order; see the module docstring."""
    args, out = ctx.args, ctx.out
    args.submit_via = args.via
    order = _order_kwargs(args)  # the new order is checked whole before the old one is touched
    old_order_id = check_order_id(args.old_order_id)
    outcome: ReplaceResult | CadenzaError
    async with ctx.session() as client:
        try:
            outcome = await client.replace_and_confirm(
                old_order_id, place_if_filled=args.place_if_filled, **order
            )
        except CadenzaError as exc:
            _raise_if_fatal(exc)
            outcome = exc
    if isinstance(outcome, CadenzaError):
        # The old order is final; the new one was sent and not proven (or refused by the API).
        if out.json_mode:
            out.emit({"ok": False, "outcome": "submit_failed", **error_json(outcome)})
        else:
            out.error(f"the new order failed: {explain(outcome, ctx.config)[0]}")
        return EXIT_FAILED
    ok = outcome.replaced or outcome.outcome == "old_filled"
    if out.json_mode:
        out.emit({"ok": ok, **replace_json(outcome)})
        return EXIT_OK if ok else EXIT_FAILED
    old = clean_line(args.old_order_id)
    cancel = outcome.cancel
    if cancel is None:
        reason = explain(outcome.cancel_error, ctx.config)[0] if outcome.cancel_error else "?"
        out.error(f"{old}  not proven final: nothing placed ({reason})")
        return EXIT_FAILED
    out.say(
        f"{old}  {clean_line(cancel.status)}  (proven by {cancel.source} after "
        f"{ms(cancel.latency)})"
    )
    if outcome.outcome == "old_filled":
        out.say("nothing placed: the old order filled (--place-if-filled places anyway)")
    elif outcome.outcome == "no_time_left":
        out.error("nothing placed: the cancel used the deadline up")
    elif outcome.submit is not None:
        out.say(_describe_submit(outcome.submit))
    return EXIT_OK if ok else EXIT_FAILED
