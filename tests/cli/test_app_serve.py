"""``agent-runtime serve`` refuses an app that cannot load before starting anything, and
``agent-runtime stop`` ends the launcher its folder's pid file names, or says it could
not. Serving itself runs in tests/e2e/test_user_app_e2e.py (one Ray cluster per session)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

from agent_runtime.cli import stop

# Exits on SIGTERM (Python's default); the other ignores it, as a stuck launcher would.
# Each says "ready" once its handler is in place.
OBEDIENT = "import time\nprint('ready', flush=True)\nwhile True: time.sleep(0.05)"
STUCK = "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + OBEDIENT


def cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent_runtime.cli.admin", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_serve_names_what_is_wrong_and_starts_nothing(tmp_path: Path) -> None:
    (tmp_path / "langgraph.json").write_text(json.dumps({"graphs": {"a": "./a.py:graph"}}))
    (tmp_path / "a.py").write_text("raise RuntimeError('broken on import')\n")
    done = cli(tmp_path, "serve", "--port", "1")
    assert done.returncode == 2
    assert "graphs.a" in done.stderr and "broken on import" in done.stderr
    assert "Starting Ray" not in done.stdout
    assert not (tmp_path / ".agent-data").exists()


def test_serve_without_a_config_says_where_it_looked(tmp_path: Path) -> None:
    done = cli(tmp_path, "serve")
    assert done.returncode == 2
    assert "langgraph.json not found" in done.stderr and "-c PATH" in done.stderr


def test_stop_without_a_stack_says_so(tmp_path: Path) -> None:
    done = cli(tmp_path, "stop")
    assert done.returncode == 0
    assert "no running stack" in done.stdout


def start(tmp_path: Path, program: str) -> tuple[subprocess.Popen[str], Path]:
    """A stand-in launcher, with its pid where ``stop`` looks for it."""
    process = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    # Reaped at once when it ends, as a launcher (no child of ``stop``) would be: a zombie
    # still answers kill(pid, 0).
    threading.Thread(target=process.wait, daemon=True).start()
    pid_file = tmp_path / ".agent-data" / "launcher.pid"
    pid_file.parent.mkdir()
    pid_file.write_text(str(process.pid))
    return process, pid_file


def test_stop_ends_the_launcher_of_this_folder(tmp_path: Path) -> None:
    process, _ = start(tmp_path, OBEDIENT)
    done = cli(tmp_path, "stop")
    assert (done.returncode, done.stdout.strip()) == (0, "stopped")
    assert process.wait(timeout=5) != 0


def test_stop_tells_the_truth_when_the_launcher_does_not_end(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    process, pid_file = start(tmp_path, STUCK)
    try:
        assert stop.stop(pid_file, wait_s=0.5) == 1
        assert f"pid {process.pid}) is still stopping" in capsys.readouterr().err
        assert process.poll() is None
    finally:
        process.kill()
        process.wait(timeout=5)
