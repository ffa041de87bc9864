"""The eval CLI: exit codes follow the thresholds, unusable input is refused, make eval runs."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent_runtime.cli.evaluate import evaluate, parser
from tests.evals.eval_harness import GOLDEN, ROOT


async def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = await evaluate(parser().parse_args(list(argv)), out)
    return code, out.getvalue()


async def test_cli_exit_codes_follow_the_thresholds(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    code, text = await cli("--golden", str(GOLDEN), "--out", out)
    assert code == 0
    assert "[3/6] multi_agent/analysis-average: PASS" in text
    assert "analysis-average  multi_agent  pass      5    5  no" in text
    assert "6 cases: 6 passed, 0 failed (0 judge failures, 0 run errors); mean relevance " in text
    assert f"metrics: {out}/default.prom" in text

    code, text = await cli("--golden", str(GOLDEN), "--out", out, "--min-helpfulness", "4")
    assert code == 1
    assert "    - helpfulness 3 < 4" in text
    assert "6 cases: 2 passed, 4 failed" in text
    assert json.loads((tmp_path / "out" / "default.json").read_text())["passed"] is False

    code, text = await cli(
        "--golden", str(GOLDEN), "--out", out, "--graph", "react", "--min-relevance", "5", "-q"
    )
    assert code == 0
    assert "2 cases: 2 passed" in text and "[1/2]" not in text


async def test_cli_refuses_unusable_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: x\ncases: []\n")
    assert (await cli("--golden", str(bad), "--out", str(tmp_path)))[0] == 2
    assert "bad.yaml: cases" in capsys.readouterr().err
    bad.write_text("version: 1\nname: x\ncases: [{id: a, graph: nope, turns: [hi]}]\n")
    assert (await cli("--golden", str(bad), "--out", str(tmp_path)))[0] == 2
    assert "unknown graphs ['nope']" in capsys.readouterr().err
    assert (await cli("--golden", str(GOLDEN), "--case", "nope", "--out", str(tmp_path)))[0] == 2


def test_make_eval_command_runs(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent_runtime.cli.evaluate",
            "-q",
            "--out",
            str(tmp_path),
            "--case",
            "react-multiply",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "1 cases: 1 passed" in done.stdout
    assert (tmp_path / "default.prom").exists()
