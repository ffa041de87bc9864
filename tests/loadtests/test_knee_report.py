"""The knee's report, picture and replica source, and one real Locust run of the shape against
a stub server (Locust only ever as a subprocess: its gevent patching must not reach pytest)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests.knee_replicas import Replicas, ReplicaSource, parse_range
from loadtests.knee_report import KneeReport, format_table, write_json, write_png
from loadtests.knee_steps import Slo, Stepper, StepPlan, find_knee
from tests.loadtests.knee_samples import PLAN, SLO, feed, runs
from tests.loadtests.stub_agent_server import new_state, serve_stub

REPO_ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _report(replicas: Replicas) -> KneeReport:
    stepper = Stepper(PLAN, SLO, sample_s=5.0)
    for step, ms in enumerate((300.0, 800.0, 2500.0)):
        feed(stepper, runs(step, ms))
    for t in (10.0, 20.0, 30.0):
        stepper.tick(t)
    log = stepper.log(started_at=1_700_000_000.0)
    return KneeReport(
        command="python loadtests/knee.py",
        date="2026-12-07 22:00 UTC",
        host="http://127.0.0.1:8001",
        load_average=(1.5, 1.2, 0.9),
        locust_cpu=0.9,
        log=log,
        knee=find_knee(log.steps, log.slo),
        replicas=replicas,
    )


def test_table_marks_the_knee_and_the_step_that_broke_the_slo() -> None:
    table = format_table(_report(Replicas(note="no Prometheus: replicas not recorded")))
    lines = table.splitlines()
    assert lines[0].split() == [
        *("step", "users", "requests", "runs/s", "p50", "ms", "p99", "ms", "errors", "error", "%")
    ]
    assert lines[2].split()[:6] == ["1", "8", "100", "10.0", "800", "800"]
    assert lines[2].endswith("<- knee")
    assert lines[3].endswith("x p99 2500 ms > 2000 ms")
    assert "Knee: 8 users, 10.0 runs/s, p50 800 ms, p99 800 ms, errors 0 (0.00%)" in table
    assert "Load average at the end: 1.50 1.20 0.90" in table
    assert "Replicas: no Prometheus: replicas not recorded" in table
    assert "Locust used 90% of a core (near a core: the load generator may be" in table


def test_json_round_trips(tmp_path: Path) -> None:
    report = _report(Replicas(note="Prometheus", series={"orchestrator": [(0.0, 1.0)]}))
    write_json(report, tmp_path / "knee.json")
    assert KneeReport.model_validate_json((tmp_path / "knee.json").read_text()) == report


@pytest.mark.parametrize(
    "replicas",
    [
        Replicas(note="no Prometheus: replicas not recorded"),
        Replicas(note="P", series={"orchestrator": [(0.0, 1.0), (20.0, 2.0)], "router": []}),
    ],
    ids=["without replicas", "with replicas"],
)
def test_png_is_drawn_with_or_without_replicas(replicas: Replicas, tmp_path: Path) -> None:
    path = tmp_path / "knee.png"
    write_png(_report(replicas), path)
    assert path.read_bytes().startswith(PNG_MAGIC)


def test_prometheus_range_answer_becomes_series_per_deployment() -> None:
    body = {
        "status": "success",
        "data": {
            "result": [
                {"metric": {"deployment": "orchestrator"}, "values": [[100.0, "1"], [105, "2"]]},
                {"metric": {"deployment": "router"}, "values": [[100.0, "1"]]},
            ]
        },
    }
    assert parse_range(body, origin=100.0) == {
        "orchestrator": [(0.0, 1.0), (5.0, 2.0)],
        "router": [(0.0, 1.0)],
    }
    with pytest.raises(ValueError, match="error"):
        parse_range({"status": "error", "error": "bad query"}, origin=0.0)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port  # closed on return: nothing listens there


def test_without_prometheus_or_ray_the_replicas_say_so(tmp_path: Path) -> None:
    prometheus_url = f"http://127.0.0.1:{_closed_port()}"
    target = f"127.0.0.1:{_closed_port()}"
    with ReplicaSource(prometheus_url, [target], tmp_path) as source:
        replicas = source.fetch(0.0, 10.0, 5.0)
    assert replicas.series == {}
    assert replicas.note == (
        f"no Prometheus at {prometheus_url} and no Ray metrics at {target}: replicas not recorded"
    )


def test_knee_run_against_a_stub_steps_up_then_stops_at_the_slo(tmp_path: Path) -> None:
    """The shape, its options and its request listener, wired in a real Locust process, on a
    stub whose runs take 60 ms: within a 1 s SLO it steps 1 -> 2 users and ends at max users;
    against 30 ms the first step breaks it."""
    state = new_state()
    state.run_delay_s = 0.06
    out = tmp_path / "knee"
    env = {
        **os.environ,
        "AGENT_API_KEY": state.api_key,
        "AGENT_LOADTEST_WAIT_MIN_S": "0.01",
        "AGENT_LOADTEST_WAIT_MAX_S": "0.02",
    }
    with serve_stub(state) as url:
        # The stub as Prometheus and metrics endpoint too: neither answers, so no other stack
        # on this machine is asked for replicas.
        base = [
            *(sys.executable, "loadtests/knee.py", "--host", url, "--out", str(out)),
            *("--prometheus", url, "--metrics-target", url.removeprefix("http://")),
        ]
        fast = subprocess.run(
            [
                *base,
                *("--start-users", "1", "--step-users", "1", "--step-s", "2", "--max-users", "2"),
                *("--slo-p99-ms", "1000", "--sample-s", "1"),
            ],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert fast.returncode == 0, fast.stdout + fast.stderr
        report = KneeReport.model_validate_json((out / "knee.json").read_text())
        assert [s.users for s in report.log.steps] == [1, 2]
        assert all(s.runs > 0 and s.errors == 0 for s in report.log.steps)
        assert report.log.stop_reason == "max users (2) reached within the SLO"
        assert report.knee.knee == report.log.steps[-1] and not report.knee.found
        assert report.log.plan == StepPlan(start_users=1, step_users=1, step_s=2, max_users=2)
        assert report.log.slo == Slo(p99_ms=1000)
        assert (out / "knee.png").read_bytes().startswith(PNG_MAGIC)
        assert "<- knee" in fast.stdout
        assert "replicas not recorded" in report.replicas.note
        assert report.locust_cpu > 0

        slow = subprocess.run(
            [*base, "--step-s", "2", "--slo-p99-ms", "30"],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert slow.returncode == 1, slow.stdout + slow.stderr
    report = KneeReport.model_validate_json((out / "knee.json").read_text())
    assert [s.users for s in report.log.steps] == [4]  # stopped after the first step
    assert report.knee.knee is None
    assert "start lower" in report.knee.reason
