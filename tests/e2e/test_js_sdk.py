"""The official JavaScript client (@langchain/langgraph-sdk, tests/js) against the stack,
run with Node as a JS app would: assistants, threads, runs (wait and stream), state,
history, thread search and the store. `make test` installs it (`make js-sdk`)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import Stack, Tenant

JS = Path(__file__).resolve().parents[1] / "js"

# Starts the session's Ray stack: deselected by -m "not e2e".
pytestmark = pytest.mark.e2e


def test_the_js_sdk_drives_runs_threads_and_the_store(stack: Stack, tenant: Tenant) -> None:
    assert (JS / "node_modules" / "@langchain" / "langgraph-sdk").is_dir(), (
        "the JS SDK is not installed: run `make js-sdk` (make test does)"
    )
    env = {**os.environ, "AGENT_URL": stack.url, "AGENT_KEY": tenant.api_key}
    done = subprocess.run(
        ["node", "sdk_check.mjs"], cwd=JS, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["graphs"] == ["approval", "memory", "multi_agent", "react"]
    assert result["waited"] == "[fake-smart] You said: hello js"
    assert {"metadata", "values", "messages"} <= set(result["events"])
    assert result["tokens"].endswith("Tool result: 42")
    assert result["messages"] == 6  # two turns: human, ai / human, ai, tool, ai
    assert result["history"] == 3
    assert result["found"] == [result["thread"]]
    assert result["items"] == ["from node"]
