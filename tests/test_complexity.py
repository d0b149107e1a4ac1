"""Cyclomatic complexity (radon): no function of the package above 15, but the hot paths.

The hot paths (the two of the protocol cores, and the decoded order's time fields) are
inlined on purpose and say so
in a comment ("hot path"). Every other function over the limit fails the
suite: split it.
"""

from __future__ import annotations

import pathlib

import pytest
from radon.complexity import cc_visit
from radon.visitors import Function

import cadenza_async

LIMIT = 15
PACKAGE = pathlib.Path(cadenza_async.__file__).parent
ROOT = PACKAGE.parent

HOT_PATHS = frozenset(
    {
        "cadenza_async/protocol/centrifugo.py:CentrifugoProtocol.receive_frame",
        "cadenza_async/protocol/confirm.py:ConfirmationRegistry.observe",
        "cadenza_async/models.py:TradeOrder.__post_init__",
    }
)


def complexities() -> dict[str, tuple[int, Function, str]]:
    """``path:qualified name`` -> (complexity, radon's block, the module source)."""
    found: dict[str, tuple[int, Function, str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        for block in cc_visit(source):
            if isinstance(block, Function):
                key = f"{path.relative_to(ROOT).as_posix()}:{block.fullname}"
                found[key] = (block.complexity, block, source)
    return found


FOUND = complexities()


def test_no_function_is_over_the_limit_unless_it_is_a_hot_path():
    over = {name: cc for name, (cc, _, _) in FOUND.items() if cc > LIMIT and name not in HOT_PATHS}
    assert not over, f"over CC {LIMIT}; split them: {over}"


@pytest.mark.parametrize("name", sorted(HOT_PATHS))
def test_each_hot_path_exists_and_says_why_it_is_inlined(name):
    assert name in FOUND, f"{name} is gone: update HOT_PATHS"
    _, block, source = FOUND[name]
    body = "\n".join(source.splitlines()[block.lineno - 1 : block.endline])
    assert "hot path" in body.lower()
