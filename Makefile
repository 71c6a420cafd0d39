# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv themselves.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format clean bench

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# headless Chromium for the report test (Debian packages; only when missing)
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "Installing rlaif into $(VENV) (the first time compiles llama.cpp: about 5 minutes)"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[server,train,dev,ray]'
	@touch $(STAMP)

## Run the main job on the embedded default model (no network).
demo: $(STAMP)
	$(BIN)/rlaif run --out runs/demo
	@echo "First labelled pair of runs/demo/preferences.jsonl:"
	@head -n 1 runs/demo/preferences.jsonl | $(BIN)/python -m json.tool

## Lint, format check, then the whole test suite.
test: $(STAMP)
	$(BIN)/ruff check rlaif tests benchmarks
	$(BIN)/ruff format --check rlaif tests benchmarks
	$(BIN)/python -m pytest -q

format: $(STAMP)
	$(BIN)/ruff format rlaif tests benchmarks
	$(BIN)/ruff check --fix rlaif tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/compare_throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
