"""The embedded default under a burst (issue 13, defect 12): on SQLite, writes queue.

Many run creations at once, each on a thread of its own, while earlier runs still run
(each writes its checkpoints, events, heartbeats and end): every one is recorded and
every run ends, none answered "database unavailable". The threads are created through a
second store on the same file, as the ingress (another process) creates them in
``make run``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent_runtime.config.settings import StorageSettings
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.runs.executor import ExecutorSettings
from tests.runs.run_harness import TENANT, body, replica

BURST = 300


async def test_a_burst_of_run_creations_on_sqlite_all_succeed(tmp_path: Path) -> None:
    # Writes wait far longer than the 1 s connect timeout in such a burst (on any
    # machine): before the fix they failed past it; now they wait their turn.
    settings = StorageSettings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'db' / 'runtime.db'}",
        db_timeout_s=1.0,
        sqlite_write_timeout_s=60.0,
    )
    ingress = MetadataStore(settings)
    async with replica(settings, executor=ExecutorSettings()) as orchestrator:
        await ingress.setup()
        try:

            async def one(number: int) -> str:
                thread = await ingress.create_thread(TENANT.tenant_id, metadata={"n": number})
                started = await orchestrator.runs.start(
                    TENANT, thread.thread_id, body("slow"), "background"
                )
                return started.run.run_id

            created = await asyncio.gather(
                *(one(number) for number in range(BURST)), return_exceptions=True
            )
            failures = [repr(c) for c in created if isinstance(c, BaseException)]
            assert failures == []
            run_ids = [c for c in created if isinstance(c, str)]
            runs = orchestrator.runs.runs
            records = [await runs.get(TENANT.tenant_id, run_id) for run_id in run_ids]
            ended = await asyncio.gather(
                *(orchestrator.runs.join(TENANT, r.thread_id or "", r.run_id) for r in records),
                return_exceptions=True,
            )
            assert [e for e in ended if isinstance(e, BaseException)] == []
            assert {e.status for e in ended if not isinstance(e, BaseException)} == {"success"}
        finally:
            await ingress.close()
