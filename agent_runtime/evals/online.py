"""Sampled online judging: a share of finished production runs scored in the background.

:class:`OnlineJudge` is what the orchestrator calls after a run ends. :meth:`~OnlineJudge.
submit` decides (:meth:`~OnlineJudge.sampled`: successful runs, of the configured graphs,
with probability ``sample_rate``) and, for a sampled run, starts a task that scores the
run's last exchange with the judge, logs the scores and hands them to ``on_judgement``
(metrics, a store). It never raises and never delays the run: at most ``max_pending``
judgements are in flight per replica, and a sampled run past that is skipped.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

from agent_runtime.config.settings import EvalSettings
from agent_runtime.core.records import RunRecord
from agent_runtime.evals.judge import Judge, last_exchange
from agent_runtime.evals.schema import Judgement

logger = logging.getLogger(__name__)

OnJudgement = Callable[[RunRecord, Judgement], None]


class OnlineJudge:
    def __init__(
        self,
        judge: Judge,
        settings: EvalSettings,
        *,
        on_judgement: OnJudgement | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._judge = judge
        self._settings = settings
        self._on_judgement = on_judgement
        self._random = rng or random.Random()
        self._tasks: set[asyncio.Task[Judgement | None]] = set()

    @property
    def enabled(self) -> bool:
        return self._settings.sample_rate > 0

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def sampled(self, run: RunRecord, status: str | None) -> bool:
        """Whether to judge this run: one draw per successful run of a sampled graph."""
        if not self.enabled or status != "success":
            return False
        graphs = self._settings.graphs
        if graphs and run.graph_id not in graphs:
            return False
        return self._random.random() < self._settings.sample_rate

    async def judge_run(self, run: RunRecord, values: Any) -> Judgement | None:
        """Score the run's last exchange (None: it has none, e.g. it ended at an interrupt)."""
        exchange = last_exchange(values)
        if exchange is None:
            return None
        judgement = await self._judge.score(exchange)
        if judgement.score is not None:
            score = judgement.score
            logger.info(
                "run %s (%s): judged relevance=%d helpfulness=%d hallucination=%s",
                run.run_id,
                run.graph_id,
                score.relevance,
                score.helpfulness,
                score.hallucination,
            )
        else:
            logger.warning("run %s: judge failed: %s", run.run_id, judgement.error)
        if self._on_judgement is not None:
            try:
                self._on_judgement(run, judgement)
            except Exception:  # a broken metrics hook must not end the judging
                logger.exception("run %s: on_judgement failed", run.run_id)
        return judgement

    def submit(
        self, run: RunRecord, status: str | None, values: Any
    ) -> asyncio.Task[Judgement | None] | None:
        """Judge the run in the background if it is sampled; the task, or None."""
        if not self.sampled(run, status):
            return None
        if len(self._tasks) >= self._settings.max_pending:
            logger.warning("run %s: not judged, %d judgements in flight", run.run_id, self.pending)
            return None
        task = asyncio.get_running_loop().create_task(self._guarded(run, values))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _guarded(self, run: RunRecord, values: Any) -> Judgement | None:
        try:
            return await self.judge_run(run, values)
        except Exception:  # Judge.score records its own failures; this is a bug
            logger.exception("run %s: online judging failed", run.run_id)
            return None

    async def aclose(self) -> None:
        """Cancel the judgements in flight (a replica shutting down)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
