"""``make run`` and ``agent-runtime serve``: load the app (``AGENT_APP_CONFIG``, by default
the ``langgraph.json`` here), start a local Ray cluster and the Serve applications serving
it, print how to use them.

Runs in the foreground until Ctrl-C or SIGTERM (:mod:`agent_runtime.cli.stop`: ``make
stop``, ``agent-runtime stop``), then shuts Serve and Ray down so no Ray process is left
behind.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

import httpx

from agent_runtime.cli import app_check
from agent_runtime.config.app_settings import AppSettings
from agent_runtime.config.builtin_models import fake_models_warning
from agent_runtime.config.models_file import ModelsConfigError
from agent_runtime.config.settings import RuntimeSettings
from agent_runtime.core.errors import Unauthorized
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.tenancy.auth import generate_key, parse_key, verify_key
from agent_runtime.user_app.app_defaults import apply_settings_env
from agent_runtime.user_app.app_store_index import unserved_index_model
from agent_runtime.user_app.langgraph_json import read_langgraph_json

DEV_TENANT = "default"
LOCAL_DRAINING_S = 0.5


async def ensure_dev_key(settings: RuntimeSettings, existing: str | None) -> str:
    """Reuse ``existing`` if the store still knows it, else issue (and return) a new key.

    The store keeps only the key's hash; the plaintext lives in a local file (mode 0600)
    so that ``make loadtest`` and ``make bench`` can use it.
    """
    store = MetadataStore(settings.storage)
    await store.setup()
    try:
        await store.ensure_tenant(DEV_TENANT, "Default tenant (make run)")
        if existing:
            try:
                record = await store.get_key(parse_key(existing))
            except Unauthorized:
                record = None
            if record is not None and not record.revoked and verify_key(existing, record):
                return existing
        raw, record = generate_key(DEV_TENANT, name="make run")
        await store.add_key(record)
        return raw
    finally:
        await store.close()


def load_settings() -> RuntimeSettings | int:
    """The settings to deploy with, or the exit status after saying why there are none.

    The app's graphs load here first: one that cannot stops the start, every problem named.
    """
    config = AppSettings().config
    if app_check.check(config) != 0:
        return app_check.EXIT_INVALID
    # Its thread and item TTLs, where the operator's AGENT_* variables do not say.
    app_config = read_langgraph_json(config).config
    apply_settings_env(app_config)
    try:
        # Reads AGENT_MODELS_FILE (and the keys it names) once: replicas get the result.
        settings = RuntimeSettings.from_env()
    except ModelsConfigError as exc:
        print("The models file cannot be used:", *exc.problems, sep="\n  ", file=sys.stderr)
        return 2
    unserved = unserved_index_model(app_config, settings.models)
    if unserved is not None:
        print(f"error: {config} cannot be served:\n  {unserved}", file=sys.stderr)
        return app_check.EXIT_INVALID
    return settings


def dev_key(settings: RuntimeSettings, key_file: Path) -> str:
    existing = key_file.read_text().strip() if key_file.exists() else None
    raw = asyncio.run(ensure_dev_key(settings, existing))
    if raw != existing:
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_text(raw + "\n")
        key_file.chmod(0o600)
    return raw


def models_summary(settings: RuntimeSettings) -> str:
    """Where the router's config came from and its aliases (never a key)."""
    config = settings.models
    source = str(settings.provider.models_file or "AGENT_PROVIDER_* settings")
    aliases = ", ".join(
        f"{alias} -> {' > '.join(chain)}" for alias, chain in config.aliases.items()
    )
    return f"{source} ({aliases or 'no aliases'})"


def wait_until_ok(url: str, timeout_s: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        try:
            if httpx.get(f"{url}/ok", timeout=1.0).status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the runtime did not answer {url}/ok within {timeout_s:.0f} s")


def deploy(settings: RuntimeSettings) -> None:
    # Serve's throughput mode (user code on the replica's own loop, gRPC between
    # deployments) cut the per-run overhead from ~52 to ~40 ms here (docs/benchmarks.md).
    # It must be set before Ray starts; an explicit RAY_SERVE_THROUGHPUT_OPTIMIZED=0 wins.
    os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
    # Replicas that take HTTP directly wait 30 s when stopped, for load balancers to
    # deregister them; one local node has none, and `make stop` took 30 s for it.
    # Requests still in flight are drained all the same.
    os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", str(LOCAL_DRAINING_S))
    import ray
    from ray import serve

    from agent_runtime.deployments.app import run_targets

    ray.init(
        num_cpus=settings.serve.local_num_cpus,
        include_dashboard=False,
        namespace="agent-runtime",
        log_to_driver=False,
        _metrics_export_port=settings.serve.metrics_port,
    )
    serve.start(http_options={"host": settings.serve.http_host, "port": settings.serve.http_port})
    serve.run_many(run_targets(settings))


def shutdown() -> None:
    import ray
    from ray import serve

    if ray.is_initialized():
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pid-file", type=Path, default=None)
    parser.add_argument("--stop-hint", default="make stop", help="how to stop, as printed")
    args = parser.parse_args(argv)
    started = time.monotonic()
    settings = load_settings()
    if isinstance(settings, int):
        return settings
    key_file = settings.storage.data_dir / "dev-api-key"
    api_key = dev_key(settings, key_file)
    pid_file: Path | None = args.pid_file
    if pid_file is not None:
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(str(os.getpid()))

    stopping = threading.Event()
    stop_started = time.monotonic()  # reset when a stop is asked for

    def stop(_signum: int, frame: FrameType | None) -> None:
        stopping.set()

    def abort_start(_signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # unwinds through the finally below, which stops Ray

    signal.signal(signal.SIGTERM, abort_start)

    url = f"http://{settings.serve.http_host}:{settings.serve.http_port}"
    try:
        print("Starting Ray and the Serve applications (about 10-20 s)...", flush=True)
        deploy(settings)
        # After ray.init: Ray's driver installs its own SIGTERM handler, which aborts.
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        wait_until_ok(url, timeout_s=120)
        print(
            f"\nAgent runtime ready in {time.monotonic() - started:.1f} s\n"
            f"  URL:      {url}\n"
            f"  API key:  {api_key}   (also in {key_file})\n"
            f"  Try:      curl -H 'x-api-key: {api_key}' {url}/health\n"
            f"  Metrics:  http://127.0.0.1:{settings.serve.metrics_port}/metrics\n"
            f"  Models:   {models_summary(settings)}\n"
            f"  App:      {settings.app.config}\n"
            f"  Stop:     Ctrl-C here, or `{args.stop_hint}` from another terminal\n",
            flush=True,
        )
        warning = fake_models_warning(settings.models)
        if warning is not None:
            print(f"WARNING: {warning}\n", file=sys.stderr, flush=True)
        stopping.wait()
        print("Stopping Serve and Ray...", flush=True)
        stop_started = time.monotonic()
    except KeyboardInterrupt:
        print("Interrupted while starting; stopping Serve and Ray...", flush=True)
    finally:
        shutdown()
        if pid_file is not None:
            pid_file.unlink(missing_ok=True)
    print(f"Stopped in {time.monotonic() - stop_started:.1f} s.", flush=True)
    sys.stderr.flush()
    # Ray and Serve are down; the interpreter's exit would still spend ~1.5 s in Ray's
    # finalizers, which have nothing left to do (`make stop` took 5.1 s with them, 3.7 without).
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
