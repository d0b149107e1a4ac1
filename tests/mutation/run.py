"""`make mutation`: mutmut over the areas of tests/mutation/areas.toml, and the report.

Each area runs in a scratch copy of the tree (``build/mutation/AREA``: the package,
the tests and pyproject.toml with a ``[tool.mutmut]`` section written for the area),
so the areas never share mutmut's state and the work tree is left alone. Each mutant
is then killed, or not (its status and diff are kept), and a mutant not killed is
either listed in tests/mutation/equivalent.toml with the reason it cannot be killed,
or a survivor. The report goes to ``OUT.json`` (what each area's last run found),
``OUT.md`` (scores, survivors with their diffs, equivalents) and ``OUT-summary.md``
(the score table the docs include). ``--area NAME`` runs that area alone and replaces
its entry, the other areas keeping their last run (each entry names the commit it
mutated); ``--report-only`` rewrites the report from the JSON (after equivalent.toml
changed). The exit status is 1 when an area misses its target or has a survivor.

Run it from the repository root with the venv's Python (``make mutation`` does)::

    python tests/mutation/run.py [--area NAME ...] [--engine "a.py b.py"] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ImportError:  # Python 3.10: the copy pip vendors
    from pip._vendor import tomli as tomllib

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SCRATCH = ROOT / "build" / "mutation"
#: What the tests of an area may read besides the package and the tests themselves.
COPIED = ("cadenza_async", "tests", "pyproject.toml", "README.md")


@dataclass
class Area:
    name: str
    modules: list[str]
    tests: list[str]
    target: float
    status: dict[str, str] = field(default_factory=dict)  # mutant -> mutmut's status
    diffs: dict[str, str] = field(default_factory=dict)  # survivor -> its diff
    seconds: float = 0.0
    error: str | None = None


def load_areas(engine: list[str] | None) -> tuple[list[Area], list[str]]:
    """The areas, and the patterns of statements never mutated."""
    with open(HERE / "areas.toml", "rb") as f:
        table = tomllib.load(f)
    skip = list(table.pop("skip", {}).get("patterns", []))
    areas = []
    for name, spec in table.items():
        modules = list(spec["modules"])
        if name == "engine" and engine:
            modules = engine
        areas.append(Area(name, modules, list(spec["tests"]), float(spec.get("target", 0))))
    return areas, skip


def load_equivalent() -> dict[str, str]:
    """Mutant name -> why no test can tell it from the original."""
    with open(HERE / "equivalent.toml", "rb") as f:
        table = tomllib.load(f)
    return {entry["mutant"]: entry["reason"] for entry in table.get("equivalent", [])}


def mutmut_section(area: Area, workers: int, skip: list[str]) -> str:
    values: dict[str, Any] = {
        "source_paths": ["cadenza_async"],
        "only_mutate": area.modules,
        "do_not_mutate_patterns": skip,
        "pytest_add_cli_args_test_selection": area.tests,
        # a mutant that hangs a test is ended by pytest-timeout, well before the suite's 60 s
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "--timeout=30"],
        "max_children": workers,
        "use_git_change_detection": False,
    }
    lines = ["", "[tool.mutmut]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def prepare(area: Area, workers: int, skip: list[str]) -> Path:
    where = SCRATCH / area.name
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(
                source, where / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        elif source.exists():
            shutil.copy2(source, where / name)
    with open(where / "pyproject.toml", "a", encoding="utf-8") as f:
        f.write(mutmut_section(area, workers, skip))
    return where


def mutmut(where: Path, *args: str, log: Path | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mutmut", *args]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    if log is None:
        return subprocess.run(
            command, cwd=where, env=env, capture_output=True, text=True, check=False
        )
    with open(log, "w", encoding="utf-8") as out:
        return subprocess.run(
            command, cwd=where, env=env, stdout=out, stderr=subprocess.STDOUT, text=True
        )


def run_area(area: Area, workers: int, skip: list[str]) -> None:
    from mutmut.stats import status_by_exit_code  # (the mutation extra)

    where = prepare(area, workers, skip)
    started = time.monotonic()
    done = mutmut(where, "run", log=SCRATCH / f"{area.name}.log")
    area.seconds = time.monotonic() - started
    for meta in sorted((where / "mutants").rglob("*.meta")):
        data = json.loads(meta.read_text(encoding="utf-8"))
        for name, code in data["exit_code_by_key"].items():
            area.status[name] = status_by_exit_code[code]
    if done.returncode != 0 or not area.status:
        area.error = f"mutmut run exited {done.returncode}: see {SCRATCH / area.name}.log"
    area.diffs = diffs(where, [name for name, status in area.status.items() if status != "killed"])


#: Prints {mutant: diff} for the mutants named in argv[1] (JSON), run in an area's copy:
#: one process for every survivor (``mutmut show`` costs a process each).
_DIFFS = """
import json, sys
from mutmut.mutation.diff_apply import find_mutant, get_diff_for_mutant
names = json.loads(sys.argv[1])
print(json.dumps({n: get_diff_for_mutant(n, path=find_mutant(n).path) for n in names}))
"""


def diffs(where: Path, names: list[str]) -> dict[str, str]:
    """Each mutant's diff (mutmut's own rendering), the unified diff's header left out."""
    if not names:
        return {}
    done = subprocess.run(
        [sys.executable, "-c", _DIFFS, json.dumps(names)],
        cwd=where,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode == 0:
        return {name: _diff_only(text) for name, text in json.loads(done.stdout).items()}
    # (another mutmut version: its command, a process per mutant)
    return {name: _diff_only(mutmut(where, "show", name).stdout) for name in names}


def _diff_only(text: str) -> str:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("@@")), 0)
    return "\n".join(lines[start:]).strip()


def raw_result(area: Area) -> dict[str, Any]:
    """What one area's run found, kept in the JSON report: the counts and every mutant not
    killed, with its status and diff (the score is worked out from these, see :func:`score`)."""
    counts: dict[str, int] = {}
    for status in area.status.values():
        counts[status] = counts.get(status, 0) + 1
    return {
        "modules": area.modules,
        "tests": area.tests,
        "target": area.target,
        "mutants": len(area.status),
        "by_status": dict(sorted(counts.items())),
        "not_killed": {
            name: {"status": status, "diff": area.diffs.get(name, "")}
            for name, status in sorted(area.status.items())
            if status not in ("killed", "timeout")
        },
        "seconds": round(area.seconds, 1),
        "commit": _commit(),
        "error": area.error,
    }


def _commit() -> str:
    """The commit the run mutated (with '+' when the tree had changes)."""
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "cadenza_async", "tests"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return head + ("+" if dirty else "")


def score(raw: dict[str, Any], equivalent: dict[str, str]) -> dict[str, Any]:
    """An area's score: killed / (mutants - listed equivalents); a timeout counts as killed."""
    not_killed = raw["not_killed"]
    listed = sorted(n for n in not_killed if n in equivalent)
    survivors = sorted(n for n in not_killed if n not in equivalent)
    killed = raw["mutants"] - len(not_killed)
    counted = raw["mutants"] - len(listed)
    percent = 100.0 * killed / counted if counted else 0.0
    return {
        "killed": killed,
        "equivalent": listed,
        "survivors": survivors,
        "score": round(percent, 1),
        "met": not raw["error"] and percent >= raw["target"] and not survivors,
    }


def summary_md(raws: dict[str, dict[str, Any]], equivalent: dict[str, str]) -> str:
    """The score table (also included in docs/development.md)."""
    out = [
        "| area | modules | mutants | killed | equivalent | survivors | score | target | commit |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, raw in raws.items():
        s = score(raw, equivalent)
        target = f"{raw['target']:g}%" if raw["target"] else "-"
        modules = ", ".join(f"`{m}`" for m in raw["modules"])
        out.append(
            f"| {name} | {modules} | {raw['mutants']} | {s['killed']} | "
            f"{len(s['equivalent'])} | {len(s['survivors'])} | {s['score']:.1f}% | {target} | "
            f"{raw['commit']} ({raw['seconds']:.0f} s) |"
        )
    out += [
        "",
        "Score: killed / (mutants - listed equivalents), in percent (a timeout counts as "
        "killed). Survivors: neither killed nor listed in `tests/mutation/equivalent.toml`; "
        "each is shown with its diff in `benchmarks/results/mutation.md`. Commit: the tree "
        "the area's last run mutated, and how long it took on two workers.",
    ]
    return "\n".join(out) + "\n"


def report_md(raws: dict[str, dict[str, Any]], equivalent: dict[str, str]) -> str:
    out = [
        "# Mutation score (`make mutation`)",
        "",
        "mutmut over each area of `tests/mutation/areas.toml`, against the tests listed there.",
        "",
        summary_md(raws, equivalent).rstrip(),
    ]
    for name, raw in raws.items():
        s = score(raw, equivalent)
        if raw["error"]:
            out += ["", f"**{name}: {raw['error']}**"]
        if s["survivors"]:
            out += ["", f"## Survivors in {name} (not killed, not listed as equivalent)", ""]
            for mutant in s["survivors"]:
                entry = raw["not_killed"][mutant]
                out += [f"`{mutant}` ({entry['status']})", "", "```diff", entry["diff"], "```", ""]
        if s["equivalent"]:
            out += ["", f"## Equivalent mutants in {name}", ""]
            out += [f"- `{m}`: {equivalent[m]}" for m in s["equivalent"]]
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--area", action="append", help="run only this area (repeatable)")
    parser.add_argument("--engine", help="the engine's modules, space separated")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "mutation"))
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: rewrite the report from its JSON (after equivalent.toml changed)",
    )
    args = parser.parse_args()

    areas, skip = load_areas(args.engine.split() if args.engine else None)
    if args.area:
        unknown = set(args.area) - {a.name for a in areas}
        if unknown:
            parser.error(f"unknown area(s): {', '.join(sorted(unknown))}")
        areas = [a for a in areas if a.name in args.area]
    equivalent = load_equivalent()
    out = Path(args.out)
    json_path = out.with_suffix(".json")
    # An area run alone replaces its own entry; the others keep their last run.
    raws: dict[str, dict[str, Any]] = {}
    if json_path.exists() and (args.area or args.report_only):
        raws = json.loads(json_path.read_text(encoding="utf-8"))
    if not args.report_only:
        SCRATCH.mkdir(parents=True, exist_ok=True)
        for area in areas:
            print(f"mutation: {area.name}: {' '.join(area.modules)}", flush=True)
            run_area(area, args.workers, skip)
            raws[area.name] = raw_result(area)
            s = score(raws[area.name], equivalent)
            print(
                f"mutation: {area.name}: {s['killed']}/{raws[area.name]['mutants']} killed, "
                f"{len(s['equivalent'])} equivalent, {len(s['survivors'])} survivor(s): "
                f"{s['score']:.1f}%, {raws[area.name]['seconds']:.0f} s",
                flush=True,
            )
    order = [a.name for a in load_areas(None)[0]]
    raws = {name: raws[name] for name in order if name in raws}
    json_path.write_text(json.dumps(raws, indent=2) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(report_md(raws, equivalent), encoding="utf-8")
    out.with_name(out.name + "-summary.md").write_text(
        summary_md(raws, equivalent), encoding="utf-8"
    )
    failed = [name for name, raw in raws.items() if not score(raw, equivalent)["met"]]
    if failed:
        print(f"mutation: below target or with unlisted survivors: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
