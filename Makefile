# ksmtrace developer targets. `make help` lists them.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
KSMTRACE := $(VENV)/bin/ksmtrace

.PHONY: help setup demo test test-unit test-live test-snapshot-update lint typecheck check bench clean

help: ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

setup: ## install system packages, kernel headers for bcc, and the venv (idempotent)
	@scripts/setup.sh

demo: setup ## install what is needed and run the 30 s demo (as root)
	$(KSMTRACE) demo

test: setup ## install what is needed and run every test, live ones included (as root)
	$(PY) -m pytest tests

test-unit: ## tests that need neither root nor BPF
	$(PY) -m pytest tests/unit

test-live: ## live BPF tests only
	$(PY) -m pytest tests/live

test-snapshot-update: ## accept intended visual changes of ksmtrace top (then review the SVGs)
	$(PY) -m pytest tests/tui --snapshot-update

lint: ## ruff lint and format check
	$(VENV)/bin/ruff check ksmtrace tests benchmarks
	$(VENV)/bin/ruff format --check ksmtrace tests benchmarks

typecheck: ## mypy --strict on the package
	$(VENV)/bin/mypy

check: lint typecheck test ## everything CI runs

bench: setup ## print the overhead benchmarks (as root)
	$(PY) -m benchmarks

clean: ## remove the venv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
