# Two commands set everything up on a fresh machine: `make test` and `make demo`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: test demo lint types unit soak bench clean docs dist test-pythons mutation

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(VENV)/.demo: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[cli]'
	touch $@

$(VENV)/.bench: pyproject.toml $(VENV)/.dev
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $@

$(VENV)/.mutation: pyproject.toml $(VENV)/.dev
	$(BIN)/python -m pip install --quiet -e '.[dev,mutation]'
	touch $@

$(VENV)/.docs: pyproject.toml $(VENV)/.dev
	$(BIN)/python -m pip install --quiet -e '.[dev,docs]'
	touch $@

$(VENV)/.dist: pyproject.toml $(VENV)/.dev
	$(BIN)/python -m pip install --quiet -e '.[dev,dist]'
	touch $@

lint: $(VENV)/.dev
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

types: $(VENV)/.dev
	$(BIN)/mypy --strict cadenza_async

unit: $(VENV)/.dev
	$(BIN)/python -X dev -m pytest -q

test: lint types unit docs dist

demo: $(VENV)/.demo
	$(BIN)/cadenza-async demo

soak: $(VENV)/.dev
	$(BIN)/python -X dev -m pytest -q -s -m soak tests/test_soak.py

bench: $(VENV)/.bench
	$(BIN)/python -X dev -m pytest -q -p no:cacheprovider -m bench tests/market/test_bench_book_smoke.py
	$(BIN)/python benchmarks/run_all.py
	$(BIN)/python benchmarks/bench_scale.py --json benchmarks/results/scale.json --plot benchmarks/results/scale.png
	$(BIN)/python benchmarks/bench_deadline.py --json benchmarks/results/deadline.json
	$(BIN)/python benchmarks/bench_submit.py
	$(BIN)/python benchmarks/bench_book.py --json benchmarks/results/book.json

# Mutation testing (mutmut) of protocol/, the proof engine and the small pure modules, each
# area against the tests tests/mutation/areas.toml maps to it; the report goes to
# benchmarks/results/mutation.{md,json}. Fails when an area misses its target or a surviving
# mutant is not listed in tests/mutation/equivalent.toml. Not part of `make test`: about
# 30 minutes on two cores, niced so that other work on the machine goes first.
# MUTATION_ENGINE: the proof engine's modules (the scope follows the engine's rewrite).
MUTATION_ENGINE  ?= cadenza_async/cancels.py cadenza_async/placing.py
MUTATION_WORKERS ?= 2

mutation: $(VENV)/.mutation
	nice -n 10 $(BIN)/python tests/mutation/run.py --engine "$(MUTATION_ENGINE)" --workers $(MUTATION_WORKERS)

# The docs site (mkdocs-material + mkdocstrings) into site/; any warning fails the build.
docs: $(VENV)/.docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --clean --site-dir site

# sdist and wheel into dist/, their metadata checked by twine, and the files a user needs inside.
dist: $(VENV)/.dist
	rm -rf dist
	$(BIN)/python -m build --no-isolation --sdist --wheel --outdir dist .
	$(BIN)/twine check --strict dist/*
	$(BIN)/python -m zipfile -l dist/*.whl | grep -E '^cadenza_async/py\.typed ' >/dev/null \
		|| { echo "dist: the wheel has no cadenza_async/py.typed"; exit 1; }
	$(BIN)/python -m zipfile -l dist/*.whl | grep -E '\.dist-info/licenses/LICENSE ' >/dev/null \
		|| { echo "dist: the wheel has no LICENSE"; exit 1; }
	tar -tzf dist/*.tar.gz | grep -E '^cadenza_async-[^/]+/LICENSE$$' >/dev/null \
		|| { echo "dist: the sdist has no LICENSE"; exit 1; }

# The whole suite on other Pythons from pyenv, each in a venv of its own (.venv-3.10, ...).
PYENV_ROOT ?= $(shell pyenv root 2>/dev/null || echo $(HOME)/.pyenv)
TEST_PYTHONS ?= 3.10 3.13

test-pythons:
	@status=0; for v in $(TEST_PYTHONS); do \
		py=$$(ls -d $(PYENV_ROOT)/versions/$$v.* 2>/dev/null | sort -V | tail -n 1)/bin/python; \
		if [ ! -x "$$py" ]; then echo "test-pythons: no Python $$v in $(PYENV_ROOT)/versions"; status=1; continue; fi; \
		venv=.venv-$$v; \
		echo "== Python $$v ($$py) in $$venv"; \
		{ [ -x $$venv/bin/python ] || $$py -m venv $$venv; } \
			&& $$venv/bin/python -m pip install --quiet --upgrade pip \
			&& $$venv/bin/python -m pip install --quiet -e '.[dev]' \
			&& $$venv/bin/python -X dev -m pytest -q -p no:cacheprovider \
			|| status=1; \
	done; exit $$status

clean:
	rm -rf $(VENV) .venv-* .mypy_cache .ruff_cache .pytest_cache build dist site mutants

# ------------------------------------------------------------------ security

# The lowest version of each runtime dependency pyproject.toml allows, as == pins.
define MIN_PINS_PY
import re
try:
    import tomllib
except ImportError:  # Python 3.10: the copy pip vendors
    from pip._vendor import tomli as tomllib
with open("pyproject.toml", "rb") as f:
    deps = tomllib.load(f)["project"]["dependencies"]
for dep in deps:
    m = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*>=\s*([^,;\s]+)\s*", dep)
    if m is None:
        raise SystemExit(f"no plain lower bound in {dep!r}")
    print(f"{m[1]}=={m[2]}")
endef
export MIN_PINS_PY

.PHONY: test-min audit

# The whole suite on exactly the lowest runtime dependency versions pyproject.toml
# allows (dev tools at their usual versions), in a venv of its own. Not in `make test`.
VENV_MIN := .venv-min

test-min:
	rm -rf $(VENV_MIN)
	$(PYTHON) -m venv $(VENV_MIN)
	$(VENV_MIN)/bin/python -m pip install --quiet --upgrade pip
	$(VENV_MIN)/bin/python -c "$$MIN_PINS_PY" > $(VENV_MIN)/min-pins.txt
	@echo "test-min: runtime dependencies pinned to:"; cat $(VENV_MIN)/min-pins.txt
	$(VENV_MIN)/bin/python -m pip install --quiet -c $(VENV_MIN)/min-pins.txt -e '.[dev]'
	$(VENV_MIN)/bin/python -m pip check
	$(VENV_MIN)/bin/python -m pip list 2>/dev/null | grep -Ei '^(aiohttp|msgspec|websockets|anyio) '
	$(VENV_MIN)/bin/python -X dev -m pytest -q -p no:cacheprovider

# Known-vulnerability audit with pip-audit (the `audit` extra) of the lowest allowed
# runtime versions and of the dev environment. It needs a vulnerability database: PyPI's
# JSON API (AUDIT_SERVICE=pypi, the default) or OSV (AUDIT_SERVICE=osv). It first asks
# about AUDIT_PROBE, a release with published advisories: when none come back the database
# is out of reach, and the audit says it did not run and exits 2, never a silent pass.
AUDIT_SERVICE ?= pypi
AUDIT_PROBE   ?= aiohttp==3.9.0

# Exit 0 when pip-audit's JSON report on the probe lists an advisory; else say why not.
define AUDIT_PROBE_PY
import json, sys
try:
    deps = json.load(open(sys.argv[1]))["dependencies"]
except (OSError, ValueError, KeyError) as exc:
    sys.exit(f"audit:   no report from pip-audit ({type(exc).__name__})")
if not any(dep.get("vulns") for dep in deps):
    for dep in deps:
        print(f"audit:   {dep.get('name')}: {dep.get('skip_reason') or 'no advisory returned'}")
    sys.exit(1)
endef
export AUDIT_PROBE_PY

$(VENV)/.audit: pyproject.toml $(VENV)/.dev
	$(BIN)/python -m pip install --quiet -e '.[dev,audit]'
	touch $@

audit: $(VENV)/.audit
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	echo "$(AUDIT_PROBE)" > $$tmp/probe.txt; \
	$(BIN)/python -m pip_audit -s $(AUDIT_SERVICE) --no-deps --disable-pip \
		-r $$tmp/probe.txt -f json -o $$tmp/probe.json > $$tmp/probe.log 2>&1; \
	if ! $(BIN)/python -c "$$AUDIT_PROBE_PY" $$tmp/probe.json > $$tmp/probe.why 2>&1; then \
		echo "audit: NOT RUN: the vulnerability database ($(AUDIT_SERVICE)) is out of reach."; \
		echo "audit: it reported no advisory for $(AUDIT_PROBE), which has published ones:"; \
		cat $$tmp/probe.why; tail -n 3 $$tmp/probe.log | sed 's/^/audit:   /'; \
		exit 2; \
	fi; \
	$(BIN)/python -c "$$MIN_PINS_PY" > $$tmp/min-pins.txt; \
	status=0; \
	echo "audit: the lowest versions pyproject.toml allows:"; \
	$(BIN)/python -m pip_audit -s $(AUDIT_SERVICE) --no-deps --disable-pip -r $$tmp/min-pins.txt || status=1; \
	echo "audit: the dev environment ($(VENV)):"; \
	$(BIN)/python -m pip_audit -s $(AUDIT_SERVICE) --skip-editable || status=1; \
	exit $$status
