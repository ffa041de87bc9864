"""``make observe``: a Prometheus scraping the local stack's metrics, with the alert rules.

Ray exports every metric (``ray_serve_*`` and the runtime's ``ray_agent_*``) on one
endpoint, ``http://127.0.0.1:<AGENT_METRICS_PORT>/metrics`` (8085 by default, see
``agent_runtime/cli/launch.py``). This module writes a Prometheus config scraping it, with the
rules of ``observability/prometheus/alerts.yml``, and runs Debian's ``prometheus`` on it
in the foreground (its data under ``.agent-data/prometheus``). The end-to-end test uses the
same functions with a short scrape interval.

    python -m observability.prometheus [--metrics-port 8085] [--port 9090]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

HERE = Path(__file__).resolve().parent
ALERT_RULES = HERE / "prometheus" / "alerts.yml"
DASHBOARDS = HERE / "grafana" / "dashboards"
INSTALL_HINT = "apt-get install -y --no-install-recommends prometheus"


def config(
    targets: list[str], *, scrape_interval: str = "5s", rules: list[Path] | None = None
) -> dict[str, Any]:
    """A Prometheus config scraping Ray's metrics endpoint(s) ``host:port``."""
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "rule_files": [str(path) for path in (rules if rules is not None else [ALERT_RULES])],
        "scrape_configs": [
            {
                "job_name": "ray",
                "honor_labels": True,
                "static_configs": [{"targets": targets}],
            }
        ],
    }


def write_config(path: Path, targets: list[str], *, scrape_interval: str = "5s") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config(targets, scrape_interval=scrape_interval)))
    return path


def binary() -> str | None:
    return shutil.which("prometheus")


def command(config_path: Path, data_dir: Path, port: int, host: str = "127.0.0.1") -> list[str]:
    prometheus = binary()
    if prometheus is None:
        raise FileNotFoundError(f"prometheus is not installed; install it with: {INSTALL_HINT}")
    return [
        prometheus,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={data_dir}",
        f"--web.listen-address={host}:{port}",
        "--storage.tsdb.retention.time=7d",
    ]


def start(config_path: Path, data_dir: Path, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """Prometheus in the background (its output in ``log_path``); stop it with :func:`stop`."""
    with open(log_path, "wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            command(config_path, data_dir, port), stdout=out, stderr=subprocess.STDOUT
        )


def wait_ready(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/-/ready", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"Prometheus at {url} not ready within {timeout_s:.0f} s")


def stop(process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> int:
    default_port = int(os.environ.get("AGENT_METRICS_PORT", "8085"))
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--metrics-port", type=int, default=default_port, help="Ray's endpoint")
    parser.add_argument("--port", type=int, default=9090, help="where Prometheus listens")
    parser.add_argument("--data-dir", type=Path, default=Path(".agent-data/prometheus"))
    parser.add_argument("--scrape-interval", default="5s")
    args = parser.parse_args(argv)
    if binary() is None:
        print(f"prometheus is not installed; install it with: {INSTALL_HINT}", file=sys.stderr)
        return 2
    data_dir: Path = args.data_dir.resolve()
    config_path = write_config(
        data_dir / "prometheus.yml",
        [f"127.0.0.1:{args.metrics_port}"],
        scrape_interval=args.scrape_interval,
    )
    print(
        f"Prometheus on http://127.0.0.1:{args.port} scraping 127.0.0.1:{args.metrics_port} "
        f"(config {config_path}, alert rules {ALERT_RULES})\n"
        f"  Grafana: add it as a Prometheus datasource and import {DASHBOARDS}/*.json\n"
        f"  Picture: python -m observability.render --prometheus http://127.0.0.1:{args.port}\n"
        "  Stop:    Ctrl-C",
        flush=True,
    )
    try:
        return subprocess.call(command(config_path, data_dir, args.port))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
