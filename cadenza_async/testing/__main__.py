"""``python -m cadenza_async.testing``: run the exchange simulator until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence

from ._serve import serve


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cadenza_async.testing",
        description="Run a local Cadenza exchange simulator (REST + Centrifugo WebSocket).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument(
        "--cancel-delay", type=float, default=0.0, help="exchange delay of a cancel (s)"
    )
    parser.add_argument(
        "--accept-delay",
        type=float,
        default=0.0,
        help="exchange delay of a submit's acceptance (s): SUBMITTED until then",
    )
    parser.add_argument("--orders", type=int, default=0, help="open orders to create at start")
    parser.add_argument("--token", default=None, help="the default token (default: random)")
    parser.add_argument("--account", default=None, help="the default trading account id")
    parser.add_argument("--ping-interval", type=float, default=25.0)
    parser.add_argument("--pong-timeout", type=float, default=8.0)
    parser.add_argument("--history-size", type=int, default=300)
    parser.add_argument(
        "--wire",
        choices=("current", "legacy"),
        default="current",
        help="the API generation spoken (current: the official models; legacy: int ms times)",
    )
    parser.add_argument(
        "--event-shape",
        choices=("order", "status_change"),
        default="order",
        help="status_change: the legacy status-change event (with --wire legacy)",
    )
    parser.add_argument(
        "--market-rate", type=float, default=0.0, help="book updates per second (0: still)"
    )
    parser.add_argument("--market-seed", type=int, default=0, help="seed of the market's books")
    parser.add_argument("--no-uvloop", action="store_true", help="use the default asyncio loop")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and serve until interrupted; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.event_shape == "status_change" and args.wire != "legacy":
        parser.error("--event-shape status_change is a legacy event: add --wire legacy")
    coro = serve(
        args.host,
        args.port,
        orders=args.orders,
        out=lambda line: print(line, flush=True),
        cancel_delay=args.cancel_delay,
        accept_delay=args.accept_delay,
        token=args.token,
        trading_account_id=args.account,
        ping_interval=args.ping_interval,
        pong_timeout=args.pong_timeout,
        history_size=args.history_size,
        event_shape=args.event_shape,
        wire=args.wire,
        market_rate=args.market_rate,
        market_seed=args.market_seed,
    )
    runner: object = asyncio.run
    if not args.no_uvloop:
        with contextlib.suppress(ImportError):
            import uvloop

            runner = uvloop.run
    try:
        runner(coro)  # type: ignore[operator]
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
