# Quick start: `make run` (the main job on embedded local defaults) and `make test` (the test suite).
# Both set up what they need first: system packages (Debian), the virtualenv, jars from Maven Central.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
GWTEL := $(VENV)/bin/gwtel
export GWTEL_HOME ?= $(CURDIR)/.gwtel
export GWTEL_TEST_DATA ?= $(abspath $(CURDIR)/../shared/data)

.PHONY: setup run test lint up down status bench golden clean

$(VENV)/.installed: pyproject.toml deploy/local/system-packages.sh
	bash deploy/local/system-packages.sh
	python3 -c 'import sys; assert sys.version_info[:2] == (3, 11), "gateway-telemetry needs Python 3.11 as python3"'
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# The agent's native engine (Rust, PyO3): rebuilt and reinstalled when its sources change. Rust comes from rustup
# on these machines (~/.cargo/bin), or from Debian's cargo through system-packages.sh.
NATIVE_SRC := native/Cargo.toml native/Cargo.lock native/pyproject.toml native/gwtel_native.pyi $(wildcard native/src/*.rs native/src/export/*.rs)
$(VENV)/.native: $(VENV)/.installed $(NATIVE_SRC)
	PATH="$(HOME)/.cargo/bin:$$PATH" $(PY) -m pip install --quiet ./native
	touch $@

setup: $(VENV)/.installed $(VENV)/.native

run: setup
	$(GWTEL) run

up: setup
	$(GWTEL) up

# An existing venv is brought up to date first: one that predates a new dependency
# could not import gwtel to stop its own services.
down: $(if $(wildcard $(VENV)/.installed),setup)
	$(GWTEL) down

status:
	$(GWTEL) status

test: setup
	$(GWTEL) up
	$(VENV)/bin/pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	PATH="$$HOME/.cargo/bin:$$PATH" cargo fmt --check --manifest-path native/Cargo.toml

# Every bench/*.py (not starting with _), one table at the end; needs the services (`gwtel up`) for bench/e2e.py.
bench: setup
	$(GWTEL) up
	$(PY) bench

golden: setup
	$(PY) tests/golden/regen.py

clean: down
	rm -rf $(GWTEL_HOME)
