"""The in-process eval router reads the repository's default models file."""

from __future__ import annotations

from agent_runtime.config.models_file import load
from agent_runtime.evals.local import default_models
from tests.evals.eval_harness import ROOT


def test_the_eval_router_uses_the_default_models_file() -> None:
    assert default_models() == load(ROOT / "models.yaml")
