# craik: `make demo` runs the simulated robot end to end; `make test` is what CI runs.
# Every target enters the environment itself (env.bash); `make setup` is idempotent.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
ENV := source env.bash &&
PYTEST_ARGS ?=

.PHONY: help setup doctor demo test lint typecheck pytest bench clean distclean

help:
	@echo "make setup      install everything into .venv and build the workspace (idempotent)"
	@echo "make demo       run the simulated FR3 graph and a few goal-image episodes"
	@echo "make test       setup, then lint, type check and the whole test suite (what CI runs)"
	@echo "make doctor     check this machine (ROS 2, DDS, torch, MuJoCo, franky, RealSense, ...)"
	@echo "make bench      run the benchmarks in bench/ (JSON figures)"
	@echo "make clean      remove build/, install/, log/ (keeps .venv)"

setup:
	@scripts/setup.sh

doctor: setup
	@$(ENV) craik doctor

demo: setup
	@$(ENV) craik demo

lint: setup
	@echo "[lint] ruff"
	@$(ENV) ruff check src test bench launch conftest.py

typecheck: setup
	@echo "[typecheck] mypy (ROS-free libraries)"
	@$(ENV) mypy

pytest: setup
	@$(ENV) scripts/run_tests.sh $(PYTEST_ARGS)

test: setup lint typecheck pytest

bench: setup
	@$(ENV) for b in bench/*.py; do echo "== $$b"; python "$$b"; done

clean:
	rm -rf build install log

distclean: clean
	rm -rf .venv
