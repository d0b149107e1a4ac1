"""The entry point: parse the arguments, pick the output, run the command, map errors to exit codes."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from ..errors import CadenzaError, ConfigurationError
from ._commands import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    cmd_cancel,
    cmd_cancel_all,
    cmd_cancel_many,
    cmd_sim,
    cmd_watch,
)
from ._demo import cmd_demo
from ._outcomes import error_text
from ._output import Output

__all__ = ["main", "run"]


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
    demo.set_defaults(handler=cmd_demo, json=False)

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
    cancel.set_defaults(handler=cmd_cancel)

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
    many.set_defaults(handler=cmd_cancel_many)

    cancel_all = commands.add_parser(
        "cancel-all",
        parents=[connection, output],
        help="cancel every open order of an account",
        description="List the account's open orders and cancel them all, confirmed.",
        epilog=_EPILOG,
    )
    cancel_all.add_argument("--instrument", help="only orders on this instrument")
    cancel_all.set_defaults(handler=cmd_cancel_all)

    watch = commands.add_parser(
        "watch",
        parents=[connection, output],
        help="print order updates as they arrive",
        description="Print the account's order updates until Ctrl-C (or --count updates).",
        epilog=_EPILOG,
    )
    watch.add_argument("--count", type=_positive_int, help="stop after N updates")
    watch.set_defaults(handler=cmd_watch)
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


def _output(args: argparse.Namespace) -> Output:
    out = Output(json_mode=bool(args.json), plain=bool(args.plain))
    token = getattr(args, "token", None)
    out.secrets = [s for s in (token, os.environ.get("CADENZA_TOKEN")) if s]
    return out


async def _dispatch(args: argparse.Namespace, out: Output) -> int:
    try:
        code: int = await args.handler(args, out)
    except ConfigurationError as exc:
        out.error(str(exc))
        return EXIT_USAGE
    except CadenzaError as exc:
        out.error(error_text(exc))
        return EXIT_FAILED
    except Exception as exc:  # no traceback for users; the one line names what happened
        out.error(f"unexpected {error_text(exc)}")
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
        return cmd_sim(args, out)
    try:
        return asyncio.run(_dispatch(args, out))
    except KeyboardInterrupt:
        if args.command == "watch":
            return EXIT_OK
        out.error("interrupted")
        return EXIT_INTERRUPTED
