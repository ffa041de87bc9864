"""``make soak``'s verdicts from samples: RSS growth after warm-up, errors, p99 drift; and
its section of the doc, rewritten in place."""

from __future__ import annotations

from pathlib import Path

from loadtests.soak_report import END_MARK, START_MARK, Sample, Soak, render, write_doc


def soak(last_latency_ms: float, end_rss_mib: float, error: str | None = None) -> Soak:
    measured = Soak(
        command="make soak MINUTES=6",
        date="2026-12-07 12:00 UTC",
        minutes=6,
        users=2,
        storage="PostgreSQL + Redis",
        warmup_s=60,
        window_s=60,
    )
    # 100 ms runs, then the last minute at ``last_latency_ms``.
    measured.ended = [(t / 10, 100.0, None) for t in range(3000)]
    measured.ended += [(300 + t / 10, last_latency_ms, None) for t in range(600)]
    if error is not None:
        measured.ended.append((359.5, 1.0, error))
    measured.samples = [
        Sample(0, {"ingress [1]": 100.0, "gone [2]": 50.0}),
        Sample(60, {"ingress [1]": 200.0, "gone [2]": 50.0}),  # warm-up growth is not counted
        Sample(360, {"ingress [1]": end_rss_mib}),
    ]
    return measured


def test_a_steady_soak_meets_every_target() -> None:
    verdicts = soak(last_latency_ms=110.0, end_rss_mib=210.0).verdicts()
    assert [met for _, _, met in verdicts] == [True, True, True]
    assert "+5.0% (ingress [1]: 200 -> 210 MiB)" in verdicts[0][1]


def test_growth_errors_and_drift_are_each_reported_unmet() -> None:
    verdicts = soak(last_latency_ms=130.0, end_rss_mib=230.0, error="HTTP 503").verdicts()
    assert [met for _, _, met in verdicts] == [False, False, False]
    assert verdicts[1][1] == "1 {'HTTP 503': 1}"
    assert verdicts[2][1] == "100 -> 130 ms (+30.0%)"


def test_the_doc_section_is_replaced_not_appended(tmp_path: Path) -> None:
    doc = tmp_path / "reliability.md"
    doc.write_text("# Reliability\n\nBefore.\n")
    write_doc(soak(110.0, 210.0), doc)
    write_doc(soak(130.0, 230.0), doc)
    text = doc.read_text()
    assert text.count(START_MARK) == 1 and text.count(END_MARK) == 1
    assert text.startswith("# Reliability\n\nBefore.\n\n## Soak (`make soak`)")
    assert render(soak(130.0, 230.0)) in text
