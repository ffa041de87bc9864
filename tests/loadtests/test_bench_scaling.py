"""``make bench-scaling``'s arithmetic, report and stack settings, on made-up figures (the
benchmark itself starts a Ray stack; only ``loadtests/bench_scaling.py`` ever does)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from agent_runtime.config.settings import RuntimeSettings
from loadtests.bench_scaling import _parser, command_line, problems
from loadtests.bench_scaling_costs import RAY_SYSTEM, cpu_by_part, deltas, part_of
from loadtests.bench_scaling_report import (
    CAPACITY_MARKS,
    EFFICIENCY_MARKS,
    ScalingResult,
    ScalingSettings,
    ScalingStep,
    connections_per_replica,
    cost_rows,
    process_ceilings,
    reading,
    render_capacity,
    render_terminal,
    verdict,
    write_doc,
)
from loadtests.bench_scaling_step import (
    create_tenant_keys,
    scaling_env,
    step_users,
    tenants_for,
)
from tests.loadtests.bench_samples import load_result, sample_machine


def step(replicas: int, runs_per_s: float, machine_pct: float, errors: int = 0) -> ScalingStep:
    load = load_result("ours", runs_per_s, server_cpu=40.0 * replicas).model_copy(
        update={"machine_cpu_pct": machine_pct, "errors": errors, "duration_s": 30.0}
    )
    runs = load.runs
    return ScalingStep(
        replicas=replicas,
        users=16 * replicas,
        tenants=3 * replicas,
        load_average=1.5,
        load=load,
        # CPU seconds over the 30 s window: 10 ms a run each for the ingress and router,
        # 20 ms for each orchestrator replica's share.
        cpu_s_by_part={
            "Ingress": runs * 0.010,
            "Orchestrator": runs * 0.020,
            "ModelRouter": runs * 0.010,
            RAY_SYSTEM: runs * 0.005,
            "proxy": runs * 0.004,
        },
        database={
            "transactions": runs * 12.0,
            "rows_written": runs * 9.0,
            "connections": 10.0 + 9 * (replicas - 1),  # 9 more a replica
        },
        redis={"commands": runs * 6.0, "cmd:evalsha": runs * 4.0, "cmd:get": runs * 2.0},
    )


def result(*steps: ScalingStep) -> ScalingResult:
    return ScalingResult(
        date="2026-12-07 22:00 UTC",
        command="python loadtests/bench_scaling.py --replicas 1 2 4",
        machine=sample_machine(),
        settings=ScalingSettings(
            replicas=[s.replicas for s in steps],
            cap=8,
            users_per_slot=2.0,
            users_per_tenant=3,
            duration_s=30.0,
            warmup_s=15.0,
            provider_latency_ms=1000.0,
            ingress_replicas=1,
            router_replicas=1,
            storage="PostgreSQL",
            limiter="Redis",
        ),
        steps=list(steps),
    )


def test_parts_are_the_deployments_the_proxy_and_ray() -> None:
    assert part_of("ray::ServeReplica:agent-runtime:Orchestrator") == "Orchestrator"
    assert part_of("ray::ServeReplica:agent-runtime:ModelRouter") == "ModelRouter"
    assert part_of("ray::ProxyActor") == "proxy"
    assert part_of("ray::ServeController") == "controller"
    assert part_of("launcher") == "launcher"
    assert part_of("raylet") == part_of("dashboard/agent") == RAY_SYSTEM


def test_cpu_by_part_adds_replicas_and_counts_new_processes_from_zero() -> None:
    before = {1: 10.0, 2: 5.0, 3: 1.0}
    after = {1: 12.0, 2: 8.0, 3: 1.5, 4: 0.25}  # 4 started in the window
    parts = {1: "Orchestrator", 2: "Orchestrator", 3: "proxy"}  # 4 unknown: Ray's
    assert cpu_by_part(before, after, parts) == {
        "Orchestrator": 5.0,
        "proxy": 0.5,
        RAY_SYSTEM: 0.25,
    }


def test_deltas_subtract_counters_and_keep_gauges() -> None:
    before = {"transactions": 100.0, "connections": 30.0}
    after = {"transactions": 160.0, "connections": 34.0, "statements": 7.0}
    assert deltas(before, after) == {"transactions": 60.0, "connections": 34.0, "statements": 7.0}


def test_cpu_per_run_by_part_in_the_request_order() -> None:
    one = step(1, 4.0, 30.0)
    costs = one.cpu_ms_per_run()
    assert list(costs)[:5] == ["proxy", "Ingress", "Orchestrator", "ModelRouter", RAY_SYSTEM]
    assert costs["Orchestrator"] == pytest.approx(20.0)
    assert costs["stack, all processes"] == pytest.approx(49.0)
    # load_result: the provider used 6% and the client 12% of a core over 30 s, 120 runs.
    assert costs["fake provider (not the stack)"] == pytest.approx(6 * 30 * 10 / 120)
    assert costs["load client (not the stack)"] == pytest.approx(12 * 30 * 10 / 120)
    idle = one.model_copy(update={"load": one.load.model_copy(update={"runs": 0})})
    assert idle.cpu_ms_per_run() == {}


def test_efficiency_against_the_first_step_and_the_verdicts() -> None:
    scaled = result(step(1, 4.0, 30.0), step(2, 7.8, 50.0), step(4, 12.0, 95.0))
    first, second, third = scaled.steps
    assert scaled.efficiency(first) == pytest.approx(1.0)
    assert scaled.efficiency(second) == pytest.approx(0.975)
    assert scaled.efficiency(third) == pytest.approx(0.75)
    assert [verdict(scaled, s) for s in scaled.steps] == ["(base)", "met", "CPU-bound"]
    # Below target with CPU to spare is a miss; so is any error.
    cool = result(step(1, 4.0, 30.0), step(2, 6.0, 40.0), step(4, 16.0, 50.0, errors=2))
    assert [verdict(cool, s) for s in cool.steps] == [
        "(base)",
        "**not met**",
        "**not met** (errors)",
    ]
    assert scaled.ideal_runs_per_s(third) == pytest.approx(16.0)  # 4 x 8 slots / 2 s


def test_reading_states_saturation_and_the_cpu_ceiling() -> None:
    scaled = result(step(1, 4.0, 30.0), step(2, 7.8, 50.0), step(4, 12.0, 95.0))
    text = reading(scaled)
    assert "4 replicas: 12.00 runs/s, efficiency 0.75" in text
    assert "The CPU saturated (>= 85% of the machine) at 4 replicas." in text
    # The widest step: 49 CPU-ms per run of the stack on 2 CPUs.
    assert "at 49 CPU-ms per run for the stack (measured at 4 replicas)" in text
    assert f"hold at most {2000 / 49:.0f} runs/s" in text
    cool = result(step(1, 4.0, 30.0), step(2, 8.0, 40.0))
    assert "did not saturate" in reading(cool) and "shared" not in reading(cool)
    busy = step(1, 4.0, 90.0)
    busy.load.other_cpu_pct = 120.0
    text = reading(result(busy))
    assert "at 1 replica." in text
    assert "outside the test used 1.20 cores during the 1 replica step" in text


def test_cost_rows_per_run_and_connections_per_replica() -> None:
    scaled = result(step(1, 4.0, 30.0), step(2, 8.0, 50.0), step(4, 15.0, 70.0))
    rows = {row[0]: row[1:] for row in cost_rows(scaled)}
    assert rows["database transactions"] == ["12.0", "12.0", "12.0"]
    assert rows["Redis commands"] == ["6.0", "6.0", "6.0"]
    assert rows["Redis, most called"][0] == "evalsha 4.0, get 2.0"
    assert rows["Postgres connections open (not per run)"] == ["10", "19", "37"]
    assert "database statements (pg_stat_statements)" not in rows  # not loaded
    assert connections_per_replica(scaled) == pytest.approx(9.0)
    assert connections_per_replica(result(step(1, 4.0, 30.0))) is None
    ceilings = process_ceilings(scaled)  # 1000 / CPU-ms per run
    assert ceilings == pytest.approx(
        {"proxy": 250.0, "Ingress": 100.0, "Orchestrator": 50.0, "ModelRouter": 100.0}
    )
    capacity = render_capacity(scaled)
    assert "Orchestrator 50 runs/s" in capacity
    assert "Each added orchestrator replica opened 9.0 Postgres connections" in capacity


def test_sqlite_steps_have_no_database_rows() -> None:
    bare = step(1, 4.0, 30.0).model_copy(update={"database": None, "redis": None})
    rows = [row[0] for row in cost_rows(result(bare))]
    assert not [r for r in rows if "database" in r or "Redis" in r or "Postgres" in r]
    assert "efficiency" in render_terminal(result(bare))


def test_write_doc_keeps_other_sections_and_replaces_its_own(tmp_path: Path) -> None:
    doc = tmp_path / "scaling.md"
    scaled = result(step(1, 4.0, 30.0), step(2, 7.6, 50.0))
    write_doc(scaled, doc)
    created = doc.read_text()
    assert created.startswith("# Scaling\n")
    for start, end in (EFFICIENCY_MARKS, CAPACITY_MARKS):
        assert created.count(start) == created.count(end) == 1
    assert scaled.command in created and "| 2 | 32 (6 tenants) | 7.60 | 0.95 |" in created
    # Another helper's section, before and after: kept as it is.
    doc.write_text("# Scaling\n\n## The knee\n\nknee text\n\n" + created.split("\n", 1)[1])
    write_doc(result(step(1, 5.0, 30.0), step(2, 9.0, 50.0)), doc)
    updated = doc.read_text()
    assert "## The knee\n\nknee text" in updated
    assert "| 2 | 32 (6 tenants) | 9.00 | 0.90 |" in updated and "7.60" not in updated
    write_doc(result(step(1, 5.0, 30.0), step(2, 9.0, 50.0)), doc)
    assert doc.read_text() == updated


def test_users_fill_every_slot_over_tenants_below_their_stream_limit() -> None:
    args = _parser().parse_args([])
    assert (args.replicas, args.cap, args.users_per_slot) == ([1, 2, 4], 8, 2.0)
    assert [step_users(args, n) for n in args.replicas] == [16, 32, 64]
    assert [tenants_for(users, 8) for users in (16, 32, 64)] == [6, 11, 22]  # 3 users each
    assert problems(args) == []
    wrong = _parser().parse_args(["--replicas", "2", "1", "--cap", "2"])
    assert len(problems(wrong)) == 2
    assert command_line(args).startswith("python loadtests/bench_scaling.py --replicas 1 2 4")


def test_scaling_env_is_valid_settings_with_the_replicas_fixed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = _parser().parse_args(["--cap", "8", "--users-per-slot", "10"])
    env = scaling_env(args, tmp_path, "http://127.0.0.1:1/v1", 4, "admin-secret")
    for name in [n for n in env if n.startswith("AGENT_")]:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        if name.startswith("AGENT_"):
            monkeypatch.setenv(name, value)
    settings = RuntimeSettings.from_env()
    serve = settings.serve
    assert (serve.orchestrator.min_replicas, serve.orchestrator.max_replicas) == (4, 4)
    assert serve.orchestrator.max_ongoing_requests == 8
    assert (serve.ingress.min_replicas, serve.ingress.max_replicas) == (1, 1)
    assert (serve.router.min_replicas, serve.router.max_replicas) == (1, 1)
    assert serve.ingress.max_ongoing_requests == 320 + 16  # 10 x 4 x 8 users wait there
    assert settings.runs.run_max_concurrent == 8
    assert settings.limits.max_open_streams == 7
    assert settings.budgets.admin_api_key is not None


def test_create_tenant_keys_makes_a_tenant_and_a_key_each() -> None:
    calls: list[tuple[str, str]] = []

    def admin_api(request: httpx.Request) -> httpx.Response:
        calls.append((request.url.path, request.headers["x-admin-key"]))
        if request.url.path.endswith("/keys"):
            tenant = request.url.path.split("/")[3]
            return httpx.Response(201, json={"key": f"ar_{tenant}"})
        return httpx.Response(201, json={})

    with httpx.Client(
        base_url="http://stack",
        headers={"x-admin-key": "secret"},
        transport=httpx.MockTransport(admin_api),
    ) as admin:
        keys = create_tenant_keys(admin, 2, "scaling-x")
    assert keys == [{"x-api-key": "ar_scaling-x-0"}, {"x-api-key": "ar_scaling-x-1"}]
    assert [path for path, _ in calls] == [
        "/admin/tenants",
        "/admin/tenants/scaling-x-0/keys",
        "/admin/tenants",
        "/admin/tenants/scaling-x-1/keys",
    ]
    assert {key for _, key in calls} == {"secret"}
