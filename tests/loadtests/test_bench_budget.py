"""``loadtests/bench_budget.py`` with tiny numbers against the real Redis, so it cannot rot.

The race's outcome is checked exactly (it is a correctness figure); latencies only for
shape. A Redis that is down makes this fail, never skip.
"""

from __future__ import annotations

import json
import os

import pytest

from loadtests.bench_budget import main

REDIS_URL = os.environ.get("AGENT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def test_small_race_reports_no_overspend(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--calls", "20", "--repeats", "2", "--replicas", "2", "--last-usd", "0.1"]
    assert (
        main(
            [
                *argv,
                "--reserve-usd",
                "0.03",
                "--delay-ms",
                "0,2",
                "--redis-url",
                REDIS_URL,
                "--json",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["max_overspend_usd"] == 0.0 and figures["target_met"] is True
    assert figures["exact_accounting"] is True
    assert figures["admitted_min"] >= 3  # $0.10 fits three $0.03 reservations at once
    assert figures["sequential_reserve_p50_ms"] > 0
    assert "max overspend $0.00 vs one reservation $0.03: target met" in out


def test_unreachable_redis_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--repeats", "1", "--redis-url", "redis://127.0.0.1:1/0"]) == 2
    assert "unreachable" in capsys.readouterr().err
