# Quick start: `make run` (serve locally) and `make test` (the whole suite). Both set up
# .venv with the pinned dependencies first. See README.md for every target and setting.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PIDFILE := .agent-data/launcher.pid
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Ray 2.60 turns token auth on by default; the local stack runs without it.
export RAY_AUTH_MODE ?= disabled
export RAY_USAGE_STATS_ENABLED ?= 0

.PHONY: install run stop observe test lint typecheck loadtest bench bench-checkpointer clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/python -m agent_runtime.cli.launch --pid-file $(PIDFILE)

stop:
	@if [ -f $(PIDFILE) ] && kill -0 $$(cat $(PIDFILE)) 2>/dev/null; then \
	  kill -TERM $$(cat $(PIDFILE)); \
	  for i in $$(seq 1 60); do kill -0 $$(cat $(PIDFILE) 2>/dev/null) 2>/dev/null || break; sleep 0.5; done; \
	  echo "stopped"; \
	else echo "no running stack (no live $(PIDFILE))"; fi

# Prometheus on :9090 scraping the stack `make run` serves (its metrics port, with the
# alert rules); Debian's package is installed first when missing. Grafana: README.md.
observe: install
	@command -v prometheus >/dev/null 2>&1 || { \
	  echo "prometheus is not installed: installing Debian's package" \
	    "(apt-get install -y --no-install-recommends prometheus)..."; \
	  $(SUDO) apt-get install -y --no-install-recommends prometheus >/dev/null 2>&1 \
	  || { $(SUDO) apt-get update -qq && \
	       $(SUDO) apt-get install -y --no-install-recommends prometheus >/dev/null; } \
	  || { echo "could not install prometheus: install it (any 2.x on PATH works)" \
	       "and run make observe again" >&2; exit 1; }; }
	$(BIN)/python -m observability.prometheus

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/vulture

typecheck: install
	$(BIN)/mypy --strict agent_runtime
	$(BIN)/mypy graphs loadtests observability

test: lint typecheck
	$(BIN)/pytest

loadtest: install
	$(BIN)/python loadtests/loadtest.py

bench: install
	$(BIN)/python loadtests/bench.py

bench-checkpointer: install
	$(BIN)/python loadtests/bench_checkpointer.py

# The golden set through the graphs, scored by the judge (fake provider: deterministic).
# Reports and metrics go to evals/reports/; EVAL_ARGS passes flags, e.g.
# EVAL_ARGS="--models-file models.yaml --min-helpfulness 4" (python -m agent_runtime.cli.evaluate -h).
.PHONY: eval
eval: install
	$(BIN)/python -m agent_runtime.cli.evaluate $(EVAL_ARGS)

clean:
	rm -rf .agent-data .mypy_cache .ruff_cache .pytest_cache
