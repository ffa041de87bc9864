"""The limits a deployment gets when nobody sets any (issue 13, defect 4: every run limit
defaulted to "none", so one tenant could fill a small deployment), and how an operator
turns one off explicitly."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agent_runtime.config.run_settings import RunSettings
from agent_runtime.config.settings import LimitSettings
from agent_runtime.tenancy.run_limits import RunLimits


def test_every_fan_out_limit_has_a_default() -> None:
    limits = LimitSettings(_env_file=None)
    runs = RunSettings(_env_file=None)
    assert RunLimits.from_settings(limits) == RunLimits(max_concurrent_runs=16, max_queued_runs=100)
    assert runs.run_batch_max == 100
    # A batch is charged one request per run: the default batch fits the default bucket.
    assert runs.run_batch_max <= limits.rate_limit_burst
    assert runs.cron_min_interval_s == 60
    assert runs.cron_max_per_tenant == 100


@pytest.mark.parametrize("unset", ["none", "None", ""])
def test_a_limit_is_turned_off_explicitly(monkeypatch: pytest.MonkeyPatch, unset: str) -> None:
    for name in ("AGENT_MAX_CONCURRENT_RUNS", "AGENT_MAX_QUEUED_RUNS", "AGENT_CRON_MAX_PER_TENANT"):
        monkeypatch.setenv(name, unset)
    monkeypatch.setenv("AGENT_CRON_MIN_INTERVAL_S", "0")
    limits, runs = LimitSettings(_env_file=None), RunSettings(_env_file=None)
    assert (limits.max_concurrent_runs, limits.max_queued_runs) == (None, None)
    assert runs.cron_max_per_tenant is None and runs.cron_min_interval_s == 0


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AGENT_RUN_BATCH_MAX", "0"),
        ("AGENT_RUN_BATCH_MAX", "100001"),
        ("AGENT_CRON_MIN_INTERVAL_S", "-1"),
        ("AGENT_CRON_MAX_PER_TENANT", "0"),
    ],
)
def test_bad_values_are_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError):
        RunSettings(_env_file=None)
