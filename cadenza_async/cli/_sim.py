"""``cadenza-async sim``: serve the exchange simulator until Ctrl-C, on its own event loop."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import ipaddress
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._errors import EXIT_FAILED, EXIT_OK
from ._output import Output

if TYPE_CHECKING:
    from ..testing import CadenzaSimulator

__all__ = ["SHOWN_ORDER_IDS", "cmd_sim", "sim_warnings"]

SHOWN_ORDER_IDS = 5


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def sim_warnings(args: argparse.Namespace) -> list[str]:
    """What is unsafe about how the simulator is about to run."""
    warnings = []
    if not _is_loopback(args.host):
        warnings.append(
            f"--host {args.host} is not a loopback address: anyone who can reach this machine "
            "can use the simulator, and its token is printed here in clear; "
            "keep the default 127.0.0.1 unless you mean it"
        )
    if args.sim_token:
        warnings.append(
            "--token is visible to other users in the process list; "
            "without it the simulator makes up a random token and prints it"
        )
    return warnings


def cmd_sim(args: argparse.Namespace, out: Output) -> int:
    """Run the simulator until Ctrl-C (exit 0); exit 1 when it cannot listen.

    Its stdout is a shell script: the facts as ``#`` comments, then the
    ``export CADENZA_...`` line, so ``cadenza-async sim > sim.env`` and
    ``. sim.env`` in another shell point that shell at it.
    """
    from ..testing import serve

    for warning in sim_warnings(args):
        out.warn(warning)

    def say(line: str) -> None:
        print(f"# {line}", flush=True)

    def started(sim: CadenzaSimulator) -> None:
        ids = [order.trade_order_id for order in sim.orders[:SHOWN_ORDER_IDS]]
        if ids:
            more = len(sim.orders) - len(ids)
            say("order ids: " + " ".join(ids) + (f" (and {more} more)" if more else ""))
            say("list them all: cadenza-async orders")
        say("point the command line (or your code's from_env()) at it:")
        print(
            f"export CADENZA_API_URL={sim.api_url} CADENZA_WS_URL={sim.ws_url} "
            f"CADENZA_TOKEN={sim.token} CADENZA_TRADING_ACCOUNT_ID={sim.trading_account_id}",
            flush=True,
        )

    coro = serve(
        args.host,
        args.port,
        orders=args.orders,
        out=say,
        started=started,
        cancel_delay=args.cancel_delay,
        token=args.sim_token,
        trading_account_id=args.sim_account,
        ping_interval=args.ping_interval,
        history_size=args.history_size,
        event_shape=args.event_shape,
        market_rate=args.market_rate,
        market_seed=args.market_seed,
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
        hint = ""
        if exc.errno == errno.EADDRINUSE:
            hint = ": another program listens there; pass --port 0 to pick a free port"
        out.error(f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}{hint}")
        return EXIT_FAILED
    return EXIT_OK
