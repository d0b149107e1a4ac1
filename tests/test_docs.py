"""The docs site stays true to the package: its pages exist, its logger and endpoint tables hold.

The site itself is built by ``make docs`` (``mkdocs build --strict``); these
checks need no docs dependencies and run with the unit tests.
"""

from __future__ import annotations

import ast
import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import cadenza_async
from cadenza_async.config import DEFAULT_API_URL, DEFAULT_WS_URL
from cadenza_async.testing import CadenzaSimulator

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PACKAGE = ROOT / "cadenza_async"

PRODUCTION_API = "https://cadenza-api.algo724.com"
PRODUCTION_WS = "wss://cadenza-ws.algo724.com/connection/websocket"

DOCUMENTED = {
    "reference/client.md": ["CadenzaClient", "CancelHandle", "ClientStats", "cancel_and_confirm"],
    "reference/blocking.md": ["BlockingCadenzaClient", "BlockingCancelHandle"],
    "reference/models.md": ["CancelResult", "TradeOrder", "OrderStatus", "is_terminal"],
    "reference/config.md": ["ClientConfig", "Timeouts", "RetryPolicy"],
}


def nav_pages() -> list[str]:
    text = (ROOT / "mkdocs.yml").read_text()
    nav = text[text.index("\nnav:") : text.index("\nplugins:")]
    return re.findall(r"([\w/.-]+\.md)\s*$", nav, flags=re.M)


def test_every_page_in_the_nav_exists_and_every_page_is_in_the_nav() -> None:
    pages = nav_pages()
    assert len(pages) == len(set(pages))
    for page in pages:
        assert (DOCS / page).is_file(), page
    on_disk = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert on_disk == set(pages)


def test_the_reference_pages_document_the_public_classes() -> None:
    for page, names in DOCUMENTED.items():
        text = (DOCS / page).read_text()
        for name in names:
            assert f"::: cadenza_async.{name}\n" in text, (page, name)
            assert name in cadenza_async.__all__
    assert "::: cadenza_async.errors" in (DOCS / "reference/errors.md").read_text()
    assert (
        "::: cadenza_async.testing.CadenzaSimulator" in (DOCS / "reference/testing.md").read_text()
    )


def test_the_orders_guide_documents_the_rest_calls() -> None:
    text = (DOCS / "guides/orders.md").read_text()
    for call in ("submit_order", "get_order", "list_orders", "subscribe_account"):
        assert f"`{call}`" in text, call
        assert hasattr(cadenza_async.CadenzaClient, call)
        assert hasattr(cadenza_async.BlockingCadenzaClient, call)


def package_loggers() -> set[str]:
    """Every logger name the package asks for (``getLogger("...")`` or ``getLogger(__name__)``)."""
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "getLogger"):
                continue
            if not node.args:
                continue
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.add(arg.value)
            elif isinstance(arg, ast.Name) and arg.id == "__name__":
                names.add(module.removesuffix(".__init__"))
    return {n for n in names if n.startswith("cadenza_async.")}


def test_the_logging_guide_names_every_logger_of_the_package() -> None:
    text = (DOCS / "guides/logging.md").read_text()
    documented = set(re.findall(r"^\| `(cadenza_async\.[\w.]+)` \|", text, flags=re.M))
    assert package_loggers() <= documented
    assert documented  # the table is there


def test_the_endpoints_page_names_uat_and_production() -> None:
    text = (DOCS / "guides/endpoints.md").read_text()
    for url in (DEFAULT_API_URL, DEFAULT_WS_URL, PRODUCTION_API, PRODUCTION_WS):
        assert f"`{url}`" in text, url
    assert "cadenza-api-uat" in DEFAULT_API_URL  # the default is UAT, as the page says


def test_the_changelog_page_includes_the_changelog() -> None:
    assert (DOCS / "changelog.md").read_text().strip() == '--8<-- "CHANGELOG.md"'


# ---- the README: short, and every code block runs as copied ----------------------------------

README = ROOT / "README.md"
#: The README is for a person deciding to adopt; the rest lives on the docs site.
README_MAX_LINES = 250


def readme_python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.M | re.S)


def test_the_readme_is_short() -> None:
    assert len(README.read_text().splitlines()) <= README_MAX_LINES


def test_the_readme_links_only_to_pages_that_exist() -> None:
    for target in re.findall(r"\]\(([^)#]+)\)", README.read_text()):
        if "://" not in target:
            assert (ROOT / target).exists(), target


def test_the_readme_says_how_to_install_and_never_from_a_package_index() -> None:
    text = README.read_text()
    assert "pip install cadenza-async" not in text
    assert ".venv/bin" in text
    for page in ("docs/quickstart.md", "docs/index.md"):
        assert "pip install cadenza-async" not in (ROOT / page).read_text()


def test_the_docs_home_lists_every_guide() -> None:
    home = (DOCS / "index.md").read_text()
    for guide in sorted((DOCS / "guides").glob("*.md")):
        assert f"(guides/{guide.name})" in home, guide.name


def test_every_readme_python_block_runs_as_copied(tmp_path: Path) -> None:
    """Each block in a fresh interpreter; ``from_env`` blocks against a simulator holding their order."""
    blocks = readme_python_blocks()
    assert len(blocks) >= 3
    order_ids = set(re.findall(r'"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"',
                               "".join(blocks)))  # fmt: skip

    async def run_all() -> list[subprocess.CompletedProcess[str]]:
        async with CadenzaSimulator() as sim:
            for order_id in order_ids:
                sim.create_order(trade_order_id=order_id)
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("CADENZA_")},
                "CADENZA_TOKEN": sim.token,
                "CADENZA_API_URL": sim.api_url,
                "CADENZA_WS_URL": sim.ws_url,
                "CADENZA_TRADING_ACCOUNT_ID": sim.trading_account_id,
            }
            done = []
            for number, block in enumerate(blocks):
                script = tmp_path / f"block_{number}.py"
                script.write_text(block)
                done.append(await asyncio.to_thread(_run, script, env))
                for order_id in order_ids:  # each block finds its order open
                    sim.set_status(order_id, "OPEN", publish=False)
            return done

    for block, done in zip(blocks, asyncio.run(run_all()), strict=True):
        assert done.returncode == 0, (block, done.stderr)
        assert "Traceback" not in done.stderr
        assert "Unclosed" not in done.stderr


def _run(script: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
