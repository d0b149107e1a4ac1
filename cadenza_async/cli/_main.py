"""The entry point: parse the arguments, pick the output, run the command, map failures to exit codes."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence

from .._version import __version__
from ..errors import CadenzaError
from ._account import add_account_parsers
from ._commands import cmd_cancel, cmd_cancel_all, cmd_cancel_many, cmd_orders, cmd_watch
from ._demo import cmd_demo
from ._doctor import add_doctor_parser
from ._errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, explain
from ._market import add_market_parsers
from ._outcomes import error_text
from ._output import EXIT_BROKEN_PIPE, LogHandler, Output, detach_stdout
from ._placing import add_placing_parsers, positive_seconds
from ._session import Context
from ._sim import cmd_sim

__all__ = ["main", "run"]

_EPILOG = (
    "Endpoints and credentials come from CADENZA_API_URL, CADENZA_WS_URL, CADENZA_TOKEN and "
    "CADENZA_TRADING_ACCOUNT_ID (flags win). Exit status: 0 every order reached a final state, "
    "1 a cancel failed, 2 usage, bad input (an id, a number), configuration error or a refused "
    "token, 130 interrupted, 141 stdout closed by its reader (`| head`)."
)


_QUIET = logging.CRITICAL + 1  # above every level: the handler shows nothing


def _parser() -> argparse.ArgumentParser:
    verbosity = argparse.ArgumentParser(add_help=False)
    verbosity.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="show the SDK's log on stderr (-v info, -vv debug)",
    )

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
        "--allow-insecure",
        action="store_true",
        help="allow http:// and ws:// to non-loopback hosts",
    )
    via = argparse.ArgumentParser(add_help=False)
    via.add_argument(
        "--via",
        choices=("http", "ws"),
        help="send cancels over HTTP (default) or as a WebSocket RPC (needs --account: "
        "an order whose account is not given is cancelled over HTTP)",
    )
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="one JSON object per line")
    output.add_argument("--plain", action="store_true", help="plain text: no colours, no bars")
    bulk = argparse.ArgumentParser(add_help=False)
    bulk.add_argument(
        "--concurrency", type=_positive_int, default=64, help="cancels in flight (default 64)"
    )
    bulk.add_argument(
        "--timeout", type=positive_seconds, help="per-order confirmation deadline (s)"
    )
    common = [verbosity, connection, output]

    parser = argparse.ArgumentParser(
        prog="cadenza-async",
        description="Cancel Cadenza orders and know the exchange processed them.",
        epilog=_EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"cadenza-async {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="show the SDK's log on stderr (-v info, -vv debug)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        parents=[verbosity],
        help="run the offline demo against the embedded simulator",
        description="A tour against an in-process exchange simulator: no network, no token.",
    )
    demo.add_argument("--plain", action="store_true", help="plain text: no colours, no bars")
    demo.add_argument("--bulk", type=_positive_int, default=1000, help="orders in the bulk step")
    demo.add_argument("--burst", type=_positive_int, default=200, help="fire-and-forget cancels")
    demo.set_defaults(handler=cmd_demo, json=False)

    sim = commands.add_parser(
        "sim",
        parents=[verbosity],
        help="run the exchange simulator until Ctrl-C",
        description="Serve the Cadenza exchange simulator (REST + Centrifugo WebSocket).",
    )
    sim.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; anything else warns: "
        "the simulator accepts its token from anyone who can reach it)",
    )
    sim.add_argument(
        "--port", type=int, default=8080, help="port to listen on (default 8080; 0 picks one)"
    )
    sim.add_argument("--cancel-delay", type=float, default=0.0, help="exchange delay (s)")
    sim.add_argument("--orders", type=int, default=0, help="open orders to create at start")
    sim.add_argument(
        "--token",
        dest="sim_token",
        help="the simulator's token (default: random); visible in the process list",
    )
    sim.add_argument("--account", dest="sim_account", help="the simulator's account id")
    sim.add_argument(
        "--ping-interval",
        type=float,
        default=25.0,
        help="seconds between the WebSocket pings the server sends (default 25)",
    )
    sim.add_argument(
        "--history-size",
        type=int,
        default=300,
        help="publications kept per channel for recovery after a reconnect (default 300)",
    )
    sim.add_argument(
        "--event-shape",
        choices=("order", "status_change"),
        default="order",
        help="publish whole orders (default) or status-change events",
    )
    sim.add_argument(
        "--market-rate",
        type=float,
        default=2.0,
        help="updates per second of each simulated order book (0: still; default 2)",
    )
    sim.add_argument("--market-seed", type=int, default=0, help="seed of the simulated books")
    sim.add_argument("--no-uvloop", action="store_true", help="use the default asyncio loop")
    sim.set_defaults(handler=None, json=False, plain=True)

    cancel = commands.add_parser(
        "cancel",
        parents=[*common, via],
        help="cancel one order and wait for the exchange's proof",
        description="Cancel one order and wait until the exchange processed it; with "
        "--no-confirm, print the server's reply to the cancel instead. An order already "
        "final is an outcome (exit 0), not an error.",
        epilog=_EPILOG,
    )
    cancel.add_argument("order_id", metavar="ID")
    confirm = cancel.add_mutually_exclusive_group()
    confirm.add_argument(
        "--no-confirm", action="store_true", help="stop at the HTTP reply; do not confirm"
    )
    confirm.add_argument("--confirm", action="store_true", help="confirm (the default)")
    cancel.add_argument("--timeout", type=positive_seconds, help="confirmation deadline (s)")
    cancel.set_defaults(handler=cmd_cancel)

    many = commands.add_parser(
        "cancel-many",
        parents=[*common, via, bulk],
        help="cancel many orders (ids as arguments, from a file, or stdin)",
        description="Cancel the orders given as arguments, in FILE (one per line, '#' "
        "comments), or on stdin ('-'), each confirmed.",
        epilog=_EPILOG,
    )
    many.add_argument("ids", nargs="*", metavar="ID", help="order ids; '-' reads stdin")
    many.add_argument(
        "--file",
        action="append",
        default=[],
        metavar="FILE",
        help="read ids from FILE, one per line ('-' for stdin); may be repeated",
    )
    many.add_argument(
        "--no-confirm", action="store_true", help="stop at the HTTP reply; do not confirm"
    )
    many.set_defaults(handler=cmd_cancel_many)

    cancel_all = commands.add_parser(
        "cancel-all",
        parents=[*common, via, bulk],
        help="cancel every open order of an account",
        description="List the account's open orders, ask on the terminal, and cancel them all, "
        "confirmed. Without a terminal, --yes is needed.",
        epilog=_EPILOG,
    )
    cancel_all.add_argument("--instrument", help="only orders on this instrument")
    cancel_all.add_argument("--yes", action="store_true", help="cancel without asking")
    cancel_all.set_defaults(handler=cmd_cancel_all)

    orders = commands.add_parser(
        "orders",
        parents=common,
        help="list the open orders of an account",
        description="Print the account's open (not final) orders: a table, --json lines, or "
        "--ids (one id per line: `cadenza-async orders --ids | cadenza-async cancel-many -`).",
        epilog=_EPILOG,
    )
    orders.add_argument("--instrument", help="only orders on this instrument")
    orders.add_argument("--ids", action="store_true", help="print the order ids only, one a line")
    orders.set_defaults(handler=cmd_orders)

    watch = commands.add_parser(
        "watch",
        parents=common,
        help="print order updates as they arrive",
        description="Print the account's order updates until Ctrl-C (exit 130) or --count updates.",
        epilog=_EPILOG,
    )
    watch.add_argument("--count", type=_positive_int, help="stop after N updates")
    watch.set_defaults(handler=cmd_watch)

    add_placing_parsers(commands, common, _EPILOG)
    add_market_parsers(commands, common, _EPILOG)
    add_account_parsers(commands, common, _EPILOG)
    add_doctor_parser(commands, parents=common)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _parse(argv: Sequence[str] | None) -> argparse.Namespace | int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse already printed
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


@contextlib.contextmanager
def _sdk_log(out: Output, verbose: int) -> Iterator[None]:
    """The SDK's log records on stderr, through ``out`` (cleaned, redacted) while a command runs.

    None by default (the command reports its own failures in one line);
    ``-v`` shows info and above, ``-vv`` debug. Only the ``cadenza_async``
    loggers: the libraries below log frames and headers, token included.
    """
    level = _QUIET if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logger = logging.getLogger("cadenza_async")
    handler = LogHandler(out, level)
    previous = logger.level
    if verbose > 0:
        logger.setLevel(level)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


async def _dispatch(ctx: Context) -> int:
    out = ctx.out
    try:
        code: int = await ctx.args.handler(ctx)
    except CadenzaError as exc:
        message, code = explain(exc, ctx.config)
        out.error(message)
    except Exception as exc:  # no traceback for users; the one line names what happened
        out.error(f"unexpected {error_text(exc)}")
        code = EXIT_FAILED
    return EXIT_BROKEN_PIPE if out.stdout_closed else code


async def run(argv: Sequence[str] | None = None) -> int:
    """The command inside a running event loop (``sim`` excepted); returns the exit status.

    Cancelling it (Ctrl-C) cancels the command: ``cancel-many`` and
    ``cancel-all`` print the summary of what finished first.
    """
    args = _parse(argv)
    if isinstance(args, int):
        return args
    if args.handler is None:
        raise RuntimeError("`sim` runs its own event loop: call main()")
    out = _output(args)
    with _sdk_log(out, getattr(args, "verbose", 0)):
        return await _dispatch(Context(args, out))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cadenza-async`` console script; returns the exit status."""
    try:
        return _main(argv)
    except BrokenPipeError:  # --help or --version into a closed pipe
        detach_stdout()
        return EXIT_BROKEN_PIPE


def _main(argv: Sequence[str] | None) -> int:
    args = _parse(argv)
    if isinstance(args, int):
        return args
    out = _output(args)
    with _sdk_log(out, getattr(args, "verbose", 0)):
        if args.handler is None:
            return cmd_sim(args, out)
        try:
            return asyncio.run(_dispatch(Context(args, out)))
        except KeyboardInterrupt:
            if args.command != "watch" and not out.interrupt_reported:
                out.error("interrupted")
            return EXIT_INTERRUPTED
