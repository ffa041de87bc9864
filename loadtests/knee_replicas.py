"""Replicas per deployment over a knee run, from Ray's metrics through Prometheus.

Serve's controller exports ``ray_serve_deployment_replica_healthy`` (one series per replica,
1 while healthy) on Ray's metrics endpoint; summed per deployment it is the replica count.
The Prometheus is the one ``make observe`` runs (``--prometheus``) when it answers; else,
when Ray's endpoint answers and ``prometheus`` is installed, a private one scraping it for the
run's length (as ``tests/e2e/test_observability.py`` does); else there is nothing to read (a
server without Ray, like the baseline) and the report says so instead of a count.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import httpx
from pydantic import BaseModel

from observability import prometheus

# Ray prefixes its metrics with ray_; the bare name is what Serve registers.
QUERY = 'sum by (deployment) ({__name__=~"(ray_)?serve_deployment_replica_healthy"})'
SCRAPE_INTERVAL = "2s"


class Replicas(BaseModel):
    """``series``: deployment -> [(seconds since the run's start, replicas)]; ``note``: the
    source, or why there is none."""

    note: str
    series: dict[str, list[tuple[float, float]]] = {}


def answers(url: str, timeout_s: float = 2.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


def parse_range(body: object, origin: float) -> dict[str, list[tuple[float, float]]]:
    """A ``query_range`` answer as deployment -> [(seconds since ``origin``, value)]."""
    if not isinstance(body, dict) or body.get("status") != "success":
        raise ValueError(f"Prometheus answered {str(body)[:200]}")
    series: dict[str, list[tuple[float, float]]] = {}
    for result in body["data"]["result"]:
        name = result["metric"].get("deployment", "?")
        series[name] = [(float(t) - origin, float(v)) for t, v in result["values"]]
    return series


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ReplicaSource:
    """A Prometheus for the run's length: the given one, a private one, or none (with why).

    Use as a context manager around the load, then :meth:`fetch` the run's window.
    """

    def __init__(self, prometheus_url: str, metrics_targets: list[str], work_dir: Path) -> None:
        self.prometheus_url = prometheus_url.rstrip("/")
        self.metrics_targets = metrics_targets
        self.work_dir = work_dir
        self.url: str | None = None
        self.note = ""
        self._private: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ReplicaSource:
        if answers(f"{self.prometheus_url}/-/ready"):
            self.url, self.note = self.prometheus_url, f"Prometheus at {self.prometheus_url}"
            return self
        live = [t for t in self.metrics_targets if answers(f"http://{t}/metrics", 5.0)]
        if not live:
            self.note = (
                f"no Prometheus at {self.prometheus_url} and no Ray metrics at "
                f"{', '.join(self.metrics_targets)}: replicas not recorded"
            )
            return self
        if prometheus.binary() is None:
            self.note = f"Ray metrics at {', '.join(live)} but no prometheus installed"
            return self
        shutil.rmtree(self.work_dir / "data", ignore_errors=True)  # a previous run's samples
        self.work_dir.mkdir(parents=True, exist_ok=True)
        config = prometheus.write_config(
            self.work_dir / "prometheus.yml", live, scrape_interval=SCRAPE_INTERVAL
        )
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        log = self.work_dir / "prometheus.log"
        self._private = prometheus.start(config, self.work_dir / "data", port, log)
        try:
            prometheus.wait_ready(url)
        except TimeoutError:
            self.note = f"a private Prometheus did not start (see {log}): replicas not recorded"
            return self
        self.url, self.note = url, f"a private Prometheus scraping {', '.join(live)}"
        return self

    def __exit__(self, *_: object) -> None:
        if self._private is not None:
            prometheus.stop(self._private)

    def fetch(self, start: float, end: float, step_s: float) -> Replicas:
        """Replicas per deployment between Unix times ``start`` and ``end``."""
        if self.url is None:
            return Replicas(note=self.note)
        try:
            response = httpx.get(
                f"{self.url}/api/v1/query_range",
                params={"query": QUERY, "start": start, "end": end, "step": step_s},
                timeout=30.0,
            )
            series = parse_range(response.json(), start)
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            return Replicas(note=f"{self.note}: query failed ({type(exc).__name__}: {exc})")
        if not series:
            return Replicas(note=f"{self.note}: no serve_deployment_replica_healthy series")
        return Replicas(note=self.note, series=series)
