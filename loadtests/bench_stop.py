"""How long the local stack takes to start and to stop, as `make run` / `make stop` do it.

    python loadtests/bench_stop.py [--rounds 3] [--runs 5]

Each round starts the launcher (``python -m agent_runtime.cli.launch``, what ``make run``
runs) on its default port, waits for its "ready" line, makes ``--runs`` runs through the
API, then times ``make stop``'s command (``python -m agent_runtime.cli.stop``) until it
returns, which is when the launcher has exited. Prints each round and the medians; the
target for stopping is under 5 s. Needs the port free (no other stack running).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PID_FILE = ROOT / ".agent-data" / "launcher.pid"
KEY_FILE = ROOT / ".agent-data" / "dev-api-key"
URL = "http://127.0.0.1:8000"
READY_TIMEOUT_S = 180.0
STOP_TARGET_S = 5.0


def start() -> tuple[subprocess.Popen[str], float]:
    """The launcher, and its own "ready in" figure."""
    launcher = subprocess.Popen(
        [sys.executable, "-m", "agent_runtime.cli.launch", "--pid-file", str(PID_FILE)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert launcher.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT_S
    for line in launcher.stdout:
        if "ready in" in line:
            # Reaped as soon as it exits (a zombie would still look alive to `stop`), as a
            # launcher started from another terminal is.
            threading.Thread(target=launcher.wait, daemon=True).start()
            return launcher, float(line.split("ready in")[1].split()[0])
        if time.monotonic() > deadline or launcher.poll() is not None:
            break
    launcher.kill()
    raise SystemExit("the launcher did not get ready; is another stack on port 8000?")


def runs(count: int) -> None:
    key = KEY_FILE.read_text().strip()
    body = {"assistant_id": "react", "input": {"messages": [{"role": "user", "content": "6*7"}]}}
    with httpx.Client(base_url=URL, headers={"x-api-key": key}, timeout=30.0) as client:
        for _ in range(count):
            client.post("/runs/wait", json=body).raise_for_status()


def stop(launcher: subprocess.Popen[str]) -> float:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "agent_runtime.cli.stop", str(PID_FILE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    took = time.monotonic() - started
    if done.returncode != 0:
        launcher.kill()
        assert launcher.stdout is not None
        raise SystemExit(f"stop failed: {done.stdout}{done.stderr}\n{launcher.stdout.read()}")
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    ready: list[float] = []
    stopped: list[float] = []
    for round_ in range(1, args.rounds + 1):
        launcher, ready_s = start()
        runs(args.runs)
        stop_s = stop(launcher)
        launcher.wait(timeout=5)
        ready.append(ready_s)
        stopped.append(stop_s)
        print(f"round {round_}: ready in {ready_s:.1f} s, stopped in {stop_s:.2f} s", flush=True)
    median_stop = statistics.median(stopped)
    verdict = "met" if median_stop < STOP_TARGET_S else "NOT met"
    print(f"median: ready in {statistics.median(ready):.1f} s, stopped in {median_stop:.2f} s")
    print(f"stop target (< {STOP_TARGET_S:.0f} s): {verdict}; max {max(stopped):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
