"""``make bench``'s processes: starting and stopping what it runs (the stack, the fake
provider, the baseline), finding the stack's processes, and measuring their memory and CPU.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import httpx
import psutil

from loadtests.bench_figures import IdleMemory, Machine

REPO_ROOT = Path(__file__).resolve().parents[1]
POLL_S = 0.05
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0
GIB = 1024**3


class StartFailed(RuntimeError):
    """A process did not come up (or no run succeeded); the message says why."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _kill(proc: psutil.Process) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        proc.kill()


class Child:
    """A process this script started, output in a log file, stopped with its descendants."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log: Path) -> None:
        self.name, self.log = name, log
        with log.open("wb") as out:
            # Its own session: Ctrl-C reaches only this script, which stops it in order.
            self.proc = subprocess.Popen(
                argv,
                cwd=REPO_ROOT,
                env=dict(env),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @classmethod
    def module(cls, name: str, work: Path, env: Mapping[str, str], *argv: str) -> Child:
        """``python -m <argv>`` from the repository root, logging to ``work/<name>.log``."""
        log = work / f"{name.replace(' ', '-')}.log"
        return cls(name, [sys.executable, "-m", *argv], env, log)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self, during: str) -> None:
        """Fail the benchmark if this process died: its figures would be about errors."""
        if self.proc.poll() is not None:
            raise StartFailed(
                f"{self.name} exited ({self.proc.returncode}) during {during}; its output:\n"
                + self.tail()
            )

    def wait_ready(self, url: str, timeout_s: float = START_TIMEOUT_S) -> None:
        """Return once ``url`` answers 200, polling every 50 ms."""
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    code = self.proc.returncode
                    raise StartFailed(f"{self.name} exited ({code}); its output:\n{self.tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(url).status_code == 200:
                        return
                time.sleep(POLL_S)
        raise StartFailed(f"{self.name}: no 200 from {url} in {timeout_s:.0f} s:\n{self.tail()}")

    def stop(self) -> None:
        """SIGTERM, wait; past the timeout SIGKILL it and every process under it."""
        if self.proc.poll() is not None:
            return
        try:
            descendants = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            descendants = []
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            print(f"  {self.name} did not stop in {STOP_TIMEOUT_S:.0f} s; killing its tree")
            self.proc.kill()
            self.proc.wait(10)
        for proc in psutil.wait_procs(descendants, timeout=10)[1]:
            _kill(proc)


def processes_with(marker: str) -> list[psutil.Process]:
    """Processes whose command line mentions ``marker`` (this run's Ray temp dir)."""
    return [
        proc
        for proc in psutil.process_iter(["cmdline"])
        if any(marker in arg for arg in proc.info.get("cmdline") or [])
    ]


def sweep(marker: str) -> int:
    """Stop this run's Ray processes that outlived the launcher; how many there were."""
    left = processes_with(marker)
    for proc in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    for proc in psutil.wait_procs(left, timeout=10)[1]:
        _kill(proc)
    return len(left)


def stack_processes(launcher_pid: int, marker: str) -> tuple[list[psutil.Process], int]:
    """The launcher, its descendants, and any process of this run's Ray session outside them."""
    root = psutil.Process(launcher_pid)
    tree = [root, *root.children(recursive=True)]
    pids = {proc.pid for proc in tree}
    outside = [proc for proc in processes_with(marker) if proc.pid not in pids]
    return tree + outside, len(outside)


def process_kind(proc: psutil.Process, launcher_pid: int) -> str:
    """A readable name: ``ray::ServeReplica:...``, ``raylet``, ``dashboard/agent`` ..."""
    if proc.pid == launcher_pid:
        return "launcher"
    cmdline = proc.cmdline() or [proc.name()]
    if cmdline[0].startswith("ray::"):
        # The title names the running method too ("ray::ServeController.listen_for_change").
        return cmdline[0].split()[0].split(".")[0]
    script = next((Path(arg) for arg in cmdline[1:3] if arg.endswith(".py")), None)
    return f"{script.parent.name}/{script.stem}" if script else Path(cmdline[0]).name


def measure_memory(launcher_pid: int, marker: str, idle_cpu_pct: float) -> IdleMemory:
    procs, outside = stack_processes(launcher_pid, marker)
    rss, pss, by_kind, counted = 0.0, 0.0, dict[str, float](), 0
    for proc in procs:
        try:
            info, kind = proc.memory_full_info(), process_kind(proc, launcher_pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        counted += 1
        rss += info.rss
        pss += getattr(info, "pss", 0)  # Linux only; then the same as USS + shared share
        by_kind[kind] = by_kind.get(kind, 0.0) + info.rss / 2**20
    return IdleMemory(
        rss_gib=rss / GIB,
        pss_gib=pss / GIB if pss else None,
        processes=counted,
        outside_launcher_tree=outside,
        idle_cpu_pct=idle_cpu_pct,
        rss_mib_by_kind=by_kind,
    )


ProcessGroup = Callable[[], Sequence[psutil.Process]]


def cpu_by_pid(procs: Iterable[psutil.Process]) -> dict[int, float]:
    """CPU seconds each process used so far (with its exited children)."""
    used: dict[int, float] = {}
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            times = proc.cpu_times()
            used[proc.pid] = times.user + times.system + times.children_user + times.children_system
    return used


class CpuMeter:
    """CPU used by groups of processes between ``start`` and ``stop``, in % of one core.

    A group is listed again at ``stop``, so a replica started meanwhile is counted too.
    """

    def __init__(self, groups: Mapping[str, ProcessGroup]) -> None:
        self._groups = groups
        self._base: dict[str, dict[int, float]] = {}
        self._started = 0.0
        # How many processes each group had at start and at stop (replicas come and go).
        self.processes: dict[str, tuple[int, int]] = {}

    def start(self) -> None:
        self._base = {name: cpu_by_pid(group()) for name, group in self._groups.items()}
        self._started = time.perf_counter()
        psutil.cpu_percent(interval=None)

    def stop(self) -> dict[str, float]:
        """Each group's % of one core; ``machine``: % of all cores busy; ``other``: the rest."""
        elapsed = time.perf_counter() - self._started
        used = {}
        for name, group in self._groups.items():
            base = self._base[name]
            now = cpu_by_pid(group())
            self.processes[name] = (len(base), len(now))
            seconds = sum(cpu - base.get(pid, 0.0) for pid, cpu in now.items())
            used[name] = seconds / elapsed * 100
        machine_pct = psutil.cpu_percent(interval=None)
        other = max(0.0, machine_pct * (os.cpu_count() or 1) - sum(used.values()))
        return {**used, "machine": machine_pct, "other": other}


def machine(marker: str) -> Machine:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    foreign = [
        proc
        for proc in psutil.process_iter(["name", "cmdline"])
        if proc.info.get("name") == "raylet"
        and not any(marker in arg for arg in proc.info.get("cmdline") or [])
    ]
    return Machine(
        cpus=os.cpu_count() or 1,
        ram_gib=psutil.virtual_memory().total / GIB,
        cpu_model=model,
        python=platform.python_version(),
        ray=importlib.metadata.version("ray"),
        foreign_ray_clusters=len(foreign),
        load_average=os.getloadavg()[0],
    )
