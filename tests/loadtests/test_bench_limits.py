"""``loadtests/bench_limits.py`` with few requests against the real Redis, so it cannot rot.

The round-trip count is exact (one EVALSHA per limited request); latencies only for shape
(they depend on the machine's load). A Redis that is down makes this fail, never skip.
"""

from __future__ import annotations

import json
import os

import pytest

from loadtests.bench_limits import main

REDIS_URL = os.environ.get("AGENT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def test_small_run_counts_one_round_trip_per_request(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["--requests", "200", "--warmup", "20", "--redis-url", REDIS_URL, "--json"])
    out = capsys.readouterr().out
    figures = json.loads(out.strip().splitlines()[-1])
    assert status == (0 if figures["target_met"] else 1)
    assert figures["round_trips_per_request"] == 1.0
    assert figures["requests"] == 200
    assert figures["plain_p50_ms"] > 0 and figures["limited_p50_ms"] > 0
    assert figures["server_scripts_per_request"] >= 1.0  # other clients may add to it
    assert "Redis round trips per request: 1.0 (commands the limiter sent)" in out
