"""Evaluations: a golden set run through the graphs and scored by a judge model.

May import ``core`` to ``execution`` and ``fake`` (not ``runs``).

* :mod:`agent_runtime.evals.schema`: the score (``JudgeScore``: relevance and helpfulness 1-5,
  hallucination true/false, rationale) and the golden set file format;
* :mod:`agent_runtime.evals.judge`: the judge (a chat model answering JSON, validated);
* :mod:`agent_runtime.evals.runner`: runs cases in process or on a stack, checks expectations;
* :mod:`agent_runtime.evals.report`: JSON and Markdown reports, Prometheus metrics;
* :mod:`agent_runtime.evals.local`: a model router over the in-process fake provider;
* :mod:`agent_runtime.evals.online`: sampled judging of finished production runs;
* :mod:`agent_runtime.cli.evaluate`: ``make eval``.
"""

from agent_runtime.evals.judge import Exchange, Judge, last_exchange
from agent_runtime.evals.online import OnlineJudge
from agent_runtime.evals.schema import GoldenSet, Judgement, JudgeScore, Thresholds, load_golden

__all__ = [
    "Exchange",
    "GoldenSet",
    "Judge",
    "JudgeScore",
    "Judgement",
    "OnlineJudge",
    "Thresholds",
    "last_exchange",
    "load_golden",
]
