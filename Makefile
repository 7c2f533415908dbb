# LabHub's one task runner. The README's two commands are `make run` and `make test`;
# .ci/run calls `make test`, exactly.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# The web pages' browser libraries (htmx, uPlot): pinned in package-lock.json, fetched by
# npm and copied into labhub/web/static/vendor (not in git; the wheel ships them).
FRONTEND := labhub/web/frontend
VENDOR := labhub/web/static/vendor/.built

.PHONY: run serve demo test lint typecheck imports pytest services bench clean

# A virtual environment with LabHub and its tools, rebuilt when pyproject.toml changes.
$(VENDOR): $(FRONTEND)/package.json $(FRONTEND)/package-lock.json $(FRONTEND)/vendor.mjs
	cd $(FRONTEND) && npm ci --no-audit --no-fund --ignore-scripts
	node $(FRONTEND)/vendor.mjs
	touch $(VENDOR)

$(STAMP): pyproject.toml $(VENDOR)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## make run: set everything up and run the hub with its virtual kits attached
## (API on http://127.0.0.1:8000, docs at /docs; readings within seconds)
run: $(STAMP)
	$(BIN)/labhub demo

demo: run

## make serve: the hub for a real lab (USB boards, the lab's own database)
serve: $(STAMP)
	$(BIN)/labhub serve

## make test: set everything up and run every check and the whole test suite
test: $(STAMP) services lint typecheck imports pytest

services:
	bash scripts/test-services

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

# On every core: each worker has its own PostgreSQL database, brokers and temporary files.
pytest: $(STAMP)
	$(BIN)/pytest -n auto --dist loadfile

## make bench: every benchmark of bench/ at full size, one after another (about 45 minutes;
## figures to read, not checks). `make test` runs each at a smoke size (--smoke).
bench: $(STAMP)
	set -e; for script in bench/[!_]*.py; do echo "== $$script"; $(BIN)/python $$script; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(FRONTEND)/node_modules labhub/web/static/vendor
