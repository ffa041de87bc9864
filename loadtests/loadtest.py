"""Drive the running stack with Locust (headless) and summarise throughput, latency and failures.

    python loadtests/loadtest.py --users 16 --spawn-rate 8 --duration 30s

Locust runs in its own process (its gevent monkey-patching must never meet Ray or pytest); this
script only checks the stack is up, runs it bounded in time, then reads the ``*_stats.csv`` it
writes and leaves ``summary.json`` and ``summary.md`` beside it. Exit status: 0 when the failure
rate is within ``--max-failure-rate``, 1 when above, 2 when the test could not run.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
from pydantic import BaseModel, computed_field

LOCUSTFILE = Path(__file__).resolve().with_name("locustfile.py")
CSV_PREFIX = "locust"
AGGREGATED = "Aggregated"
# Extra time Locust gets beyond --duration to start, stop its users and write the CSVs.
GRACE_S = 60.0

_DURATION_PART = re.compile(r"(\d+)([hms])")
_UNIT_S = {"h": 3600, "m": 60, "s": 1}


class EndpointStats(BaseModel):
    """One row of Locust's ``*_stats.csv``: a named request, or the aggregate of all."""

    method: str
    name: str
    requests: int
    failures: int
    requests_per_s: float
    p50_ms: float | None
    p99_ms: float | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def failure_rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


class LoadTestSummary(BaseModel):
    host: str
    users: int
    duration: str
    total: EndpointStats
    endpoints: list[EndpointStats]


def parse_duration(text: str) -> int:
    """Locust's run-time syntax (``30``, ``45s``, ``20m``, ``1h30m``) in seconds."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    if not text or _DURATION_PART.sub("", text):
        raise ValueError(f"invalid duration {text!r}; use e.g. 30s, 5m or 1h30m")
    return sum(int(n) * _UNIT_S[unit] for n, unit in _DURATION_PART.findall(text))


def _optional_ms(value: str) -> float | None:
    # Locust writes N/A for percentiles of a name that saw no requests.
    return None if value in ("", "N/A") else float(value)


def parse_stats_csv(path: Path) -> tuple[EndpointStats, list[EndpointStats]]:
    """The Aggregated row and the per-name rows of a Locust ``*_stats.csv``."""
    total: EndpointStats | None = None
    endpoints: list[EndpointStats] = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            requests = int(row["Request Count"])
            stats = EndpointStats(
                method=row["Type"],
                name=row["Name"],
                requests=requests,
                failures=int(row["Failure Count"]),
                requests_per_s=float(row["Requests/s"]),
                # Locust writes a median of 0 for a name without requests: not a latency.
                p50_ms=_optional_ms(row["Median Response Time"]) if requests else None,
                p99_ms=_optional_ms(row["99%"]) if requests else None,
            )
            if stats.name == AGGREGATED and not stats.method:
                total = stats
            else:
                endpoints.append(stats)
    if total is None:
        raise ValueError(f"{path} has no {AGGREGATED} row")
    return total, endpoints


def _cells(stats: EndpointStats) -> list[str]:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    label = f"{stats.method} {stats.name}".strip()
    return [
        label,
        str(stats.requests),
        f"{stats.requests_per_s:.1f}",
        ms(stats.p50_ms),
        ms(stats.p99_ms),
        str(stats.failures),
        f"{100 * stats.failure_rate:.2f}%",
    ]


_HEADERS = ["request", "count", "req/s", "p50 ms", "p99 ms", "failures", "failure %"]


def format_table(summary: LoadTestSummary) -> str:
    """Aligned plain-text table for the terminal."""
    rows = [_HEADERS] + [_cells(s) for s in [*summary.endpoints, summary.total]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADERS))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    return "\n".join(lines)


def format_markdown(summary: LoadTestSummary) -> str:
    title = f"Load test: {summary.users} users for {summary.duration} against {summary.host}"
    rows = [_HEADERS, ["---"] * len(_HEADERS)]
    rows += [_cells(s) for s in [*summary.endpoints, summary.total]]
    table = "\n".join("| " + " | ".join(row) + " |" for row in rows)
    return f"# {title}\n\n{table}\n"


def write_summary(summary: LoadTestSummary, out_dir: Path) -> tuple[Path, Path]:
    json_path, md_path = out_dir / "summary.json", out_dir / "summary.md"
    json_path.write_text(summary.model_dump_json(indent=2) + "\n")
    md_path.write_text(format_markdown(summary))
    return json_path, md_path


def check_stack(host: str, timeout_s: float = 5.0) -> str | None:
    """None when ``GET /ok`` answers ``{"ok": true}``; otherwise why not."""
    try:
        response = httpx.get(f"{host.rstrip('/')}/ok", timeout=timeout_s)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    if response.status_code != 200:
        return f"GET /ok answered HTTP {response.status_code}"
    try:
        ok = response.json().get("ok") is True
    except (ValueError, AttributeError):
        ok = False
    return None if ok else f"GET /ok answered {response.text[:200]!r}"


def resolve_api_key(environ: dict[str, str]) -> str | None:
    """AGENT_API_KEY, else the dev key ``make run`` writes (the locustfile reads the same)."""
    key = environ.get("AGENT_API_KEY", "").strip()
    if key:
        return key
    key_file = Path(environ.get("AGENT_DATA_DIR", ".agent-data")) / "dev-api-key"
    return key_file.read_text().strip() if key_file.is_file() else None


def locust_command(args: argparse.Namespace, prefix: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "-u",
        str(args.users),
        "-r",
        str(args.spawn_rate),
        "-t",
        args.duration,
        "--host",
        args.host,
        "--csv",
        str(prefix),
        "--only-summary",
    ]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="http://127.0.0.1:8000", help="the app's base URL")
    parser.add_argument("--users", type=int, default=16, help="concurrent simulated users")
    parser.add_argument("--spawn-rate", type=float, default=8, help="users started per second")
    parser.add_argument("--duration", default="30s", help="e.g. 30s, 5m, 1h30m")
    parser.add_argument(
        "--out", type=Path, default=Path("loadtests/results"), help="folder for CSVs and summary"
    )
    parser.add_argument(
        "--max-failure-rate",
        type=float,
        default=0.01,
        help="share of failed requests above which the exit status is 1",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        duration_s = parse_duration(args.duration)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    if duration_s <= 0 or args.users < 1 or args.spawn_rate <= 0:
        print("--duration, --users and --spawn-rate must be positive", file=sys.stderr)
        return 2

    problem = check_stack(args.host)
    if problem is not None:
        print(
            f"The stack at {args.host} is not running ({problem}).\n"
            "Start it with `make run` in another terminal, then run this again.",
            file=sys.stderr,
        )
        return 2
    api_key = resolve_api_key(dict(os.environ))
    if api_key is None:
        print(
            "No API key: set AGENT_API_KEY, or start the stack with `make run` "
            "(it writes .agent-data/dev-api-key).",
            file=sys.stderr,
        )
        return 2

    out_dir = args.out.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = out_dir / CSV_PREFIX
    stats_csv = Path(f"{prefix}_stats.csv")
    stats_csv.unlink(missing_ok=True)  # never summarise a previous run's numbers

    command = locust_command(args, prefix)
    print(f"Running Locust: {args.users} users for {args.duration} against {args.host}")
    try:
        # Locust's own exit status is 1 whenever any request failed; the threshold decides.
        finished = subprocess.run(
            command, env={**os.environ, "AGENT_API_KEY": api_key}, timeout=duration_s + GRACE_S
        )
    except subprocess.TimeoutExpired:
        print(f"Locust did not finish within {duration_s + GRACE_S:.0f} s", file=sys.stderr)
        return 2
    if finished.returncode not in (0, 1) or not stats_csv.is_file():
        print(f"Locust failed (exit {finished.returncode}); no {stats_csv}", file=sys.stderr)
        return 2

    total, endpoints = parse_stats_csv(stats_csv)
    summary = LoadTestSummary(
        host=args.host, users=args.users, duration=args.duration, total=total, endpoints=endpoints
    )
    json_path, md_path = write_summary(summary, out_dir)
    print(format_table(summary))
    print(f"\nWrote {json_path} and {md_path}")
    if total.requests == 0:
        print("No request completed.", file=sys.stderr)
        return 1
    if total.failure_rate > args.max_failure_rate:
        print(
            f"Failure rate {total.failure_rate:.2%} is above {args.max_failure_rate:.2%}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
