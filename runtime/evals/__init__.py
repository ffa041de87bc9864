"""Evaluations: a golden set run through the graphs and scored by a judge model.

* :mod:`runtime.evals.schema`: the score (``JudgeScore``: relevance and helpfulness 1-5,
  hallucination true/false, rationale) and the golden set file format;
* :mod:`runtime.evals.judge`: the judge (a chat model answering JSON, validated);
* :mod:`runtime.evals.runner`: runs cases in process or on a stack, checks expectations;
* :mod:`runtime.evals.report`: JSON and Markdown reports, Prometheus metrics;
* :mod:`runtime.evals.local`: a model router over the in-process fake provider;
* :mod:`runtime.evals.online`: sampled judging of finished production runs;
* :mod:`runtime.evals.cli`: ``python -m runtime.evals`` (``make eval``).
"""

from runtime.evals.judge import Exchange, Judge, last_exchange
from runtime.evals.online import OnlineJudge
from runtime.evals.schema import GoldenSet, Judgement, JudgeScore, Thresholds, load_golden

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
