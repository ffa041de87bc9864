"""One step of ``make bench-scaling``: the stack with its orchestrator fixed at n replicas of
``--cap`` runs each, loaded with enough users to keep every replica full, then stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import secrets
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import httpx
import psutil
import psycopg

from loadtests.bench_load import load
from loadtests.bench_phases import Bench, stack_env
from loadtests.bench_processes import (
    Child,
    ProcessGroup,
    StartFailed,
    process_kind,
    stack_processes,
)
from loadtests.bench_scaling_costs import (
    Counters,
    PostgresCounters,
    RedisCounters,
    StepMeter,
    part_of,
)
from loadtests.bench_scaling_report import ScalingStep

# Serve's default for the ingress; raised when the users would not fit in it.
INGRESS_ONGOING = 128
INGRESS_HEADROOM = 16  # requests besides the users' waits: thread creation, health...
REPLICAS_TIMEOUT_S = 60.0
ADMIN_TIMEOUT_S = 30.0


def step_users(args: argparse.Namespace, replicas: int) -> int:
    return max(1, math.ceil(args.users_per_slot * replicas * args.cap))


def users_per_tenant(cap: int) -> int:
    """Half a tenant's ``AGENT_MAX_OPEN_STREAMS`` (``cap - 1``: it must stay below the
    orchestrator's ``max_ongoing_requests``): a wait's slot is given back just after its
    answer, so a user's next wait may find its last slot still held."""
    return max(1, (cap - 1) // 2)


def tenants_for(users: int, cap: int) -> int:
    """Tenants enough that none reaches its open-streams limit."""
    return math.ceil(users / users_per_tenant(cap))


def scaling_env(
    args: argparse.Namespace,
    work: Path,
    provider_url: str,
    replicas: int,
    admin_key: str,
) -> dict[str, str]:
    """``make bench``'s stack environment, the orchestrator fixed at ``replicas`` of
    ``args.cap`` runs each, the ingress and router fixed too."""
    env = stack_env(args, work, provider_url)
    fixed = {
        "ORCHESTRATOR": replicas,
        "INGRESS": args.ingress_replicas,
        "ROUTER": args.router_replicas,
    }
    for deployment, count in fixed.items():
        env[f"AGENT_{deployment}__MIN_REPLICAS"] = str(count)
        env[f"AGENT_{deployment}__MAX_REPLICAS"] = str(count)
    users = step_users(args, replicas)
    env.update(
        # runs/wait runs in the request that creates it, which Serve's max_ongoing_requests
        # caps; AGENT_RUN_MAX_CONCURRENT caps only the runs a replica claims from the queue.
        AGENT_ORCHESTRATOR__MAX_ONGOING_REQUESTS=str(args.cap),
        AGENT_RUN_MAX_CONCURRENT=str(args.cap),
        # The users' waits queue in the ingress (in Serve's handle) while every slot is full.
        AGENT_INGRESS__MAX_ONGOING_REQUESTS=str(max(INGRESS_ONGOING, users + INGRESS_HEADROOM)),
        AGENT_MAX_OPEN_STREAMS=str(args.cap - 1),
        AGENT_ADMIN_API_KEY=admin_key,
    )
    return env


def create_tenant_keys(admin: httpx.Client, count: int, prefix: str) -> list[dict[str, str]]:
    """``count`` new tenants (ids ``prefix-i``) and a key each, through the admin API
    (``admin``: a client of the stack sending the admin key)."""
    keys = []
    for index in range(count):
        tenant = f"{prefix}-{index}"
        admin.post("/admin/tenants", json={"tenant_id": tenant}).raise_for_status()
        made = admin.post(f"/admin/tenants/{tenant}/keys", json={"name": "bench-scaling"})
        made.raise_for_status()
        keys.append({"x-api-key": made.json()["key"]})
    return keys


def services_from_env(env: Mapping[str, str]) -> dict[str, Counters]:
    """The services whose counters a step reads: Postgres and Redis, when configured."""
    services: dict[str, Counters] = {}
    database = env.get("AGENT_DATABASE_URL", "")
    if database.startswith("postgres"):
        services["database"] = PostgresCounters(database)
    if env.get("AGENT_REDIS_URL"):
        services["redis"] = RedisCounters(env["AGENT_REDIS_URL"])
    return services


def postgres_room(services: Mapping[str, Counters]) -> str | None:
    """How many of the server's connections are taken before the stack starts: each
    replica process opens pools of its own, and a full server refuses the next."""
    database = services.get("database")
    if database is None:
        return None
    try:
        figures = database.read()
    except (OSError, psycopg.Error) as exc:
        return f"Postgres unreadable before the start: {exc}"
    return (
        f"Postgres: {figures['connections']:.0f} connections to the database already open, "
        f"the server takes {figures['max_connections']:.0f} in all"
    )


def count_part(procs: list[psutil.Process], launcher_pid: int, part: str) -> int:
    counted = 0
    for proc in procs:
        try:
            counted += part_of(process_kind(proc, launcher_pid)) == part
        except psutil.Error:  # gone meanwhile
            continue
    return counted


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait while what was started stops: cut short, the stop would
    leave Ray's processes running."""
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.signal(number, signal.SIG_IGN) for number in signals}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


class Step:
    """One replica count: start the stack, load it, measure, stop it."""

    def __init__(
        self, args: argparse.Namespace, work: Path, replicas: int, provider_url: str
    ) -> None:
        self.args, self.work, self.replicas = args, work, replicas
        self.provider_url = provider_url
        (work / "ray").mkdir(parents=True)
        self.bench = Bench(args, work)
        self.users = step_users(args, replicas)
        self.tenants = tenants_for(self.users, args.cap)

    def run(self, provider: psutil.Process, provider_alive: Callable[[str], None]) -> ScalingStep:
        try:
            return self._run(provider, provider_alive)
        finally:
            print("  stopping the stack (up to a minute)...", flush=True)
            with uninterrupted():
                self.bench.stop_all()

    def _run(self, provider: psutil.Process, provider_alive: Callable[[str], None]) -> ScalingStep:
        args, admin_key = self.args, secrets.token_urlsafe(24)
        env = scaling_env(args, self.work, self.provider_url, self.replicas, admin_key)
        url = f"http://127.0.0.1:{env['AGENT_HTTP_PORT']}"
        services = services_from_env(env)
        room = postgres_room(services)
        if room is not None:
            print(f"  {room}", flush=True)
        started = time.monotonic()
        launcher = self.bench.start(
            Child.module("launcher", self.work, env, "agent_runtime.cli.launch")
        )
        launcher.wait_ready(f"{url}/ok")
        marker = self.bench.marker
        stack: ProcessGroup = lambda: stack_processes(launcher.pid, marker)[0]  # noqa: E731
        self._wait_for_replicas(stack, launcher.pid)
        print(f"  stack up in {time.monotonic() - started:.0f} s at {url}", flush=True)
        prefix = f"scaling-{secrets.token_hex(3)}-n{self.replicas}"
        with httpx.Client(
            base_url=url, headers={"x-admin-key": admin_key}, timeout=ADMIN_TIMEOUT_S
        ) as admin:
            keys = create_tenant_keys(admin, self.tenants, prefix)
        print(
            f"  {self.users} users over {self.tenants} tenants: {args.warmup:g} s warm-up, "
            f"then {args.duration:g} s counted...",
            flush=True,
        )
        me = psutil.Process()
        meter = StepMeter(
            {"client": lambda: [me], "provider": lambda: [provider], "server": stack},
            stack,
            launcher.pid,
            services,
        )
        load_average = os.getloadavg()[0]
        window = argparse.Namespace(users=self.users, duration=args.duration)
        measured = asyncio.run(
            load(
                f"{self.replicas} replica(s)",
                url,
                {},
                window,
                meter,
                warmup_s=args.warmup,
                user_headers=keys,
            )
        )
        self.bench.check_alive("the load")
        provider_alive("the load")
        for service, why in meter.failures.items():
            print(f"  WARNING: could not read {service}'s counters: {why}", flush=True)
        return ScalingStep(
            replicas=self.replicas,
            users=self.users,
            tenants=self.tenants,
            load_average=load_average,
            load=measured,
            cpu_s_by_part=meter.cpu_s_by_part,
            database=meter.counted.get("database"),
            redis=meter.counted.get("redis"),
            unread=meter.failures,
        )

    def _wait_for_replicas(self, stack: ProcessGroup, launcher_pid: int) -> None:
        """Until n orchestrator replica processes run: /ok answers once the ingress does."""
        deadline = time.monotonic() + REPLICAS_TIMEOUT_S
        while True:
            running = count_part(list(stack()), launcher_pid, "Orchestrator")
            if running >= self.replicas:
                return
            if time.monotonic() > deadline:
                raise StartFailed(
                    f"{running} orchestrator replica(s) after {REPLICAS_TIMEOUT_S:.0f} s, "
                    f"{self.replicas} asked for"
                )
            self.bench.check_alive("the replicas' start")
            time.sleep(1.0)
