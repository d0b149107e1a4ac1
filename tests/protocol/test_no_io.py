"""Every module of ``cadenza_async.protocol`` is sans-I/O: it imports no I/O library and no clock."""

from __future__ import annotations

import ast
import pathlib

import pytest

import cadenza_async.protocol

PROTOCOL = pathlib.Path(cadenza_async.protocol.__file__).parent
IO = {"asyncio", "aiohttp", "websockets", "anyio", "trio", "socket", "time", "selectors"}


def imported_roots(path: pathlib.Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted(PROTOCOL.glob("*.py")), ids=lambda p: p.name)
def test_protocol_module_imports_no_io_library(path: pathlib.Path) -> None:
    assert not imported_roots(path) & IO
