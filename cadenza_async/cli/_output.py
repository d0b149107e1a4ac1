"""Where the command line writes: rich or plain text for people, JSON lines for scripts."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

__all__ = ["Output", "ProgressBar"]

json_line = msgspec.json.Encoder().encode


class Output:
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
        sys.stdout.write(self.redact(json_line(obj).decode()) + "\n")
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

    def progress(self, total: int, label: str) -> ProgressBar:
        return ProgressBar(self, total, label)


class ProgressBar:
    """A live progress bar (rich) or a carriage-return counter on a terminal (plain)."""

    def __init__(self, out: Output, total: int, label: str) -> None:
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

    def __enter__(self) -> ProgressBar:
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
