"""``make bench``'s load: the sequential runs that measure the overhead, and the concurrent
users that measure throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from loadtests.bench_figures import LoadResult, Overhead, ServerTiming, percentile
from loadtests.bench_processes import CpuMeter, StartFailed

ASSISTANT = "multi_agent"
# Routed to the code and the general specialist: two LLM calls per run, no tool loop.
PROMPTS = (
    "Write a Python function that returns the n-th Fibonacci number iteratively.",
    "In two sentences, what is the difference between a process and a thread?",
)
WARMUP_RUNS = 10
LOAD_WARMUP_S = 5.0
REQUEST_TIMEOUT_S = 120.0
PROGRESS_EVERY_S = 5.0


def run_body(index: int) -> dict[str, Any]:
    prompt = PROMPTS[index % len(PROMPTS)]
    return {"assistant_id": ASSISTANT, "input": {"messages": [{"role": "user", "content": prompt}]}}


def run_error(response: httpx.Response) -> str | None:
    """None for a 200 whose final values end with the model's answer, else what went wrong."""
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    try:
        messages = response.json().get("messages") or []
    except (ValueError, AttributeError):
        return "body is not a JSON object"
    if not messages or not isinstance(messages[-1], dict) or messages[-1].get("type") != "ai":
        return "no answer in the final values"
    return None


def _client(base_url: str, headers: Mapping[str, str], connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(
        base_url=base_url, headers=dict(headers), timeout=REQUEST_TIMEOUT_S, limits=limits
    )


async def loop_runs(
    client: httpx.AsyncClient,
    thread_id: str,
    index: int,
    *,
    until: float,
    ended: list[tuple[float, float, str | None]],
    step: int = 1,
    origin: float = 0.0,
    max_runs: int | None = None,
) -> int:
    """One user: ``runs/wait`` on its thread until ``until`` (``time.perf_counter``) or
    ``max_runs`` runs, each recorded in ``ended`` as (end time minus ``origin``, latency
    ms, error or None); returns the next run's index."""
    done = 0
    while time.perf_counter() < until and (max_runs is None or done < max_runs):
        done += 1
        sent = time.perf_counter()
        try:
            response = await client.post(f"/threads/{thread_id}/runs/wait", json=run_body(index))
            error = run_error(response)
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        now = time.perf_counter()
        ended.append((now - origin, (now - sent) * 1000, error))
        index += step
    return index


async def new_thread(client: httpx.AsyncClient) -> str:
    response = await client.post("/threads", json={})
    response.raise_for_status()
    thread_id: str = response.json()["thread_id"]
    return thread_id


async def measure_overhead(base_url: str, headers: Mapping[str, str], runs: int) -> Overhead:
    """Sequential runs, one client, a fresh thread each (thread creation is not timed)."""
    measured: list[tuple[float, ServerTiming]] = []
    errors: list[str] = []
    async with _client(base_url, headers, 2) as client:
        for index in range(WARMUP_RUNS + runs):
            thread_id = await new_thread(client)
            started = time.perf_counter()
            response = await client.post(f"/threads/{thread_id}/runs/wait", json=run_body(index))
            client_ms = (time.perf_counter() - started) * 1000
            if index < WARMUP_RUNS:
                continue
            header = response.headers.get("server-timing")
            error = run_error(response) or (None if header else "no Server-Timing header")
            if error is None and header is not None:
                measured.append((client_ms, ServerTiming.from_header(header)))
            else:
                errors.append(error or "")
            done = index - WARMUP_RUNS + 1
            if done % 25 == 0 or done == runs:
                print(f"  {done}/{runs} runs, {len(errors)} errors", flush=True)
    if not measured:
        raise StartFailed(f"all {runs} runs failed: {dict(Counter(errors))}")
    return Overhead.from_runs(measured, errors)


async def load(
    system: str,
    base_url: str,
    headers: Mapping[str, str],
    args: argparse.Namespace,
    meter: CpuMeter,
    *,
    warmup_s: float = LOAD_WARMUP_S,
    user_headers: Sequence[Mapping[str, str]] = (),
) -> LoadResult:
    """``args.users`` clients, each on its own thread, looping runs/wait; a window counts.

    ``user_headers``: user ``i`` sends ``user_headers[i % len(user_headers)]`` (keys of
    several tenants, so that no tenant's own limits cap the load) instead of ``headers``.
    """
    ended: list[tuple[float, float, str | None]] = []  # (end time, latency ms, error)
    header_sets = list(user_headers) or [headers]
    async with contextlib.AsyncExitStack() as opened:
        per_client = -(-args.users // len(header_sets)) + 4
        clients = [
            await opened.enter_async_context(_client(base_url, each, per_client))
            for each in header_sets
        ]
        users = [clients[i % len(clients)] for i in range(args.users)]
        thread_ids = await asyncio.gather(*(new_thread(client) for client in users))
        start = time.perf_counter()
        window = (start + warmup_s, start + warmup_s + args.duration)

        async def progress() -> None:
            while (left := window[1] - time.perf_counter()) > 0:
                # Not past the window's end: the load ends with its last runs.
                await asyncio.sleep(min(PROGRESS_EVERY_S, left))
                kinds = Counter(error for _, _, error in ended if error is not None)
                failed = f", errors: {dict(kinds)}" if kinds else ", no errors"
                print(f"  {system}: {len(ended)} runs{failed}", flush=True)

        tasks: list[asyncio.Task[object]] = [
            asyncio.create_task(loop_runs(users[i], t, i, until=window[1], ended=ended))
            for i, t in enumerate(thread_ids)
        ]
        tasks.append(asyncio.create_task(progress()))
        try:
            await asyncio.sleep(window[0] - time.perf_counter())
            meter.start()
            await asyncio.sleep(window[1] - time.perf_counter())
            cpu = meter.stop()
            await asyncio.gather(*tasks)
        finally:
            # Interrupted: the users end before their client closes under them.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    counted = [(latency, error) for end, latency, error in ended if window[0] <= end <= window[1]]
    latencies = [latency for latency, error in counted if error is None]
    errors = Counter(error for _, error in counted if error is not None)
    return LoadResult(
        system=system,
        users=args.users,
        duration_s=args.duration,
        runs=len(latencies),
        errors=sum(errors.values()),
        error_kinds=dict(errors),
        runs_per_s=len(latencies) / args.duration,
        p50_ms=percentile(latencies, 50) if latencies else None,
        p99_ms=percentile(latencies, 99) if latencies else None,
        client_cpu_pct=cpu["client"],
        server_cpu_pct=cpu["server"],
        provider_cpu_pct=cpu.get("provider"),
        machine_cpu_pct=cpu["machine"],
        other_cpu_pct=cpu["other"],
        server_processes=meter.processes["server"],
    )
