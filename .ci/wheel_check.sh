#!/usr/bin/env bash
# The package as users get it: build the wheel, install it without extras into a fresh venv
# (dev extras once hid a missing dependency), then, in a project folder of its own with a
# `graphs` package of its own, `agent-runtime check`, `serve`, one run, `stop`.
# Run by .ci/run after `make test` (its own Ray cluster: never beside the test session's).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"  # made by `make test`
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0

echo "wheel check: building the wheel"
"$PYTHON" -m pip wheel --quiet --no-deps -w "$work/dist" .
"$PYTHON" - "$work"/dist/*.whl <<'EOF' || { echo "wheel check: it ships graphs/" >&2; exit 1; }
import sys
import zipfile

sys.exit(any(name.startswith("graphs/") for name in zipfile.ZipFile(sys.argv[1]).namelist()))
EOF
echo "wheel check: installing it into a fresh venv, without extras"
"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --upgrade pip
"$work/venv/bin/python" -m pip install --quiet -c constraints.txt "$work"/dist/*.whl

app="$work/my-agent"
mkdir -p "$app/graphs"
touch "$app/graphs/__init__.py"
cat > "$app/graphs/echo.py" <<'EOF'
from typing import TypedDict

from langgraph.graph import START, StateGraph


class State(TypedDict, total=False):
    text: str


builder = StateGraph(State)
builder.add_node("shout", lambda state: {"text": state["text"].upper()})
builder.add_edge(START, "shout")
graph = builder.compile()
EOF
echo '{"dependencies": ["."], "graphs": {"echo": "./graphs/echo.py:graph"}}' > "$app/langgraph.json"
port="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

cd "$app"
"$work/venv/bin/agent-runtime" check
"$work/venv/bin/agent-runtime" serve --port "$port" > serve.log 2>&1 &
served=$!
stop() { "$work/venv/bin/agent-runtime" stop || kill -KILL "$served" 2>/dev/null || true; }
trap 'stop; rm -rf "$work"' EXIT
for _ in $(seq 1 180); do
  grep -q "ready in" serve.log && break
  kill -0 "$served" 2>/dev/null || { cat serve.log; echo "wheel check: serve exited" >&2; exit 1; }
  sleep 1
done
grep -q "ready in" serve.log || { cat serve.log; echo "wheel check: not ready in 180 s" >&2; exit 1; }
key="$(cat .agent-data/dev-api-key)"
answer="$(curl -sf -X POST "http://127.0.0.1:$port/runs/wait" -H "x-api-key: $key" \
  -H 'content-type: application/json' -d '{"assistant_id": "echo", "input": {"text": "wheel"}}')"
echo "wheel check: the run answered $answer"
[ "$answer" = '{"text":"WHEEL"}' ] || { echo "wheel check: unexpected answer" >&2; exit 1; }
"$work/venv/bin/agent-runtime" stop
trap 'rm -rf "$work"' EXIT
echo "wheel check: passed"
