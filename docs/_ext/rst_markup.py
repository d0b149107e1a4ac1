"""Griffe extension: the package's reST docstring markup, rewritten as Markdown for mkdocstrings.

The docstrings are written for readers of the source and for ``help()``:
Sphinx roles (``:class:`~cadenza_async.errors.OrderNotFoundError```), literal
blocks introduced by ``::`` and reST simple tables. mkdocstrings renders
Markdown, so each docstring is rewritten once, when Griffe loads it:

- a role becomes a code span naming the object (``~`` keeps the last part);
- a ``::`` paragraph ending becomes ``:`` and its indented block a fenced code block;
- a simple table (``====  ====`` borders) becomes a Markdown table.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|data|mod|exc|obj|const):`(~?)([^`]+)`")
_BORDER = re.compile(r"^=+(?: +=+)+$")
_PYTHON = re.compile(r"^\s*(?:from |import |async |await |def |class |@|with |\w+ = )", re.M)


def _role(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    target = target.strip()
    if target.startswith("~"):
        tilde, target = "~", target[1:]
    name = target.rsplit(".", 1)[-1] if tilde else target
    return f"`{name}`"


def _literal_blocks(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.rstrip().endswith("::"):
            out.append(line)
            i += 1
            continue
        intro = line.rstrip()[:-2].rstrip()
        if intro:
            out.append(intro + ":")
        i += 1
        while i < len(lines) and not lines[i].strip():
            i += 1
        block: list[str] = []
        indent = len(line) - len(line.lstrip())
        while i < len(lines) and (
            not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent
        ):
            block.append(lines[i])
            i += 1
        while block and not block[-1].strip():
            block.pop()
        code = textwrap.dedent("\n".join(block)).replace("``", "")  # inline markup, not code
        out += ["", "```python" if _PYTHON.search(code) else "```text"]
        out += code.splitlines()
        out += ["```", ""]
    return out


def _columns(border: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(r"=+", border)]


def _cells(row: str, spans: list[tuple[int, int]]) -> list[str]:
    cells = []
    for n, (start, _end) in enumerate(spans):
        stop = spans[n + 1][0] if n + 1 < len(spans) else len(row)
        cells.append(row[start:stop].strip())
    return cells


def _tables(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        if not _BORDER.match(lines[i].strip()):
            out.append(lines[i])
            i += 1
            continue
        indent = len(lines[i]) - len(lines[i].lstrip())
        spans = _columns(lines[i][indent:])
        # header rows up to the second border, body rows up to the third
        j = i + 1
        header: list[list[str]] = []
        while j < len(lines) and not _BORDER.match(lines[j].strip()):
            header.append(_cells(lines[j][indent:], spans))
            j += 1
        j += 1
        rows: list[list[str]] = []
        while j < len(lines) and not _BORDER.match(lines[j].strip()):
            text = lines[j][indent:]
            cells = _cells(text, spans)
            if rows and not cells[0]:  # a continuation line of the row above
                rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=True)]
            elif text.strip():
                rows.append(cells)
            j += 1
        head = (
            [" ".join(col).strip() for col in zip(*header, strict=True)]
            if header
            else [""] * len(spans)
        )
        out += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(spans)]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        out.append("")
        i = j + 1
    return out


def rst_to_markdown(text: str) -> str:
    """The docstring with its reST markup rewritten as Markdown."""
    text = _ROLE.sub(_role, text)
    lines = _tables(text.splitlines())
    lines = _literal_blocks(lines)
    return "\n".join(lines)


class RstMarkup(griffe.Extension):
    """Rewrites every docstring's reST markup as Markdown when the object is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        docstring = obj.docstring
        if docstring is not None:
            docstring.value = rst_to_markdown(docstring.value)
