"""The load-test driver: CSV parsing and summaries, and a real Locust run against a stub server.

Locust is only ever run as a subprocess (``loadtests/loadtest.py`` starts it): importing it here
would monkey-patch this process with gevent.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests.loadtest import (
    LoadTestSummary,
    format_markdown,
    format_table,
    main,
    parse_duration,
    parse_stats_csv,
    write_summary,
)
from tests.loadtests.stub_agent_server import StubState, new_state, serve_stub

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN_ROUTE = "/threads/{thread_id}/runs/wait"

# The header StatsCSV.requests_csv writes in Locust 2.47 (locust/stats.py), percentiles included.
LOCUST_HEADER = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
    "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
    "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
)
STATS_CSV = f"""{LOCUST_HEADER}
POST,/threads,16,0,11,12.8,7.1,41.3,36.0,0.53,0.0,11,13,14,15,19,25,41,41,41,41,41
POST,{RUN_ROUTE},412,6,240,251.7,180.2,1893.4,1450.2,13.77,0.2,240,260,270,280,310,350,900,1100,1900,1900,1900
GET,/ok,0,0,0,0.0,0,0,0.0,0.0,0.0,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A
,Aggregated,428,6,230,242.8,7.1,1893.4,1397.7,14.3,0.2,230,250,270,280,310,340,880,1100,1900,1900,1900
"""


@pytest.fixture
def stats_csv(tmp_path: Path) -> Path:
    path = tmp_path / "locust_stats.csv"
    path.write_text(STATS_CSV)
    return path


def test_parse_stats_csv_reads_aggregate_and_named_rows(stats_csv: Path) -> None:
    total, endpoints = parse_stats_csv(stats_csv)

    assert (total.name, total.requests, total.failures) == ("Aggregated", 428, 6)
    assert (total.requests_per_s, total.p50_ms, total.p99_ms) == (14.3, 230.0, 1100.0)
    assert total.failure_rate == pytest.approx(6 / 428)
    assert [e.name for e in endpoints] == ["/threads", RUN_ROUTE, "/ok"]
    run = endpoints[1]
    assert (run.method, run.requests, run.failures, run.p50_ms, run.p99_ms) == (
        "POST",
        412,
        6,
        240.0,
        1100.0,
    )


def test_name_without_requests_has_no_percentiles(stats_csv: Path) -> None:
    _, endpoints = parse_stats_csv(stats_csv)
    idle = endpoints[2]
    assert (idle.requests, idle.p99_ms, idle.failure_rate) == (0, None, 0.0)


def test_csv_without_aggregate_row_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "partial_stats.csv"
    path.write_text("\n".join(STATS_CSV.splitlines()[:2]) + "\n")
    with pytest.raises(ValueError, match="Aggregated"):
        parse_stats_csv(path)


@pytest.mark.parametrize(
    ("text", "seconds"), [("30", 30), ("45s", 45), ("20m", 1200), ("1h30m", 5400), ("2m5s", 125)]
)
def test_parse_duration_accepts_locust_syntax(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten", "5x", "1h 30q"])
def test_parse_duration_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_summary_files_and_table(stats_csv: Path, tmp_path: Path) -> None:
    total, endpoints = parse_stats_csv(stats_csv)
    summary = LoadTestSummary(
        host="http://127.0.0.1:8000", users=16, duration="30s", total=total, endpoints=endpoints
    )
    json_path, md_path = write_summary(summary, tmp_path)

    saved = json.loads(json_path.read_text())
    assert saved["total"]["requests"] == 428
    assert saved["total"]["failure_rate"] == pytest.approx(6 / 428)
    assert LoadTestSummary.model_validate(saved).endpoints == endpoints

    markdown = md_path.read_text()
    assert markdown == format_markdown(summary)
    assert f"| POST {RUN_ROUTE} | 412 | 13.8 | 240 | 1100 | 6 | 1.46% |" in markdown
    assert "| GET /ok | 0 | 0.0 | - | - | 0 | 0.00% |" in markdown

    table = format_table(summary).splitlines()
    assert table[0].startswith("request") and table[0].endswith("failure %")
    assert table[-1].split() == ["Aggregated", "428", "14.3", "230", "1100", "6", "1.40%"]
    assert len({len(line) for line in table}) == 1  # columns line up


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_refuses_to_run_without_the_stack(capsys: pytest.CaptureFixture[str]) -> None:
    port = _free_port()  # closed again: nothing listens there
    status = main(["--host", f"http://127.0.0.1:{port}", "--duration", "1s"])
    assert status == 2
    assert "make run" in capsys.readouterr().err


@pytest.fixture
def stub() -> Iterator[tuple[str, StubState]]:
    state = new_state()
    with serve_stub(state) as url:
        yield url, state


def _run_loadtest(
    host: str, api_key: str, out: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AGENT_API_KEY": api_key,
        "AGENT_LOADTEST_WAIT_MIN_S": "0.02",
        "AGENT_LOADTEST_WAIT_MAX_S": "0.05",
        "AGENT_LOADTEST_TURNS_PER_THREAD": "4",
        "AGENT_LOADTEST_TIMEOUT_S": "10",
    }
    command = [sys.executable, "loadtests/loadtest.py", "--host", host, "--out", str(out), *extra]
    return subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=90, check=False
    )


def test_locust_run_against_stub_server(stub: tuple[str, StubState], tmp_path: Path) -> None:
    host, state = stub
    out = tmp_path / "results"
    finished = _run_loadtest(
        host, state.api_key, out, "--users", "2", "--spawn-rate", "2", "--duration", "3s"
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr

    summary = LoadTestSummary.model_validate_json((out / "summary.json").read_text())
    runs = next(e for e in summary.endpoints if e.name == RUN_ROUTE)
    threads = next(e for e in summary.endpoints if e.name == "/threads")
    assert 0 < runs.requests <= state.runs  # a request cut off at the end is not counted
    assert (summary.total.failures, state.rejected) == (0, 0)
    assert summary.total.requests == runs.requests + threads.requests
    assert runs.p50_ms is not None and runs.p99_ms is not None
    assert 2 <= threads.requests <= len(state.threads)  # one per user, then one per 4 turns
    assert len(state.contents) == 3  # the code / analysis / general prompts rotate
    assert (out / "summary.md").read_text().startswith("# Load test: 2 users for 3s")
    assert "Aggregated" in finished.stdout


def test_empty_answers_fail_the_run(stub: tuple[str, StubState], tmp_path: Path) -> None:
    host, state = stub
    state.answer = False
    out = tmp_path / "results"
    finished = _run_loadtest(
        host, state.api_key, out, "--users", "1", "--spawn-rate", "1", "--duration", "2s"
    )
    assert finished.returncode == 1, finished.stdout + finished.stderr
    assert "Failure rate" in finished.stderr

    summary = LoadTestSummary.model_validate_json((out / "summary.json").read_text())
    runs = next(e for e in summary.endpoints if e.name == RUN_ROUTE)
    assert runs.requests > 0
    assert runs.failures == runs.requests
    failures_csv = (out / "locust_failures.csv").read_text()
    assert "HTTP 200" in failures_csv
