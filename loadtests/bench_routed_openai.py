"""What routing an unmodified app's ``ChatOpenAI`` calls through the model router costs.

    python loadtests/bench_routed_openai.py [--runs 200] [--provider-latency-ms 20]

Writes a small app of one ``ChatOpenAI`` call per run (the user's code, unchanged) into a
temporary folder, starts one standalone fake provider at a fixed latency, then serves the
app twice with the stack as ``agent-runtime serve`` does: once calling the provider
directly (``OPENAI_BASE_URL`` from the app's ``.env``), once with
``AGENT_APP_ROUTE_OPENAI_CLIENTS=true`` (the same calls through the router deployment).
The same client sends the same sequential ``POST /runs/wait`` to each; the difference of
the medians is the cost of the hop per call (one call per run). Prints a table; exit
status 0 when everything was measured (the target met or not), 2 when something failed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

try:
    from loadtests.bench_phases import stack_env
    from loadtests.bench_processes import Child, StartFailed, free_port, sweep
except ModuleNotFoundError:  # run as a script: the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from loadtests.bench_phases import stack_env
    from loadtests.bench_processes import Child, StartFailed, free_port, sweep

TARGET_P50_MS = 5.0
MODES = ("direct", "routed")
GRAPH = """\
from langchain_openai import ChatOpenAI
from langgraph.graph import START, MessagesState, StateGraph

model = ChatOpenAI(model="fake-fast")


async def call(state: MessagesState) -> MessagesState:
    return {"messages": [await model.ainvoke(state["messages"])]}


graph = StateGraph(MessagesState).add_node(call).add_edge(START, "call").compile()
"""


def write_app(folder: Path, provider_url: str) -> Path:
    (folder / "graph.py").write_text(GRAPH)
    (folder / ".env").write_text(f"OPENAI_BASE_URL={provider_url}\nOPENAI_API_KEY=unused\n")
    config = folder / "langgraph.json"
    config.write_text(
        '{"dependencies": ["."], "graphs": {"chat": "./graph.py:graph"}, "env": ".env"}'
    )
    return config


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def measure(url: str, key: str, runs: int, warmup: int) -> list[float]:
    body = {"assistant_id": "chat", "input": {"messages": [{"role": "user", "content": "hi"}]}}
    latencies = []
    with httpx.Client(base_url=url, headers={"x-api-key": key}, timeout=30.0) as client:
        for index in range(warmup + runs):
            started = time.perf_counter()
            response = client.post("/runs/wait", json=body)
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                raise StartFailed(f"run answered {response.status_code}: {response.text[:300]}")
            if index >= warmup:
                latencies.append(elapsed)
    return latencies


def serve_and_measure(
    args: argparse.Namespace, work: Path, config: Path, provider_url: str, mode: str
) -> list[float]:
    run_dir = work / mode
    (run_dir / "ray").mkdir(parents=True)
    env = stack_env(argparse.Namespace(port=None, provider_latency_ms=0), run_dir, provider_url)
    env["AGENT_APP_CONFIG"] = str(config)
    env["AGENT_APP_ROUTE_OPENAI_CLIENTS"] = "true" if mode == "routed" else "false"
    for name in ("OPENAI_BASE_URL", "OPENAI_API_BASE", "OPENAI_API_KEY"):
        env.pop(name, None)  # the app's .env says where its client goes
    url = f"http://127.0.0.1:{env['AGENT_HTTP_PORT']}"
    print(f"Serving the app {mode}...", flush=True)
    launcher = Child.module("launcher", run_dir, env, "agent_runtime.cli.launch")
    try:
        launcher.wait_ready(f"{url}/ok")
        key = (run_dir / "data" / "dev-api-key").read_text().strip()
        latencies = measure(url, key, args.runs, args.warmup)
    finally:
        launcher.stop()
        sweep(str(run_dir / "ray"))
    print(f"  p50 {statistics.median(latencies):.1f} ms over {len(latencies)} runs", flush=True)
    return latencies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--provider-latency-ms", type=float, default=20.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-routed-") as tmp:
        work = Path(tmp)
        port = free_port()
        provider = Child.module(
            "fake provider",
            work,
            os.environ,
            "loadtests.baseline_app",
            "--fake-provider",
            "--port",
            str(port),
            "--latency-ms",
            f"{args.provider_latency_ms:g}",
        )
        provider_url = f"http://127.0.0.1:{port}/v1"
        try:
            provider.wait_ready(f"{provider_url}/models")
            app = work / "app"
            app.mkdir()
            config = write_app(app, provider_url)
            results = {
                mode: serve_and_measure(args, work, config, provider_url, mode) for mode in MODES
            }
        except StartFailed as error:
            print(f"FAILED: {error}", file=sys.stderr)
            return 2
        finally:
            provider.stop()
    p50 = {mode: statistics.median(values) for mode, values in results.items()}
    p99 = {mode: percentile(values, 99) for mode, values in results.items()}
    print("\n| path | runs | p50 ms | p99 ms |\n|---|---:|---:|---:|")
    for mode in MODES:
        print(f"| {mode} | {len(results[mode])} | {p50[mode]:.1f} | {p99[mode]:.1f} |")
    hop = p50["routed"] - p50["direct"]
    verdict = "met" if hop <= TARGET_P50_MS else "not met"
    print(f"\nrouter hop per call: {hop:+.1f} ms p50 (target <= {TARGET_P50_MS:g} ms: {verdict})")
    print(f"p99 difference: {p99['routed'] - p99['direct']:+.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
