"""Typed data of evaluations: the judge's score, the golden set file and its expectations.

Scores are integers from 1 (worst) to 5 (best) for ``relevance`` and ``helpfulness``, and a
boolean ``hallucination`` (the answer states something neither the conversation nor the
tools support). A golden set is a versioned YAML (or JSON) file:

.. code-block:: yaml

    version: 1
    name: default
    thresholds: {min_relevance: 3, min_helpfulness: 3, allow_hallucination: false}
    cases:
      - id: analysis-average
        graph: multi_agent
        turns: ["Compute the average of these numbers: (4 + 8 + 15) / 3"]
        expect: {specialist: analysis, tools: [calculator], must_mention: ["9"]}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SCORE_MIN = 1
SCORE_MAX = 5


class JudgeScore(BaseModel):
    """What a judge answers about one exchange (extra keys in its JSON are ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    relevance: int = Field(ge=SCORE_MIN, le=SCORE_MAX, description="1-5: on topic.")
    helpfulness: int = Field(ge=SCORE_MIN, le=SCORE_MAX, description="1-5: useful to the user.")
    hallucination: bool = Field(description="The answer states unsupported facts or numbers.")
    rationale: str = Field(default="", max_length=4000, description="Why, in a sentence or two.")


class Judgement(BaseModel):
    """A judge's verdict: a score, or why its answer could not be used (``error``)."""

    score: JudgeScore | None = None
    error: str | None = None
    raw: str = Field(default="", description="The judge's reply, cut to 2,000 characters.")
    model: str | None = Field(default=None, description="The model that answered.")

    @property
    def ok(self) -> bool:
        return self.score is not None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Thresholds(_Strict):
    """The least scores a case must get; a judge failure fails the case too."""

    min_relevance: int = Field(default=3, ge=SCORE_MIN, le=SCORE_MAX)
    min_helpfulness: int = Field(default=3, ge=SCORE_MIN, le=SCORE_MAX)
    allow_hallucination: bool = False


class Expectations(_Strict):
    """What a case's run must show, checked without the judge (case-insensitive text)."""

    must_mention: list[str] = Field(default_factory=list, description="In the final answer.")
    must_not_mention: list[str] = Field(default_factory=list)
    specialist: str | None = Field(
        default=None, description="multi_agent: the specialist chosen (state 'agent')."
    )
    tools: list[str] | None = Field(
        default=None,
        description="Tools called in the last turn, as a set; [] means none; unset: any.",
    )
    state_contains: dict[str, Any] = Field(
        default_factory=dict,
        description="State key -> value it equals, or an item of it (a list or a string).",
    )
    min_relevance: int | None = Field(default=None, ge=SCORE_MIN, le=SCORE_MAX)
    min_helpfulness: int | None = Field(default=None, ge=SCORE_MIN, le=SCORE_MAX)
    allow_hallucination: bool | None = None

    def thresholds(self, default: Thresholds) -> Thresholds:
        """The suite's thresholds with this case's own on top."""
        return Thresholds(
            min_relevance=default.min_relevance
            if self.min_relevance is None
            else self.min_relevance,
            min_helpfulness=default.min_helpfulness
            if self.min_helpfulness is None
            else self.min_helpfulness,
            allow_hallucination=default.allow_hallucination
            if self.allow_hallucination is None
            else self.allow_hallucination,
        )


class GoldenCase(_Strict):
    """One conversation: user turns sent in order on one thread; the last one is judged."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    graph: str = Field(min_length=1, description="Graph id in the registry.")
    description: str = ""
    turns: list[str] = Field(min_length=1)
    expect: Expectations = Field(default_factory=Expectations)


class GoldenSet(_Strict):
    version: Literal[1] = Field(description="Format version of the golden set file.")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    description: str = ""
    thresholds: Thresholds = Field(default_factory=Thresholds)
    cases: list[GoldenCase] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> GoldenSet:
        seen: set[str] = set()
        for case in self.cases:
            if case.id in seen:
                raise ValueError(f"case id {case.id!r} is used twice")
            seen.add(case.id)
        return self


class GoldenSetError(ValueError):
    """A golden set file that cannot be used; the message names the file and the field."""


def load_golden(path: str | Path) -> GoldenSet:
    """Read and validate a golden set file (YAML; JSON is YAML too)."""
    name = Path(path).name
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise GoldenSetError(f"{path}: cannot read the golden set ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise GoldenSetError(f"{name}: not valid YAML ({exc})") from exc
    try:
        return GoldenSet.model_validate(raw)
    except ValidationError as exc:
        problems = [
            f"{name}: {'.'.join(str(p) for p in error['loc']) or '(file)'}: {error['msg']}"
            for error in exc.errors(include_url=False)
        ]
        raise GoldenSetError("\n".join(problems)) from exc
