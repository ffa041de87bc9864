"""The orchestrator scales on its runs (issue 12): a backlog of background runs, which
hold no request once created, scales it out, and it scales back once the backlog drained.

The chaos app's ``steps`` graph (three steps of 1 s here) runs as an app of its own whose
orchestrator replicas take 2 runs at a time and aim at 2 runs each, between 1 and 2
replicas, with short delays and look-back so that the test takes under a minute or so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from agent_runtime.config.serve_settings import DeploymentScaling
from agent_runtime.config.settings import RuntimeSettings
from agent_runtime.db.metadata import MetadataStore
from tests.e2e.chaos_support import POLL_S, TERMINAL, chaos_app, replicas, statuses
from tests.e2e.conftest import Stack
from tests.e2e.support import eventually, open_api

pytestmark = pytest.mark.e2e

NAME = "app-scale"
RUNS = 24


@pytest.fixture(scope="module")
def scaling_url(
    stack: Stack, stack_settings: RuntimeSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    orchestrator = DeploymentScaling(
        min_replicas=1,
        max_replicas=2,
        target_runs=2,
        upscale_delay_s=0,
        downscale_delay_s=2,
        look_back_period_s=11,
    )
    serve_settings = stack_settings.serve.model_copy(update={"orchestrator": orchestrator})
    runs = stack_settings.runs.model_copy(update={"run_max_concurrent": 2})
    settings = stack_settings.model_copy(update={"serve": serve_settings, "runs": runs})
    folder = tmp_path_factory.mktemp("scale")
    with chaos_app(NAME, stack.url, settings, folder, env={"CHAOS_STEP_S": "1"}) as app:
        yield app.url


async def orchestrator_replicas() -> int:
    return len(await asyncio.to_thread(replicas, NAME, "Orchestrator"))


async def test_a_backlog_of_background_runs_scales_the_orchestrator_out_and_back(
    scaling_url: str, store: MetadataStore
) -> None:
    api = await open_api(scaling_url, store)
    assert await orchestrator_replicas() == 1
    threads = [(await api.sdk.threads.create())["thread_id"] for _ in range(RUNS)]
    runs = []
    for thread_id in threads:
        run = await api.sdk.runs.create(thread_id, "steps", input={"log": []})
        runs.append((thread_id, run["run_id"]))
    # No request is in flight now: only the runs can ask for a second replica.
    await eventually(orchestrator_replicas, lambda n: n == 2, timeout_s=60, interval_s=POLL_S)
    ended = await eventually(
        lambda: statuses(api, runs),
        lambda found: set(found) <= TERMINAL,
        timeout_s=120,
        interval_s=POLL_S,
    )
    assert ended == ["success"] * RUNS
    await eventually(orchestrator_replicas, lambda n: n == 1, timeout_s=90, interval_s=POLL_S)
    await api.aclose()
