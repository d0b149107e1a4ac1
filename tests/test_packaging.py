"""Package metadata: one version source, the licence, classifiers that match what is tested."""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path
from typing import Any

import cadenza_async
import cadenza_async._version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def test_the_version_is_written_once_in_the_package() -> None:
    project = pyproject()
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["hatch"]["version"]["path"] == "cadenza_async/_version.py"
    assert cadenza_async.__version__ is cadenza_async._version.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+([abc]|rc|\.dev|\.post)?\d*", cadenza_async.__version__)
    assert importlib.metadata.version("cadenza-async") == cadenza_async.__version__


def test_the_licence_is_mit_and_ships_with_the_package() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "cadenza-async developers" in text
    project = pyproject()["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]


def test_classifiers_name_the_status_and_every_supported_python() -> None:
    project = pyproject()["project"]
    classifiers = project["classifiers"]
    assert "Development Status :: 3 - Alpha" in classifiers
    assert "Typing :: Typed" in classifiers
    assert project["requires-python"] == ">=3.10"
    for minor in (10, 11, 12, 13):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    # A licence expression and a licence classifier together are refused by PEP 639 tools.
    assert not [c for c in classifiers if c.startswith("License ::")]


def test_project_urls_if_any_are_absolute_https() -> None:
    urls = pyproject()["project"].get("urls", {})
    for name, url in urls.items():
        assert url.startswith("https://"), (name, url)


def test_the_docs_extra_names_the_site_builder() -> None:
    extras = pyproject()["project"]["optional-dependencies"]
    docs = " ".join(extras["docs"])
    assert "mkdocs-material" in docs
    assert "mkdocstrings[python]" in docs
    dist = " ".join(extras["dist"])
    assert "twine" in dist
    assert "build" in dist


def test_the_wheel_carries_the_type_marker() -> None:
    assert (ROOT / "cadenza_async" / "py.typed").exists()
    project = pyproject()
    assert project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == ["cadenza_async"]
