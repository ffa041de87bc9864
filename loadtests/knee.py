"""``make loadtest-knee``: step users up against the running stack until a step's p99 passes
the SLO or its errors pass 1%, then report the knee: the last step within the SLO.

    python loadtests/knee.py [--host http://127.0.0.1:8000] [--start-users 4]
        [--step-users 4] [--step-s 30] [--max-users 128] [--slo-p99-ms 2000]
        [--max-error-rate 0.01] [--out loadtests/results/knee]
        [--prometheus http://127.0.0.1:9090] [--metrics-target 127.0.0.1:8085]

The users are ``loadtests/locustfile.py``'s (a thread each, looping ``runs/wait``, with its
environment variables); ``loadtests/locustfile_knee.py`` steps them and judges each step on
its own requests. Locust runs in its own process, as for ``make loadtest``. Replicas per
deployment come from Ray's metrics through Prometheus (``loadtests/knee_replicas.py``).

Writes ``knee.json`` (every step, the knee, replicas over time), ``knee.png`` and Locust's
log into ``--out`` and prints the table. Exit status: 0 when measured (a knee, or max users
within the SLO), 1 when even the first step was outside the SLO, 2 when it could not run.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
from pydantic import ValidationError

try:
    from loadtests.knee_replicas import ReplicaSource
    from loadtests.knee_report import KneeReport, format_table, write_json, write_png
    from loadtests.knee_steps import Slo, StepLog, StepPlan, find_knee
    from loadtests.loadtest import check_stack, resolve_api_key
except ModuleNotFoundError:  # run as a script (python loadtests/knee.py)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from loadtests.knee_replicas import ReplicaSource
    from loadtests.knee_report import KneeReport, format_table, write_json, write_png
    from loadtests.knee_steps import Slo, StepLog, StepPlan, find_knee
    from loadtests.loadtest import check_stack, resolve_api_key

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = REPO_ROOT / "loadtests" / "locustfile_knee.py"
GRACE_S = 60.0  # beyond the plan's longest run: Locust's start, and its users' last requests


def _parser() -> argparse.ArgumentParser:
    plan, slo = StepPlan(), Slo()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="http://127.0.0.1:8000", help="the app's base URL")
    parser.add_argument("--start-users", type=int, default=plan.start_users)
    parser.add_argument("--step-users", type=int, default=plan.step_users, help="per step")
    parser.add_argument("--step-s", type=float, default=plan.step_s, help="seconds per step")
    parser.add_argument("--max-users", type=int, default=plan.max_users)
    parser.add_argument("--spawn-rate", type=float, default=None, help="default: ~1 s a step")
    parser.add_argument(
        "--slo-p99-ms",
        type=float,
        default=float(os.environ.get("AGENT_LOADTEST_SLO_P99_MS", slo.p99_ms)),
        help="a step's runs/wait p99 above it ends the test (env AGENT_LOADTEST_SLO_P99_MS)",
    )
    parser.add_argument("--max-error-rate", type=float, default=slo.max_error_rate)
    parser.add_argument("--sample-s", type=float, default=5.0, help="the picture's windows")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "loadtests" / "results" / "knee")
    parser.add_argument(
        "--prometheus", default="http://127.0.0.1:9090", help="`make observe`'s, if running"
    )
    parser.add_argument(
        "--metrics-target",
        action="append",
        help="Ray's metrics endpoint(s) host:port for a private Prometheus when none answers "
        "(default 127.0.0.1:$AGENT_METRICS_PORT, else :8085)",
    )
    return parser


def locust_command(args: argparse.Namespace, plan: StepPlan, slo: Slo, log_path: Path) -> list[str]:
    command = [
        *(sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary"),
        *("--host", args.host, "--knee-log", str(log_path)),
        *("--knee-start-users", str(plan.start_users), "--knee-step-users", str(plan.step_users)),
        *("--knee-step-s", str(plan.step_s), "--knee-max-users", str(plan.max_users)),
        *("--knee-slo-p99-ms", str(slo.p99_ms), "--knee-max-error-rate", str(slo.max_error_rate)),
        *("--knee-sample-s", str(args.sample_s)),
    ]
    if plan.spawn_rate is not None:
        command += ["--knee-spawn-rate", str(plan.spawn_rate)]
    return command


def read_log(path: Path) -> StepLog | None:
    try:
        return StepLog.model_validate_json(path.read_text())
    except (OSError, ValidationError):
        return None


def run_locust(
    command: list[str], env: dict[str, str], out_dir: Path, limit_s: float
) -> tuple[int, float]:
    """Locust in the background, a line per finished step. Its exit status (-1: stopped
    here) and the share of one core it used: near 1, the load generator was the limit."""
    log_path, shown, cpu_s = out_dir / "knee-steps.json", 0, 0.0
    with (out_dir / "locust.log").open("wb") as output:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )
        started = time.monotonic()
        deadline = started + limit_s
        try:
            while process.poll() is None and time.monotonic() < deadline:
                time.sleep(1.0)  # a progress line per step is all this loop is for
                try:
                    times = psutil.Process(process.pid).cpu_times()
                    cpu_s = times.user + times.system
                except psutil.Error:  # just ended
                    pass
                log = read_log(log_path)
                for step in log.steps[shown:] if log else []:
                    print(
                        f"  step {step.step}: {step.users} users, {step.runs_per_s:.1f} runs/s, "
                        f"p50 {step.p50_ms or 0:.0f} ms, p99 {step.p99_ms or 0:.0f} ms, "
                        f"errors {step.error_rate:.2%}",
                        flush=True,
                    )
                    shown += 1
        except KeyboardInterrupt:
            # Ctrl-C: the steps finished so far are still reported.
            print("Interrupted: reporting the steps finished so far.", flush=True)
        cpu_share = cpu_s / max(time.monotonic() - started, 1e-9)
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            return -1, cpu_share
        return process.returncode, cpu_share


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    try:
        plan = StepPlan(
            start_users=args.start_users,
            step_users=args.step_users,
            step_s=args.step_s,
            max_users=args.max_users,
            spawn_rate=args.spawn_rate,
        )
        slo = Slo(p99_ms=args.slo_p99_ms, max_error_rate=args.max_error_rate)
    except ValidationError as exc:
        print(exc, file=sys.stderr)
        return 2
    problem = check_stack(args.host)
    if problem is not None:
        print(
            f"Nothing answers at {args.host} ({problem}).\n"
            "Start the stack with `make run` in another terminal, then run this again.",
            file=sys.stderr,
        )
        return 2
    api_key = resolve_api_key(dict(os.environ))
    if api_key is None:
        print("No API key: set AGENT_API_KEY, or start the stack with `make run`.", file=sys.stderr)
        return 2

    out_dir = args.out.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "knee-steps.json"
    log_path.unlink(missing_ok=True)  # never report a previous run's steps
    targets = args.metrics_target or [f"127.0.0.1:{os.environ.get('AGENT_METRICS_PORT', '8085')}"]
    print(
        f"Knee of {args.host}: {plan.start_users} users, +{plan.step_users} every "
        f"{plan.step_s:g} s up to {plan.max_users}, until a step's p99 > {slo.p99_ms:.0f} ms "
        f"or errors > {slo.max_error_rate:.2%} (at most {plan.longest_s / 60:.1f} min)",
        flush=True,
    )
    with ReplicaSource(args.prometheus, targets, out_dir / "prometheus") as source:
        print(f"Replicas: {source.note}", flush=True)
        env = {**os.environ, "AGENT_API_KEY": api_key}
        command = locust_command(args, plan, slo, log_path)
        status, locust_cpu = run_locust(command, env, out_dir, plan.longest_s + GRACE_S)
        log = read_log(log_path)
        replicas = source.fetch(log.started_at, time.time(), args.sample_s) if log else None
    if log is None or replicas is None or not log.steps:
        print(
            f"Locust finished (exit {status}) without a finished step; see {out_dir}/locust.log",
            file=sys.stderr,
        )
        return 2

    knee = find_knee(log.steps, slo)
    load = os.getloadavg()
    report = KneeReport(
        command=shlex.join(["python", "loadtests/knee.py", *argv]),
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        host=args.host,
        load_average=(load[0], load[1], load[2]),
        locust_cpu=locust_cpu,
        log=log,
        knee=knee,
        replicas=replicas,
    )
    write_json(report, out_dir / "knee.json")
    write_png(report, out_dir / "knee.png")
    print(format_table(report))
    print(f"\nWrote {out_dir}/knee.json and {out_dir}/knee.png")
    if status == -1:
        print("Locust was stopped before the shape ended it; the steps above are all it finished.")
    return 0 if knee.knee is not None else 1


if __name__ == "__main__":
    sys.exit(main())
