# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv themselves.
# `make demo` installs only what the main job needs and never asks for root; `make test` adds
# the training, server, Ray and test extras (and Debian's Chromium for the browser test).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# RLAIF_LLAMA_NATIVE=1 builds llama.cpp for this machine's CPU only (see scripts/install-llama.sh)
LLAMA_KIND := $(if $(filter 1,$(RLAIF_LLAMA_NATIVE)),native,portable)
LLAMA := $(VENV)/.llama-$(LLAMA_KIND)
CORE := $(VENV)/.installed-core
FULL := $(VENV)/.installed-full
DEMO_OUT := runs/demo
# The demo's size: every stage of the main job in about two minutes on 2 cores.
DEMO_ARGS := --limit 6 --n-responses 2 --revisions 1 --max-tokens 48

.PHONY: demo test llama lint format clean bench doctor docs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(LLAMA): scripts/install-llama.sh | $(BIN)/python
	@rm -f $(VENV)/.llama-*
	sh scripts/install-llama.sh $(BIN)/python
	@touch $@

## (Re)install llama-cpp-python for a portable CPU baseline (RLAIF_LLAMA_NATIVE=1: this CPU).
llama: | $(BIN)/python
	@rm -f $(VENV)/.llama-*
	sh scripts/install-llama.sh $(BIN)/python
	@touch $(LLAMA)

$(CORE): pyproject.toml constraints.txt $(LLAMA)
	@echo "Installing rlaif and what the main job needs into $(VENV)"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e .
	@touch $@

$(FULL): $(CORE)
	@# headless Chromium for the browser tests: Debian packages, only when missing and only as root
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq \
		&& apt-get install -y -qq chromium chromium-driver; } \
		|| echo "note: no chromium and no root: the browser tests will fail; install chromium and chromium-driver"
	@echo "Installing the training, server, Ray and test extras into $(VENV)"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[server,train,dev,ray]'
	@touch $@

## Check the installation, run the main job on the embedded default model, write its report.
demo: $(CORE)
	$(BIN)/rlaif doctor
	$(BIN)/rlaif run --out $(DEMO_OUT) $(DEMO_ARGS)
	$(BIN)/rlaif report $(DEMO_OUT)
	@echo "First labelled pair of $(DEMO_OUT)/preferences.jsonl:"
	@head -n 1 $(DEMO_OUT)/preferences.jsonl | $(BIN)/python -m json.tool
	@echo "Preferences: $(CURDIR)/$(DEMO_OUT)/preferences.jsonl"
	@echo "Report:      $(CURDIR)/$(DEMO_OUT)/report.html"

doctor: $(CORE)
	$(BIN)/rlaif doctor

## Lint, format check, then the whole test suite.
test: $(FULL)
	$(BIN)/ruff check rlaif tests benchmarks scripts
	$(BIN)/ruff format --check rlaif tests benchmarks scripts
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q --durations=15

## The docs site into site/ (mkdocs build --strict; make test builds it too, in tests/test_docs.py).
docs: $(FULL)
	$(BIN)/python scripts/gen_cli_docs.py
	$(BIN)/mkdocs build --strict

format: $(FULL)
	$(BIN)/ruff format rlaif tests benchmarks scripts
	$(BIN)/ruff check --fix rlaif tests benchmarks scripts

bench: $(FULL)
	$(BIN)/python benchmarks/compare_throughput.py

clean:
	rm -rf $(VENV) runs site .pytest_cache .ruff_cache
