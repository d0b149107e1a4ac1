"""The package's import graph: no cycle, and nothing inside the package imports its root.

Only imports that run when a module loads count (those at module level, not
under ``if TYPE_CHECKING:``, not inside a function). The package root
(``cadenza_async/__init__.py``) is the public surface that re-exports the
layers: a module importing it depends on every layer at once.
"""

from __future__ import annotations

import ast
import pathlib

import cadenza_async

PACKAGE = pathlib.Path(cadenza_async.__file__).parent
ROOT_NAME = "cadenza_async"


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _load_time_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        found += [n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))]
    return found


def imported_by(name: str) -> set[str]:
    """The package's modules that module ``name`` imports as it loads."""
    path = MODULES[name]
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    targets: set[str] = set()
    for node in _load_time_imports(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
            continue
        if node.level:
            base = package[: len(package) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        for alias in node.names:  # `from pkg import module` imports the module
            submodule = f"{source}.{alias.name}"
            targets.add(submodule if submodule in MODULES else source)
    return {t for t in targets if t in MODULES and t != name}


GRAPH = {name: imported_by(name) for name in MODULES}


def test_the_graph_sees_the_package() -> None:
    assert "cadenza_async.protocol.confirm" in GRAPH["cadenza_async.cancels"]
    assert "cadenza_async.cli._commands" in GRAPH["cadenza_async.cli._main"]


def test_no_import_cycle() -> None:
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycle = [*path[path.index(name) :], name]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        for target in sorted(GRAPH[name]):
            visit(target, [*path, name])
        done.add(name)

    for name in sorted(GRAPH):
        visit(name, [])


def test_no_module_of_the_package_imports_its_root() -> None:
    upward = sorted(name for name, targets in GRAPH.items() if ROOT_NAME in targets)
    assert upward == [], f"import the module itself (e.g. ._version), not the package: {upward}"
