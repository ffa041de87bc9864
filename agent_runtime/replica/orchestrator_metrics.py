"""The orchestrator's metrics: runs by graph and status, their duration, model calls, steps and
tool calls, the run queue, the online judge's verdicts and webhook deliveries
(:class:`OrchestratorMetrics`).
"""

from __future__ import annotations

from agent_runtime.core.timing import RunTimings
from agent_runtime.evals.schema import Judgement
from agent_runtime.replica.autoscaling import run_stats
from agent_runtime.replica.metrics import LATENCY_BOUNDARIES_MS, OTHER, counter, gauge, histogram
from agent_runtime.runs.executor import QueueStats
from agent_runtime.runs.webhooks import WebhookOutcome

STEP_BOUNDARIES = [1.0, 2, 3, 5, 8, 13, 21, 34, 55]
MAX_TOOL_NAMES = 64  # tool names past this many are counted as "other"


class OrchestratorMetrics:
    def __init__(self) -> None:
        self._in_flight_now, self._queued_now = 0, 0
        self.runs = counter("agent_runs", "Finished runs by graph and status.", ("graph", "status"))
        self.duration = histogram(
            "agent_run_duration_ms", "Run duration by graph.", LATENCY_BOUNDARIES_MS, ("graph",)
        )
        self.llm_calls_per_run = histogram(
            "agent_run_llm_calls",
            "Model calls made by one run.",
            [1.0, 2, 3, 5, 8, 13, 21],
            ("graph",),
        )
        self.steps = histogram(
            "agent_run_steps",
            "Reasoning steps (graph node executions, subgraphs' included) per run.",
            STEP_BOUNDARIES,
            ("graph",),
        )
        self.tool_calls = counter(
            "agent_tool_calls",
            "Tool calls by graph, tool and outcome (success or error).",
            ("graph", "tool", "outcome"),
        )
        self.in_flight = gauge(
            "agent_runs_in_flight", "Runs executing on this orchestrator replica."
        )
        self.queue_depth = gauge(
            "agent_run_queue_depth",
            "Runs waiting in the queue (pending in the database, all replicas).",
        )
        self.judgements = counter(
            "agent_online_judgements",
            "Sampled runs the online judge scored, by graph and outcome (scored, failed).",
            ("graph", "outcome"),
        )
        self.judge_scores = histogram(
            "agent_online_judge_score",
            "Online judge scores (1-5) by graph and metric (relevance, helpfulness).",
            [1.5, 2.5, 3.5, 4.5],
            ("graph", "metric"),
        )
        self.hallucinations = counter(
            "agent_online_hallucinations",
            "Sampled runs the online judge found hallucinating, by graph.",
            ("graph",),
        )
        self.cron_failures = counter(
            "agent_cron_failures",
            "Crons whose run could not start for a lasting reason (an invalid body, a bug), "
            "by whether the failure disabled the cron.",
            ("disabled",),
        )
        self.webhooks = counter(
            "agent_webhooks",
            "Run webhook deliveries by outcome (delivered, failed, refused, dropped).",
            ("outcome",),
        )
        self._tools: set[str] = set()

    def record_webhook(self, outcome: WebhookOutcome) -> None:
        self.webhooks.inc(tags={"outcome": outcome})

    def record_cron_failure(self, disabled: bool) -> None:
        self.cron_failures.inc(tags={"disabled": "true" if disabled else "false"})

    def record_judgement(self, graph: str, judgement: Judgement) -> None:
        score = judgement.score
        outcome = "failed" if score is None else "scored"
        self.judgements.inc(tags={"graph": graph, "outcome": outcome})
        if score is None:
            return
        self.judge_scores.observe(score.relevance, tags={"graph": graph, "metric": "relevance"})
        self.judge_scores.observe(score.helpfulness, tags={"graph": graph, "metric": "helpfulness"})
        if score.hallucination:
            self.hallucinations.inc(tags={"graph": graph})

    def record_run(self, graph: str, status: str, duration_ms: float, timings: RunTimings) -> None:
        tags = {"graph": graph}
        self.runs.inc(tags={"graph": graph, "status": status})
        self.duration.observe(duration_ms, tags=tags)
        self.llm_calls_per_run.observe(timings.llm_calls, tags=tags)
        self.steps.observe(timings.steps, tags=tags)
        for (tool, ok), count in timings.tool_calls.items():
            outcome = "success" if ok else "error"
            self.tool_calls.inc(
                count, tags={"graph": graph, "tool": self._tool(tool), "outcome": outcome}
            )

    def _tool(self, name: str) -> str:
        # Tool names come from graph code, but a model may ask for one that does not
        # exist (ToolNode answers with an error under that name): bound them.
        if name in self._tools:
            return name
        if len(self._tools) < MAX_TOOL_NAMES and name.isidentifier():
            self._tools.add(name)
            return name
        return OTHER

    def record_queue(self, stats: QueueStats) -> None:
        self.in_flight.set(stats.in_flight)
        self._in_flight_now = stats.in_flight
        if stats.queued is not None:
            self.queue_depth.set(stats.queued)
            self._queued_now = stats.queued

    def run_stats(self) -> dict[str, float]:
        """The last counts, as Serve's autoscaling reads them (``record_autoscaling_stats``)."""
        return run_stats(self._in_flight_now, self._queued_now)
