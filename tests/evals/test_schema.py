"""The judge's score schema and the golden set file's format, each validated."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from agent_runtime.evals.schema import GoldenSetError, JudgeScore, load_golden
from graphs.registry import default_registry
from tests.evals.eval_harness import EXPECTED, GOLDEN


def test_score_schema_bounds_and_coercion() -> None:
    score = JudgeScore.model_validate(
        {"relevance": "4", "helpfulness": 2.0, "hallucination": "false", "extra": 1}
    )
    assert (score.relevance, score.helpfulness, score.hallucination, score.rationale) == (
        4,
        2,
        False,
        "",
    )
    for bad in (
        {"relevance": 0, "helpfulness": 3, "hallucination": False},
        {"relevance": 6, "helpfulness": 3, "hallucination": False},
        {"relevance": 3, "helpfulness": 3},
        {"relevance": 3.5, "helpfulness": 3, "hallucination": False},
        {"relevance": 3, "helpfulness": 3, "hallucination": "maybe"},
    ):
        with pytest.raises(ValidationError):
            JudgeScore.model_validate(bad)


def test_golden_set_format_is_validated(tmp_path: Path) -> None:
    golden = load_golden(GOLDEN)
    assert golden.version == 1 and golden.name == "default"
    assert [case.id for case in golden.cases] == list(EXPECTED)
    assert {case.graph for case in golden.cases} <= set(default_registry().ids())
    raw = yaml.safe_load(GOLDEN.read_text())
    bad = tmp_path / "bad.yaml"
    for change, problem in (
        ({"version": 2}, "bad.yaml: version: Input should be 1"),
        ({"cases": [raw["cases"][0], raw["cases"][0]]}, "case id 'general-capital' is used twice"),
        ({"cases": [{**raw["cases"][0], "expect": {"must_mention": "x"}}]}, "must_mention"),
        ({"cases": [{**raw["cases"][0], "turns": []}]}, "cases.0.turns"),
        ({"cases": [{**raw["cases"][0], "typo": 1}]}, "cases.0.typo: Extra inputs"),
    ):
        bad.write_text(yaml.safe_dump({**raw, **change}))
        with pytest.raises(GoldenSetError, match=problem):
            load_golden(bad)
    with pytest.raises(GoldenSetError, match="cannot read"):
        load_golden(tmp_path / "missing.yaml")
