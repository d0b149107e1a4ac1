# Two commands set everything up on a fresh machine: `make test` and `make demo`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: test demo lint types unit soak bench clean docs dist test-pythons

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
	$(BIN)/python benchmarks/run_all.py

# The docs site (mkdocs-material + mkdocstrings) into site/; any warning fails the build.
docs: $(VENV)/.docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --clean --site-dir site

# sdist and wheel into dist/, their metadata checked by twine, and the files a user needs inside.
dist: $(VENV)/.dist
	rm -rf dist
	$(BIN)/python -m build --no-isolation --sdist --wheel --outdir dist .
	$(BIN)/twine check --strict dist/*
	$(BIN)/python -m zipfile -l dist/*.whl | grep -Eq '^cadenza_async/py\.typed ' \
		|| { echo "dist: the wheel has no cadenza_async/py.typed"; exit 1; }
	$(BIN)/python -m zipfile -l dist/*.whl | grep -Eq '\.dist-info/licenses/LICENSE ' \
		|| { echo "dist: the wheel has no LICENSE"; exit 1; }
	tar -tzf dist/*.tar.gz | grep -Eq '^cadenza_async-[^/]+/LICENSE$$' \
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
	rm -rf $(VENV) .venv-* .mypy_cache .ruff_cache .pytest_cache build dist site
