"""The full chaos suite (issue 13; ``make chaos``, not part of ``make test``): each fault
injected while users loop ``runs/wait`` on the chaos app's ``model_steps`` graph (a model
call in its middle step), and judged by what the runtime promises: an accepted run ends,
exactly once, or says why.

The chaos app runs beside the main stack with its Redis and its primary model provider
reached through TCP proxies the test cuts or stalls (:class:`~tests.tcp_proxy.TcpProxy`);
its ``fast`` alias is ``fake-fast`` on that provider (the stack's fake provider app) then
``fake-fallback`` on the built-in fake, so a provider fault has somewhere to fail over.

Each test prints one row of the table in docs/reliability.md: requests answered (by
status), runs acknowledged, succeeded, failed with a clear error, lost (a run of the
test's threads that never ended: must be 0), run twice (a thread with more ``c`` steps in
its state than runs that succeeded on it: must be 0) and seconds to recover.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
import ray
from pydantic import SecretStr
from redis.asyncio import Redis

from agent_runtime.config.models_file import (
    BreakerPolicy,
    ModelsConfig,
    ModelSpec,
    ProviderConfig,
    Timeouts,
)
from agent_runtime.config.settings import RuntimeSettings
from agent_runtime.db.metadata import MetadataStore
from tests.e2e.chaos_support import (
    TERMINAL,
    ChaosApp,
    Load,
    chaos_app,
    healths,
    logs,
    replicas,
    thread_runs,
    user,
)
from tests.e2e.conftest import Stack
from tests.e2e.support import Api, eventually, open_api
from tests.tcp_proxy import TcpProxy, proxied_url

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]

NAME = "app-chaos-full"
GRAPH = "model_steps"
USERS = 4
STEADY_S = 3.0  # load before each fault
FAULT_S = 6.0  # how long an outage or a hang lasts
PROVIDER_TIMEOUT_S = 2.0
# Breakers that open and retry quickly, so that one test sees them open and close again.
BREAKER = BreakerPolicy(fail_max=3, reset_timeout_s=3.0)
FLAKY = "fake-fast"  # the model on the proxied provider; its breaker is the one watched


@dataclass
class Full:
    app: ChaosApp
    redis: TcpProxy
    provider: TcpProxy
    redis_url: str  # Redis itself, not through the proxy

    @property
    def url(self) -> str:
        return self.app.url


def models(provider_url: str) -> ModelsConfig:
    timeouts = Timeouts(
        connect_s=1.0,
        request_s=PROVIDER_TIMEOUT_S,
        first_token_s=PROVIDER_TIMEOUT_S,
        idle_s=PROVIDER_TIMEOUT_S,
    )
    price = {"input_per_million_usd": "0.15", "output_per_million_usd": "0.60"}
    return ModelsConfig(
        providers={
            "flaky": ProviderConfig(kind="openai", base_url=provider_url, timeouts=timeouts),
            "fake": ProviderConfig(kind="fake"),
        },
        models={
            FLAKY: ModelSpec.model_validate({"provider": "flaky", **price}),
            "fake-fallback": ModelSpec.model_validate({"provider": "fake", **price}),
        },
        aliases={"fast": [FLAKY, "fake-fallback"]},
        breaker=BREAKER,
    )


@pytest.fixture(scope="module")
def full(
    stack: Stack,
    stack_settings: RuntimeSettings,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Full]:
    redis = TcpProxy.to_url(redis_url, default_port=6379)
    provider = TcpProxy.to_url(stack.url)
    provider_url = proxied_url(f"{stack.url}/fake-provider/v1", provider)
    proxied_redis = SecretStr(proxied_url(redis_url, redis))
    limits = stack_settings.limits.model_copy(update={"redis_url": proxied_redis})
    serve_settings = stack_settings.serve.model_copy(update={"health_dependency_grace_s": 1.0})
    settings = stack_settings.model_copy(
        update={"limits": limits, "serve": serve_settings, "models": models(provider_url)}
    )
    try:
        folder = tmp_path_factory.mktemp("chaos-full")
        with chaos_app(NAME, stack.url, settings, folder) as app:
            yield Full(app, redis, provider, redis_url)
    finally:
        redis.close()
        provider.close()


@dataclass
class Users:
    api: Api
    threads: list[str]
    load: Load
    tasks: list[asyncio.Task[None]]


@pytest.fixture
async def users(full: Full, store: MetadataStore) -> AsyncIterator[Users]:
    api = await open_api(full.url, store)
    threads = [(await api.sdk.threads.create())["thread_id"] for _ in range(USERS)]
    load = Load()
    tasks = [asyncio.create_task(user(api, t, load, GRAPH)) for t in threads]
    await eventually(
        lambda: asyncio.sleep(0, result=len(load.acknowledged)), lambda n: n >= USERS, timeout_s=60
    )
    try:
        yield Users(api, threads, load, tasks)
    finally:
        load.stop.set()
        await asyncio.gather(*tasks)
        await api.aclose()


async def served_after(load: Load, at: float, count: int = USERS, timeout_s: float = 90) -> None:
    """Wait until ``count`` runs that started after ``at`` were acknowledged with success."""

    def successes() -> int:
        return sum(1 for started, status, _ in load.answers if status == 200 and started >= at)

    await eventually(
        lambda: asyncio.sleep(0, result=successes()), lambda n: n >= count, timeout_s=timeout_s
    )


async def verdict(users: Users, fault: str, at: float, recovered_at: float | None) -> Counter[str]:
    """Stop the load, wait for every run of the test's threads to end, and check the
    promise: none lost, none run twice. Prints the fault's row; returns the statuses seen."""
    users.load.stop.set()
    await asyncio.gather(*users.tasks)
    api, load = users.api, users.load

    async def runs() -> list[dict[str, str]]:
        found = []
        for thread_id in users.threads:
            found += await thread_runs(api, thread_id)
        return found

    # Lost: a run still not ended 60 s after the load stopped (leases are 10 s).
    every = await eventually(runs, lambda rs: {r["status"] for r in rs} <= TERMINAL, timeout_s=60)
    succeeded = Counter(r["thread_id"] for r in every if r["status"] == "success")
    twice = [
        thread_id
        for thread_id, log in zip(users.threads, await logs(api, users.threads), strict=True)
        if log.count("c") > succeeded[thread_id]
    ]
    assert not twice, f"runs done twice on {twice}"
    statuses = Counter(str(status) for _, status, _ in load.since(at))
    failed = {
        r["run_id"]: load.errors.get(r["run_id"], "?") for r in every if r["status"] != "success"
    }
    times = [s for s, status, _ in load.since(at) if status == 200]
    recovery = f"{recovered_at - at:.1f} s" if recovered_at is not None else "-"
    errors = sorted(set(failed.values()))
    print(
        f"\n| {fault} | {len(load.answers)} requests, after the fault: {dict(statuses)} "
        f"| {len(every)} | {sum(succeeded.values())} | {len(failed)} {errors} "
        f"| 0 | 0 | {recovery} | {len(times)} ok after |"
    )
    return statuses


def proxies() -> list[str]:
    return [
        actor["name"]
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["name"].startswith("SERVE_PROXY_ACTOR")
    ]


async def kill(actor_names: list[str]) -> None:
    assert actor_names, "nothing to kill"
    for name in actor_names:
        ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)


def actor_ids(names: list[str]) -> set[str]:
    """The actors' ids: a restarted proxy keeps its name (one per node), not its id."""
    return {ray.get_actor(name, namespace="serve")._actor_id.hex() for name in names}


def replaced(before: set[str], now: Callable[[], list[str]]) -> None:
    """The killed actors are gone and others serve in their place."""
    after = actor_ids(now())
    assert after and not after & before, (before, after)
    print(f"replaced: {sorted(before)} -> {sorted(after)}")


async def under_fault(users: Users, inject: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    """Steady load, then the fault; returns when it was injected and when service was back
    (the first request started after it that succeeded)."""
    await asyncio.sleep(STEADY_S)  # steady load before the fault, as the suite's definition
    at = time.monotonic()
    await inject()
    await served_after(users.load, at)
    back = users.load.first_success_after(at)
    assert back is not None
    return at, back


async def test_router_replica_killed(users: Users) -> None:
    killed = replicas(NAME, "ModelRouter")
    ids = actor_ids(killed)
    at, back = await under_fault(users, lambda: kill(killed))
    statuses = await verdict(users, "router replica killed (`ray.kill`)", at, back)
    assert set(statuses) <= {"200", "409", "503"}, statuses
    replaced(ids, lambda: replicas(NAME, "ModelRouter"))


async def test_ingress_replica_killed(users: Users) -> None:
    killed = replicas(NAME, "Ingress")
    ids = actor_ids(killed)
    at, back = await under_fault(users, lambda: kill(killed))
    statuses = await verdict(users, "ingress replica killed (`ray.kill`)", at, back)
    # Requests in flight on the killed replica may break (the proxy answers 500, or the
    # connection drops); nothing else does.
    assert set(statuses) <= {"200", "409", "500", "502", "503", "0"}, statuses
    replaced(ids, lambda: replicas(NAME, "Ingress"))


async def test_rolling_redeploy(full: Full, users: Users) -> None:
    deployments = ("Ingress", "Orchestrator", "ModelRouter")
    before = {d: actor_ids(replicas(NAME, d)) for d in deployments}
    # A changed config (any setting): every deployment gets a new version.
    changed = full.app.settings.model_copy(deep=True)
    changed.serve.health_probe_timeout_s += 1

    async def redeploy() -> None:
        await asyncio.to_thread(full.app.deploy, changed)

    at, back = await under_fault(users, redeploy)
    statuses = await verdict(users, "rolling redeploy (`serve.run` of a changed config)", at, back)
    assert set(statuses) == {"200"}, statuses  # 0 failed requests
    for deployment, ids in before.items():
        replaced(ids, lambda d=deployment: replicas(NAME, d))


async def test_redis_outage(full: Full, users: Users) -> None:
    async def outage() -> None:
        full.redis.down()
        found = await eventually(
            lambda: healths(NAME), lambda h: any("redis unreachable" in x for x in h), timeout_s=10
        )
        print(f"\nhealth checks while Redis is away: {found}")
        await asyncio.sleep(FAULT_S)  # the outage itself: Redis stays away this long
        full.redis.up()

    at, back = await under_fault(users, outage)
    statuses = await verdict(users, f"Redis unreachable for {FAULT_S:g} s", at, back)
    # Keys still authenticate (from the database); limits follow their failure mode
    # (fail_open here: served), breakers fall back to each replica's own state.
    assert set(statuses) <= {"200", "503"}, statuses
    assert await healths(NAME) == ["ok"] * 3


async def test_provider_hangs_then_goes_down(full: Full, users: Users) -> None:
    async def faults() -> None:
        full.provider.hang()
        await asyncio.sleep(FAULT_S)  # the provider hangs this long, then refuses connections
        full.provider.down()
        await asyncio.sleep(FAULT_S)
        full.provider.up()

    at, back = await under_fault(users, faults)
    statuses = await verdict(
        users, f"provider hanging {FAULT_S:g} s, then down {FAULT_S:g} s", at, back
    )
    assert set(statuses) == {"200"}, statuses  # every run failed over to the fallback
    durations = users.load.durations_since(at)
    p50, p99 = statistics.median(durations), statistics.quantiles(durations, n=100)[98]
    print(
        f"runs/wait from the fault on: p50 {p50:.2f} s, p99 {p99:.2f} s "
        f"(provider timeout {PROVIDER_TIMEOUT_S:g} s, three 0.4 s steps)"
    )
    # Bounded by the provider's timeout (one try, then the fallback), not by the hang.
    assert p99 <= PROVIDER_TIMEOUT_S + 3.0, p99


BREAKER_STATES = {0.0: "closed", 1.0: "half-open", 2.0: "open"}


async def router_breaker(metrics_url: str, model: str) -> str:
    """The state of ``model``'s breaker as the chaos app's router replica reports it in
    ``agent_breaker_state`` (its copy of the shared state, or while Redis is away its own):
    what an operator's dashboard shows."""
    async with httpx.AsyncClient(timeout=5.0) as client:
        text = (await client.get(metrics_url)).text
    for line in text.splitlines():
        if line.startswith("ray_agent_breaker_state{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.rindex("}")]))
            if labels.get("application") == NAME and labels.get("model") == model:
                return BREAKER_STATES.get(float(line.rsplit(" ", 1)[1]), "unknown")
    return "closed"  # not reported yet: no call of the model has changed it


async def shared_breaker(redis_url: str, model: str) -> str:
    """The state of ``model``'s breaker in Redis (absent: closed), read past the proxy."""
    redis = Redis.from_url(redis_url, socket_timeout=5)
    try:
        state = await redis.hget(f"agent:breaker:{model}", "state")
    finally:
        await redis.aclose()
    return state.decode() if state is not None else "closed"


async def test_breakers_through_a_redis_outage(stack: Stack, full: Full, users: Users) -> None:
    """Breakers degrade to per-replica state while Redis is away (the provider failing at
    the same time), and are shared again once it is back."""
    metrics = f"http://127.0.0.1:{stack.settings.serve.metrics_port}/metrics"
    await eventually(lambda: router_breaker(metrics, FLAKY), lambda s: s == "closed", timeout_s=30)
    seen: dict[str, str] = {}

    async def faults() -> None:
        full.redis.down()
        await eventually(
            lambda: healths(NAME), lambda h: any("redis unreachable" in x for x in h), timeout_s=10
        )
        full.provider.down()
        # Opened on this replica's own count; Redis never heard of it.
        seen["local"] = await eventually(
            lambda: router_breaker(metrics, FLAKY), lambda s: s == "open", timeout_s=30
        )
        seen["shared while away"] = await shared_breaker(full.redis_url, FLAKY)
        full.provider.up()
        full.redis.up()
        # Back on the shared state; the provider answers, so it closes (or stays closed).
        seen["after"] = await eventually(
            lambda: router_breaker(metrics, FLAKY), lambda s: s == "closed", timeout_s=30
        )
        # Shared again: the next failures open it in Redis, for every replica...
        full.provider.down()
        seen["shared"] = await eventually(
            lambda: shared_breaker(full.redis_url, FLAKY), lambda s: s == "open", timeout_s=30
        )
        full.provider.up()
        # ...and its trial after the reset timeout closes it there.
        seen["recovered"] = await eventually(
            lambda: shared_breaker(full.redis_url, FLAKY),
            lambda s: s == "closed",
            timeout_s=BREAKER.reset_timeout_s + 30,
        )

    at, back = await under_fault(users, faults)
    statuses = await verdict(
        users, "Redis unreachable and the provider down, then the provider down alone", at, back
    )
    print(f"breaker of {FLAKY}: {seen}")
    assert seen["shared while away"] != "open", seen  # degraded: not written to Redis
    assert set(statuses) <= {"200", "503"}, statuses  # runs failed over to the fallback
    assert await healths(NAME) == ["ok"] * 3


async def test_http_proxy_killed(users: Users) -> None:
    # Last: every app's HTTP goes through this proxy, the main stack's fake provider too,
    # so breakers elsewhere may stay open for a while after it.
    killed = proxies()
    ids = actor_ids(killed)
    at, back = await under_fault(users, lambda: kill(killed))
    statuses = await verdict(users, "Serve HTTP proxy killed (`ray.kill`)", at, back)
    assert set(statuses) <= {"200", "409", "500", "502", "503", "0"}, statuses
    replaced(ids, proxies)
