"""``make bench``: cold start, idle memory, per-run overhead and throughput of the local stack.

    python loadtests/bench.py [--runs 100] [--users 32] [--duration 30]
                              [--provider-latency-ms 50] [--provider standalone|stack]
                              [--skip-throughput] [--no-write]

Starts the stack as ``make run`` does (``python -m agent_runtime.cli.launch``, fresh data dir,
free ports), measures it against the fake provider at a fixed latency, runs the same load
against ``loadtests/baseline_app.py`` (the same graph in one FastAPI process, no Ray), then
stops everything it started. Prints a table, writes ``loadtests/results/bench.json`` and
rewrites the marked section of ``docs/benchmarks.md``. Exit status: 0 when every figure was
measured (met or not), 2 when the stack or a measurement failed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType

import httpx

try:
    from loadtests.bench_phases import Bench
    from loadtests.bench_processes import REPO_ROOT, StartFailed
    from loadtests.bench_report import DOC, render_table, where_time_goes, write_doc
except ModuleNotFoundError:  # run as a script (python loadtests/bench.py)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from loadtests.bench_phases import Bench
    from loadtests.bench_processes import REPO_ROOT, StartFailed
    from loadtests.bench_report import DOC, render_table, where_time_goes, write_doc

RESULTS = REPO_ROOT / "loadtests" / "results" / "bench.json"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100, help="sequential runs for the overhead")
    parser.add_argument("--users", type=int, default=32, help="concurrent users for throughput")
    parser.add_argument("--duration", type=float, default=30.0, help="throughput window, s")
    parser.add_argument("--provider-latency-ms", type=float, default=50.0, help="fixed, per call")
    parser.add_argument(
        "--provider",
        choices=("standalone", "stack"),
        default="standalone",
        help="standalone: one fake provider process outside both systems (default); "
        "stack: the stack's built-in fake provider app, which the baseline calls too",
    )
    parser.add_argument("--port", type=int, default=0, help="the stack's HTTP port (0: free)")
    parser.add_argument("--skip-throughput", action="store_true", help="no load, no baseline")
    parser.add_argument("--no-write", action="store_true", help="leave docs/benchmarks.md alone")
    return parser


def _interrupt(_signum: int, frame: FrameType | None) -> None:
    # As SIGINT: inside asyncio.run that cancels the main task cleanly, elsewhere it raises
    # KeyboardInterrupt; either way the finally block stops what was started.
    signal.raise_signal(signal.SIGINT)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.runs < 1 or args.users < 1 or args.duration <= 0 or args.provider_latency_ms < 0:
        print("--runs, --users and --duration must be positive", file=sys.stderr)
        return 2
    # Python leaves SIGINT ignored when started in the background; Ctrl-C and SIGTERM stop us.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    # A short path: Ray's unix sockets live under it, and their paths are length-limited.
    work = Path(tempfile.mkdtemp(prefix="bench-", dir="/tmp" if Path("/tmp").is_dir() else None))
    bench = Bench(args, work)
    try:
        result = bench.run()
    except (StartFailed, httpx.HTTPError) as error:
        print(f"\nBenchmark failed: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        return 130
    finally:
        # A second Ctrl-C must not cut the clean-up short and leave Ray running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("Stopping everything this benchmark started (up to a minute)...", flush=True)
        bench.stop_all()
        shutil.rmtree(work, ignore_errors=True)

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(result.model_dump_json(indent=2) + "\n")
    print("\n" + render_table(result) + "\n\n" + where_time_goes(result) + "\n")
    print(f"Wrote {RESULTS.relative_to(REPO_ROOT)}")
    if not args.no_write:
        write_doc(result)
        print(f"Updated {DOC.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
