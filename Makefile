# Settle — the two quick-start commands are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.synced

.PHONY: run test check bench venv clean

# Bootstrap .venv from a bare python3: install uv into it, then install the locked dependencies.
$(STAMP): pyproject.toml uv.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv sync --frozen --quiet
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/settle db upgrade
	$(BIN)/settle serve --demo

test: $(STAMP)
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)

check: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy --strict src
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python bench/ledger.py --accounts 10000 --transfers 200000 --batch-size 8190 --json

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
