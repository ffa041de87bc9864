"""Stop the stack a launcher (``make run``, ``agent-runtime serve``) runs: ``make stop``,
``agent-runtime stop``, or ``python -m agent_runtime.cli.stop PID_FILE``.

Only the standard library, so that stopping does not wait for the runtime's imports.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

STOP_WAIT_S = 20.0


def stop(pid_file: Path, wait_s: float = STOP_WAIT_S) -> int:
    """SIGTERM to the launcher that wrote ``pid_file``; "stopped" only once it is gone."""
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        print(f"no running stack (no live {pid_file})")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            print("stopped")
            return 0
        time.sleep(0.1)
    print(
        f"the launcher (pid {pid}) is still stopping after {wait_s:.0f} s: wait, or end it "
        f"with `kill -KILL {pid} && ray stop --force`",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(stop(Path(sys.argv[1])))
