"""Where the command line writes: rich or plain text for people, JSON lines for scripts.

Everything printed passes through here, and three rules hold on the way out:

* **No terminal control from a server.** Text can carry escape sequences
  (``ESC ]0;...`` retitles the window, ``ESC [2J`` clears the screen) and
  other control characters; :func:`clean_line` and :func:`clean_text` remove
  them before anything reaches a terminal. JSON lines keep the data intact:
  the encoder escapes C0 controls, and :meth:`Output.emit` escapes C1, DEL
  and bidirectional overrides too, so a terminal showing the JSON sees none.
* **No secrets.** The token (flag or ``CADENZA_TOKEN``), fragments of it,
  and anything shaped like a credential are replaced by ``***``
  (:meth:`Output.redact`, the SDK's one redaction module).
* **A closed stdout ends quietly.** When the reader goes away (``| head``),
  output stops without a traceback, ``stdout_closed`` is set, and the command
  exits 141 (128 + SIGPIPE), as a process killed by SIGPIPE would.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

import msgspec

from .._redact import redact

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

__all__ = [
    "EXIT_BROKEN_PIPE",
    "LogHandler",
    "Output",
    "ProgressBar",
    "clean_line",
    "clean_text",
    "detach_stdout",
]

_json_line = msgspec.json.Encoder().encode

# Escape sequences as terminals parse them: CSI (ESC [ or C1 0x9b), OSC/DCS/PM/APC/SOS
# strings up to BEL or ST (or the end of the text, unterminated), and two-byte escapes.
_ESCAPES = re.compile(
    r"""
      (?:\x1b\[|\x9b) [0-?]* [ -/]* [@-~]?
    | (?:\x1b[\]P^_X]|[\x9d\x90\x9e\x9f\x98]) .*? (?:\x07|\x1b\\|\x9c|$)
    | \x1b [ -/]* [0-~]?
    """,
    re.VERBOSE | re.DOTALL,
)
# What is left: C0 controls, DEL, C1 controls, and the Unicode bidirectional
# overrides that make text display in another order than it reads.
_BIDI = "\u200e\u200f\u202a-\u202e\u2066-\u2069"
_CONTROLS_LINE = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}]")
_CONTROLS_TEXT = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]")
_SPACING = re.compile(r"[\t\n\r\v\f]")
# Characters JSON leaves raw but a terminal may act on; escaped as \\uXXXX (still valid JSON).
_JSON_UNSAFE = re.compile(f"[\x7f-\x9f\u2028\u2029{_BIDI}]")

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a writer killed by SIGPIPE


def clean_line(text: str) -> str:
    """``text`` as one printable line: escape sequences and controls removed, whitespace kept as spaces."""
    text = _ESCAPES.sub("", text)
    text = _SPACING.sub(" ", text)
    return _CONTROLS_LINE.sub("", text)


def clean_text(text: str) -> str:
    """Like :func:`clean_line`, but newlines and tabs stay (carriage returns go: they overwrite)."""
    text = _ESCAPES.sub("", text)
    return _CONTROLS_TEXT.sub("", text)


def detach_stdout() -> None:
    """Point stdout at the null device, so the interpreter's final flush into a closed pipe is quiet."""
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


class Output:
    """Where the command writes: rich on a terminal, plain text otherwise, or JSON lines.

    Human text goes to stdout, progress and warnings to stderr; in JSON mode
    stdout carries only JSON objects. rich (the ``cli`` extra) is used only
    for a stream that is a terminal: into a file or a pipe every line is
    plain, unwrapped and uncoloured, whatever is installed.
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
                if _isatty(sys.stdout):
                    self.console = Console(highlight=False)
                if _isatty(sys.stderr):
                    self.err_console = Console(stderr=True, highlight=False)
        self.secrets: list[str] = []
        self.stdout_closed = False
        self.interrupt_reported = False

    def redact(self, text: str) -> str:
        """``text`` with the known secrets (and fragments of them) and credentials masked."""
        return redact(text, self.secrets)

    # -- stdout ------------------------------------------------------------------------

    def _stdout_gone(self) -> None:
        """The reader of stdout left: stop writing."""
        self.stdout_closed = True
        detach_stdout()

    def _write(self, text: str) -> None:
        if self.stdout_closed:
            return
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:
            self._stdout_gone()

    def _rich(self, console: Console, renderable: Any, **options: Any) -> None:
        if self.stdout_closed and console is self.console:
            return
        try:
            console.print(renderable, markup=False, highlight=False, **options)
        except BrokenPipeError:
            if console is self.console:
                self._stdout_gone()

    def say(self, text: str = "", style: str | None = None) -> None:
        """A line for people (suppressed in JSON mode)."""
        if self.json_mode:
            return
        text = self.redact(clean_text(text))
        if self.console is not None:
            self._rich(self.console, text, style=style)
        else:
            self._write(text + "\n")

    def line(self, text: str) -> None:
        """One plain line of data on stdout, in every mode (e.g. ids for another command)."""
        self._write(self.redact(clean_line(text)) + "\n")

    def emit(self, obj: Any) -> None:
        """One JSON object on one line of stdout."""
        line = _JSON_UNSAFE.sub(_json_escape, _json_line(obj).decode())
        self._write(self.redact(line) + "\n")

    # -- stderr ------------------------------------------------------------------------

    def _stderr(self, text: str, style: str) -> None:
        if self.err_console is not None:
            self._rich(self.err_console, text, style=style, soft_wrap=True)  # one line stays one
            return
        with contextlib.suppress(BrokenPipeError):
            print(text, file=sys.stderr, flush=True)

    def note(self, text: str) -> None:
        """A remark on stderr (both modes)."""
        self._stderr(self.redact(clean_line(text)), "dim")

    def warn(self, text: str) -> None:
        """A warning on stderr (both modes)."""
        self._stderr("warning: " + self.redact(clean_line(text)), "yellow")

    def error(self, text: str) -> None:
        """The one-line error message on stderr."""
        self._stderr("error: " + self.redact(clean_line(text)), "bold red")

    # -- tables and progress -----------------------------------------------------------

    def table(
        self,
        title: str,
        columns: Sequence[str],
        rows: Iterable[Sequence[str]],
        *,
        whole: Sequence[int] = (0,),
    ) -> None:
        """A table on stdout (not in JSON mode); the ``whole`` columns (ids) are never shortened."""
        if self.json_mode:
            return
        cells = [[self.redact(clean_line(str(cell))) for cell in row] for row in rows]
        if self.console is not None:
            self._rich(self.console, _rich_table(title, columns, cells, whole))
        else:
            self._write(_plain_table(title, columns, cells))

    def progress(self, total: int, label: str) -> ProgressBar:
        return ProgressBar(self, total, label)


def _rich_table(
    title: str, columns: Sequence[str], cells: list[list[str]], whole: Sequence[int]
) -> Table:
    """A rich table of cleaned ``cells``; the ``whole`` columns are as wide as their widest cell."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left", show_lines=False)
    for i, name in enumerate(columns):
        if i in whole:
            widest = max([len(name)] + [len(row[i]) for row in cells])
            table.add_column(name, no_wrap=True, min_width=widest)
        else:
            table.add_column(name)
    for row in cells:
        table.add_row(*(Text(cell) for cell in row))
    return table


def _plain_table(title: str, columns: Sequence[str], cells: list[list[str]]) -> str:
    """The title, a header, a rule and one line per row, columns padded to their widest cell."""
    widths = [len(name) for name in columns]
    for row in cells:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [
        title,
        "  ".join(name.ljust(w) for name, w in zip(columns, widths, strict=True)).rstrip(),
        "  ".join("-" * w for w in widths),
    ]
    for row in cells:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines) + "\n"


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
        self._plain_live = not out.json_mode and out.err_console is None and _isatty(sys.stderr)

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
            with contextlib.suppress(BrokenPipeError):
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
            with contextlib.suppress(BrokenPipeError):
                sys.stderr.write("\n")
                sys.stderr.flush()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class LogHandler(logging.Handler):
    """Shows the SDK's log records on stderr, cleaned and redacted like every other line."""

    def __init__(self, out: Output, level: int) -> None:
        super().__init__(level)
        self._out = out

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
            self._out.note(
                f"{stamp}.{int(record.msecs):03d} {record.levelname} {record.name}: "
                f"{record.getMessage()}"
            )
        except Exception:
            self.handleError(record)
