"""Fault profiles and their draws: profile validation, the settings that build the fault table,
and the seeded latency, error and rate-limit draws of the injector.
"""

from __future__ import annotations

import statistics
from typing import Any

import pytest
from pydantic import ValidationError

from agent_runtime.config.fake_provider_settings import FakeProviderSettings
from agent_runtime.config.fault_profiles import (
    FaultProfile,
    FaultTable,
    LognormalLatency,
    NormalLatency,
    RateLimit,
    UniformLatency,
)
from agent_runtime.fake.faults import FaultInjector, configured_faults

TOKEN = "control-secret-42"


# --- profiles and settings ---------------------------------------------------------------


def test_profile_json_round_trip_with_string_status_keys() -> None:
    profile = FaultProfile.model_validate_json(
        '{"latency_ms": 5, "latency_distribution": {"kind": "lognormal", "median_ms": 80,'
        ' "p99_ms": 400}, "error_rates": {"503": 0.05, "500": 0.1},'
        ' "rate_limit": {"rate": 0.5, "retry_after_s": 2}, "cut_after_chunks": 3}'
    )
    assert profile.error_rates == {500: 0.1, 503: 0.05}
    assert isinstance(profile.latency_distribution, LognormalLatency)
    table = FaultTable(models={"m": profile})
    assert FaultTable.model_validate_json(table.model_dump_json()) == table


@pytest.mark.parametrize(
    "profile",
    [
        {"error_rates": {"500": 0.7, "503": 0.4}},
        {"error_rates": {"429": 0.1}},
        {"error_rates": {"302": 0.1}},
        {"error_rates": {"500": 1.5}},
        {"latency_distribution": {"kind": "lognormal", "median_ms": 100, "p99_ms": 50}},
        {"latency_distribution": {"kind": "uniform", "low_ms": 30, "high_ms": 10}},
        {"latency_distribution": {"kind": "pareto", "alpha": 2}},
        {"latency_ms": 60_001},
        {"cut_after_chunks": -1},
        {"rate_limit": {"rate": 2}},
        {"hang": True, "typo_field": 1},
    ],
)
def test_invalid_profiles_are_rejected(profile: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        FaultProfile.model_validate(profile)


def test_profiles_and_control_token_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    for name in ("LATENCY_MS", "JITTER_MS", "FAIL_RATE", "FAILING_MODELS", "HANGING_MODELS"):
        monkeypatch.delenv(f"AGENT_FAKE_{name}", raising=False)
    monkeypatch.setenv("AGENT_FAKE_MODELS", '{"fake-smart": {"error_rates": {"503": 1}}}')
    monkeypatch.setenv("AGENT_FAKE_DEFAULT_PROFILE", '{"latency_ms": 7}')
    monkeypatch.setenv("AGENT_FAKE_CONTROL_TOKEN", TOKEN)
    settings = FakeProviderSettings()
    assert settings.models == {"fake-smart": FaultProfile(error_rates={503: 1.0})}
    assert configured_faults(settings).default == FaultProfile(latency_ms=7)
    assert settings.control_token is not None
    assert settings.control_token.get_secret_value() == TOKEN
    assert TOKEN not in repr(settings)
    monkeypatch.setenv("AGENT_FAKE_LATENCY_MS", "20")
    with pytest.raises(ValidationError, match="AGENT_FAKE_LATENCY_MS"):
        FakeProviderSettings()


def test_flat_settings_map_onto_the_fault_table() -> None:
    settings = FakeProviderSettings(
        latency_ms=20,
        jitter_ms=10,
        fail_rate=0.1,
        fail_status=503,
        failing_models=["broken", "own"],
        hanging_models=["stuck"],
        models={"own": FaultProfile(inter_token_delay_ms=5)},
    )
    table = configured_faults(settings)
    jitter = UniformLatency(kind="uniform", high_ms=10)
    assert table.default == FaultProfile(
        latency_ms=20, latency_distribution=jitter, error_rates={503: 0.1}
    )
    # A failing model keeps the default latency and fails every call, as before.
    assert table.models["broken"] == FaultProfile(
        latency_ms=20, latency_distribution=jitter, error_rates={503: 1.0}
    )
    assert table.models["stuck"] == FaultProfile(hang=True)
    assert table.models["own"] == FaultProfile(inter_token_delay_ms=5)  # `models` wins
    limited = configured_faults(FakeProviderSettings(latency_ms=0, fail_rate=0.3, fail_status=429))
    assert limited.default == FaultProfile(rate_limit=RateLimit(rate=0.3, retry_after_s=1))


# --- seeded draws --------------------------------------------------------------------------


def draws(profile: FaultProfile, n: int, seed: int = 11) -> list[float]:
    injector = FaultInjector(FaultTable(default=profile), seed=seed)
    return [injector.plan("m").delay_ms for _ in range(n)]


def test_uniform_latency_on_top_of_the_fixed_part() -> None:
    uniform = UniformLatency(kind="uniform", low_ms=10, high_ms=30)
    delays = draws(FaultProfile(latency_ms=5, latency_distribution=uniform), 5000)
    assert 15 <= min(delays) < 15.1 and 34.9 < max(delays) <= 35
    assert statistics.fmean(delays) == pytest.approx(25, abs=0.5)


def test_normal_latency_mean_and_stddev() -> None:
    normal = NormalLatency(kind="normal", mean_ms=100, stddev_ms=20)
    delays = draws(FaultProfile(latency_distribution=normal), 5000)
    assert statistics.fmean(delays) == pytest.approx(100, abs=1.5)
    assert statistics.stdev(delays) == pytest.approx(20, abs=1.0)
    wide = NormalLatency(kind="normal", mean_ms=1, stddev_ms=5)
    clamped = draws(FaultProfile(latency_distribution=wide), 500)
    assert min(clamped) == 0.0  # negative draws count as 0


def test_lognormal_latency_median_and_p99() -> None:
    lognormal = LognormalLatency(kind="lognormal", median_ms=80, p99_ms=400)
    delays = draws(FaultProfile(latency_distribution=lognormal), 20_000)
    cuts = statistics.quantiles(delays, n=100)
    assert statistics.median(delays) == pytest.approx(80, rel=0.03)
    assert cuts[98] == pytest.approx(400, rel=0.08)
    assert min(delays) > 0


def test_error_and_rate_limit_shares() -> None:
    profile = FaultProfile(error_rates={500: 0.2, 503: 0.1}, rate_limit=RateLimit(rate=0.25))
    injector = FaultInjector(FaultTable(default=profile), seed=5)
    statuses = [injector.plan("m").status for _ in range(20_000)]
    share = {s: statuses.count(s) / len(statuses) for s in (429, 500, 503, None)}
    # 429 is drawn first; the error statuses share the calls it lets through.
    assert share[429] == pytest.approx(0.25, abs=0.01)
    assert share[500] == pytest.approx(0.75 * 0.2, abs=0.01)
    assert share[503] == pytest.approx(0.75 * 0.1, abs=0.01)
    assert share[None] == pytest.approx(0.75 * 0.7, abs=0.01)


def test_draws_are_seeded_and_per_model() -> None:
    table = FaultTable(
        default=FaultProfile(
            latency_distribution=UniformLatency(kind="uniform", high_ms=100),
            error_rates={500: 0.5},
        )
    )
    alone = FaultInjector(table, seed=1)
    first = [alone.plan("a") for _ in range(30)]
    interleaved = FaultInjector(table, seed=1)
    second = []
    for _ in range(30):
        interleaved.plan("b")  # another model's calls do not shift model a's draws
        second.append(interleaved.plan("a"))
    assert first == second
    assert first != [FaultInjector(table, seed=2).plan("a") for _ in range(30)]
    # Setting a model's profile restarts its stream: the same plans as a fresh injector.
    interleaved.set_model("a", table.default)
    assert [interleaved.plan("a") for _ in range(30)] == first
