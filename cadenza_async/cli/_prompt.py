"""Asking the person at the terminal: a yes/no question on stderr, the answer from stdin."""

from __future__ import annotations

import asyncio
import sys

__all__ = ["ask", "confirmed", "stdin_is_terminal"]


def stdin_is_terminal() -> bool:
    """True when a person can answer (stdin is a terminal)."""
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


async def ask(question: str) -> str:
    """Print ``question`` on stderr and read one line from stdin (Ctrl-C cancels the wait)."""
    sys.stderr.write(question)
    sys.stderr.flush()
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not ready.done():
            ready.set_result(None)

    try:
        fd = sys.stdin.fileno()
        loop.add_reader(fd, readable)
    except (NotImplementedError, ValueError, OSError):  # no reader support: a plain read
        return sys.stdin.readline()
    try:
        await ready
    finally:
        loop.remove_reader(fd)
    return sys.stdin.readline()


async def confirmed(question: str) -> bool:
    """Ask ``question``; True for ``y`` or ``yes`` (any case), False for anything else."""
    return (await ask(question)).strip().lower() in ("y", "yes")
