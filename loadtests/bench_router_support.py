"""What ``loadtests/bench_router.py`` needs around the router: the fake provider in a
process of its own, the models config, breakers, percentiles, the prompt every call sends."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from agent_runtime.config.fake_provider_settings import FakeProviderSettings
from agent_runtime.config.models_file import ModelsConfig, ModelSpec, ProviderConfig
from agent_runtime.fake.provider_app import create_fake_provider_app
from agent_runtime.gateway.breakers import BreakerRegistry, Breakers, TransitionHook
from agent_runtime.gateway.shared_breakers import SharedBreakerRegistry

PROMPT = "hello from the router benchmark"


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), interpolating linearly between ranks; 0 if empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def provider_app() -> Any:
    """``uvicorn --factory`` target: the fake provider as the AGENT_FAKE_* variables say."""
    return create_fake_provider_app(FakeProviderSettings())


class Provider:
    """The fake provider in a uvicorn process of its own, on a free port."""

    def __init__(self, latency_ms: float, token: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.token = token
        env = {
            **os.environ,
            "AGENT_FAKE_LATENCY_MS": str(latency_ms),
            # The benchmark changes faults mid-run: the development flag must be on.
            "AGENT_FAKE_CONTROL_ENABLED": "true",
            "AGENT_FAKE_CONTROL_TOKEN": token,
        }
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "loadtests.bench_router_support:provider_app",
        ]
        command += ["--port", str(self.port), "--log-level", "warning", "--no-access-log"]
        self.process = subprocess.Popen(command, env=env, cwd=_root())

    async def ready(self, timeout_s: float = 20.0) -> None:
        async with httpx.AsyncClient() as http:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError("the fake provider exited at start")
                try:
                    if (await http.get(f"{self.url}/models")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError("the fake provider did not start")

    async def set_faults(self, model: str, profile: dict[str, Any] | None) -> None:
        base = self.url.removesuffix("/v1")
        headers = {"Authorization": f"Bearer {self.token}"}
        async with httpx.AsyncClient(headers=headers) as http:
            if profile is None:
                response = await http.delete(f"{base}/control/faults")
            else:
                response = await http.patch(f"{base}/control/faults/{model}", json=profile)
            response.raise_for_status()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def models_config() -> ModelsConfig:
    fake = ProviderConfig(kind="fake")
    return ModelsConfig(
        providers={"fake": fake},
        models={
            name: ModelSpec(provider="fake")
            for name in ("fake-fast", "fake-smart", "fake-fallback")
        },
        aliases={
            "fast": ["fake-fast"],
            "smart": ["fake-smart", "fake-fallback"],
            "fallback": ["fake-fallback"],
        },
    )


def breakers(redis_url: str | None, prefix: str, hook: TransitionHook | None = None) -> Breakers:
    config = models_config().breaker
    if redis_url is None:
        return BreakerRegistry(config.fail_max, config.reset_timeout_s, on_transition=hook)
    return SharedBreakerRegistry.from_url(
        redis_url,
        fail_max=config.fail_max,
        reset_timeout_s=config.reset_timeout_s,
        prefix=prefix,
        on_transition=hook,
    )


@dataclass
class Latency:
    p50_ms: float
    p99_ms: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Latency:
        return cls(round(percentile(values, 50), 3), round(percentile(values, 99), 3), len(values))
