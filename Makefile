# Quick start: `make run` (serve locally) and `make test` (the whole suite). Both set up
# .venv with the pinned dependencies first; `make test` also installs Prometheus when missing.
# See README.md for every target and setting, docs/architecture.md for the code's layout.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PIDFILE := .agent-data/launcher.pid

# Ray 2.60 turns token auth on by default; the local stack runs without it.
export RAY_AUTH_MODE ?= disabled
export RAY_USAGE_STATS_ENABLED ?= 0

JS_SDK := tests/js/node_modules/@langchain/langgraph-sdk/package.json

.PHONY: install prometheus-bin js-sdk run stop observe test test-cluster cluster cluster-down lint typecheck loadtest loadtest-knee bench chaos soak bench-checkpointer bench-scaling bench-metadata clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# The fake provider's fault table may be changed at run time here (with
# AGENT_FAKE_CONTROL_TOKEN): a development flag, off everywhere else.
run: export AGENT_FAKE_CONTROL_ENABLED ?= true
run: install
	$(BIN)/python -m agent_runtime.cli.launch --pid-file $(PIDFILE)

# SIGTERM to the launcher, which shuts Serve and Ray down; "stopped" only once it is gone.
stop:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m agent_runtime.cli.stop $(PIDFILE); \
	else echo "no running stack (no $(BIN))"; fi

# The official JavaScript client, for tests/e2e/test_js_sdk.py: pinned by tests/js's lock file.
js-sdk: $(JS_SDK)

$(JS_SDK): tests/js/package.json tests/js/package-lock.json
	$(call debian_command,npm,nodejs npm,Node.js 18+ and npm)
	cd tests/js && npm ci --no-audit --no-fund --loglevel=error
	@touch $(JS_SDK)

# Debian's prometheus (any 2.x on PATH works), for `make observe` and
# tests/e2e/test_observability.py: installed when missing, with apt-get as root, else sudo.
prometheus-bin:
	$(call debian_command,prometheus,prometheus,Prometheus 2.x)

# $(call debian_command,COMMAND,PACKAGES,WHAT): install Debian's PACKAGES when COMMAND is not
# on PATH, with apt-get as root, else sudo; else say what to install.
define debian_command
	@command -v $(1) >/dev/null 2>&1 || { \
	  hint="install $(3) so that '$(1)' is on PATH, then run make again"; \
	  command -v apt-get >/dev/null 2>&1 \
	    || { echo "$(1) is not installed and there is no apt-get: $$hint" >&2; exit 1; }; \
	  if [ "$$(id -u)" = 0 ]; then sudo=; \
	  elif command -v sudo >/dev/null 2>&1; then sudo=sudo; \
	  else echo "$(1) is not installed, and installing it needs root or sudo: $$hint" >&2; \
	       exit 1; fi; \
	  apt="$$sudo env DEBIAN_FRONTEND=noninteractive apt-get"; \
	  echo "$(1) is not installed: installing Debian's $(2)" \
	    "($${sudo:+sudo }apt-get install -y --no-install-recommends $(2))..."; \
	  { $$apt install -y --no-install-recommends $(2) >/dev/null 2>&1 \
	    || { $$apt update -qq && $$apt install -y --no-install-recommends $(2) >/dev/null; }; } \
	  && command -v $(1) >/dev/null 2>&1 \
	  || { echo "could not install Debian's $(2): $$hint" >&2; exit 1; }; }
endef

# Prometheus on :9090 scraping the stack `make run` serves (its metrics port, with the
# alert rules). Grafana: README.md.
observe: install prometheus-bin
	$(BIN)/python -m observability.prometheus

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/vulture

typecheck: install
	$(BIN)/mypy --strict agent_runtime
	$(BIN)/mypy graphs loadtests observability

# Set-up (.venv, prometheus), then ruff, import-linter's layer contracts, mypy and pytest
# (tests/e2e start a Ray Serve stack; PostgreSQL and Redis must be up, see README.md).
test: install prometheus-bin js-sdk lint typecheck
	$(BIN)/pytest
	$(MAKE) test-cluster

# The multi-node cluster's tests start `make cluster` themselves and stop every Ray process
# of the machine at the end: a session of their own, after the suite's single-node cluster.
test-cluster: install
	$(BIN)/pytest -p no:cacheprovider -m cluster tests/cluster

loadtest: install
	$(BIN)/python loadtests/loadtest.py

# The knee (docs/scaling.md): Locust steps users up against the running stack (`make run`,
# or a cluster) until a step's p99 passes the SLO or its errors pass 1%, and reports the last
# step within it, with a PNG; replicas from Ray's metrics through Prometheus (`make observe`'s,
# else a private one). KNEE_ARGS passes flags, e.g. KNEE_ARGS="--step-users 8 --slo-p99-ms 1000"
# (python loadtests/knee.py -h).
loadtest-knee: install prometheus-bin
	$(BIN)/python loadtests/knee.py $(KNEE_ARGS)

bench: install
	$(BIN)/python loadtests/bench.py

# The chaos suite (docs/reliability.md): faults under load on the Serve stack. `make test`
# runs its reduced part (test_chaos_e2e.py); this runs all of it and prints its table rows.
chaos: install
	RAY_AUTH_MODE=disabled $(BIN)/pytest -s -p no:cacheprovider -m "" \
	  tests/e2e/test_chaos_e2e.py tests/e2e/test_chaos_full_e2e.py

# A long steady load on the local stack, watched for leaks and drift (docs/reliability.md).
MINUTES ?= 30
# A multi-node autoscaling Ray cluster on this machine (cluster.local.yaml, Ray's fake
# multi-node provider) serving the app on PostgreSQL and Redis (AGENT_DATABASE_URL,
# AGENT_REDIS_URL); `make cluster-down` removes it, and any other Ray process here.
cluster: install
	RAY_AUTH_MODE=disabled $(BIN)/python -m agent_runtime.cli.local_cluster up

cluster-down:
	RAY_AUTH_MODE=disabled $(BIN)/python -m agent_runtime.cli.local_cluster down

soak: install
	$(BIN)/python loadtests/soak.py --minutes $(MINUTES)

bench-checkpointer: install
	$(BIN)/python loadtests/bench_checkpointer.py

# Runs/s at 1, 2 and 4 orchestrator replicas of 8 runs each (provider at 1 s a call), the
# efficiency of each added replica and the cost of a run per part: docs/scaling.md. About
# 7 minutes; SCALING_ARGS passes flags, e.g. SCALING_ARGS="--replicas 1 2 4 8 --max-minutes 12".
bench-scaling: install
	$(BIN)/python loadtests/bench_scaling.py $(SCALING_ARGS)

# Metadata writes/s with 2000 in flight, over one replica's pool (docs/scaling.md).
bench-metadata: install
	$(BIN)/python loadtests/bench_metadata.py

# The golden set through the graphs, scored by the judge (fake provider: deterministic).
# Reports and metrics go to evals/reports/; EVAL_ARGS passes flags, e.g.
# EVAL_ARGS="--models-file models.yaml --min-helpfulness 4" (python -m agent_runtime.cli.evaluate -h).
.PHONY: eval
eval: install
	$(BIN)/python -m agent_runtime.cli.evaluate $(EVAL_ARGS)

clean:
	rm -rf .agent-data .mypy_cache .ruff_cache .pytest_cache
