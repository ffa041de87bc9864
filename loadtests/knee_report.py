"""``make loadtest-knee``'s report: the steps as a table, the knee, ``knee.json`` and a PNG of
runs/s, p50/p99, errors and replicas per deployment over the run."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from loadtests.knee_replicas import Replicas
from loadtests.knee_steps import Knee, StepLog, StepStats


class KneeReport(BaseModel):
    command: str
    date: str
    host: str
    load_average: tuple[float, float, float]  # the machine's 1/5/15 min, at the end
    locust_cpu: float  # share of one core Locust used over the run
    log: StepLog
    knee: Knee
    replicas: Replicas


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _cells(step: StepStats) -> list[str]:
    return [
        str(step.step),
        str(step.users),
        str(step.requests),
        f"{step.runs_per_s:.1f}",
        _ms(step.p50_ms),
        _ms(step.p99_ms),
        str(step.errors),
        f"{100 * step.error_rate:.2f}%",
    ]


_HEADERS = ["step", "users", "requests", "runs/s", "p50 ms", "p99 ms", "errors", "error %"]


def format_table(report: KneeReport) -> str:
    """Each step, marked ``knee`` or with why it broke the SLO, then the verdict."""
    slo = report.log.slo
    rows = [[*_HEADERS, ""]]
    for step in report.log.steps:
        why = slo.breach(step)
        mark = "<- knee" if step == report.knee.knee else (f"x {why}" if why else "")
        rows.append([*_cells(step), mark])
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADERS))]
    lines = [
        "  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1]
        for row in rows
    ]
    lines.append("")
    lines.append(
        f"SLO: p99 <= {slo.p99_ms:.0f} ms and errors <= {slo.max_error_rate:.2%} per step "
        f"of {report.log.plan.step_s:g} s"
    )
    lines.append(f"Knee: {knee_line(report.knee)}")
    lines.append(f"Load average at the end: {' '.join(f'{v:.2f}' for v in report.load_average)}")
    lines.append(f"Replicas: {report.replicas.note}")
    busy = " (near a core: the load generator may be the limit)" if report.locust_cpu > 0.8 else ""
    lines.append(f"Locust used {report.locust_cpu:.0%} of a core{busy}")
    return "\n".join(lines)


def knee_line(knee: Knee) -> str:
    if knee.knee is None:
        return knee.reason
    k = knee.knee
    return (
        f"{k.users} users, {k.runs_per_s:.1f} runs/s, p50 {_ms(k.p50_ms)} ms, "
        f"p99 {_ms(k.p99_ms)} ms, errors {k.errors} ({k.error_rate:.2%}); {knee.reason}"
    )


def _title(report: KneeReport) -> str:
    knee = report.knee.knee
    if knee is None:
        return f"No knee: {report.knee.reason}"
    beyond = "" if report.knee.found else " (max users; the knee lies beyond)"
    return (
        f"{report.host}: knee at {knee.users} users, {knee.runs_per_s:.1f} runs/s, "
        f"p99 {_ms(knee.p99_ms)} ms{beyond}"
    )


def write_json(report: KneeReport, path: Path) -> None:
    path.write_text(report.model_dump_json(indent=2) + "\n")


def write_png(report: KneeReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display; and imported here only, as it is slow to import
    import matplotlib.pyplot as plt

    log = report.log
    fig, (rate, latency, errors, replicas) = plt.subplots(4, 1, figsize=(9, 10), sharex=True)
    middles = [(s.start_s + s.end_s) / 2 for s in log.samples]

    rate.plot(middles, [s.runs_per_s for s in log.samples], marker=".", label="runs/s")
    rate.set_ylabel("runs/s")
    if log.steps:
        # Users as a staircase: each step's count over its whole span.
        edges = [s.start_s for s in log.steps] + [log.steps[-1].end_s]
        counts = [s.users for s in log.steps] + [log.steps[-1].users]
        users = rate.twinx()
        users.step(edges, counts, where="post", color="grey", linestyle="--")
        users.set_ylabel("users (dashed)")

    for label, values in (
        ("p50", [s.p50_ms for s in log.samples]),
        ("p99", [s.p99_ms for s in log.samples]),
    ):
        latency.plot(middles, [float("nan") if v is None else v for v in values], label=label)
    latency.axhline(log.slo.p99_ms, color="red", linestyle=":", label="SLO (p99)")
    latency.set_ylabel("runs/wait, ms")
    latency.legend(fontsize=8, loc="upper left")

    errors.plot(middles, [100 * s.error_rate for s in log.samples], color="red")
    errors.axhline(100 * log.slo.max_error_rate, color="red", linestyle=":")
    errors.set_ylabel("errors, % of requests")

    if report.replicas.series:
        for name, points in sorted(report.replicas.series.items()):
            replicas.step([t for t, _ in points], [v for _, v in points], where="post", label=name)
        replicas.legend(fontsize=8, loc="upper left")
    else:
        replicas.text(
            0.5, 0.5, report.replicas.note, ha="center", va="center", wrap=True, fontsize=9,
            transform=replicas.transAxes,
        )  # fmt: skip
        replicas.set_yticks([])  # no counts to read
    replicas.set_ylabel("replicas")
    replicas.set_xlabel("seconds since the load began")

    for axis in (rate, latency, errors, replicas):
        if report.knee.knee is not None:
            axis.axvspan(report.knee.knee.start_s, report.knee.knee.end_s, color="green", alpha=0.1)
        if report.knee.broken_by is not None:
            broken = report.knee.broken_by
            axis.axvspan(broken.start_s, broken.end_s, color="red", alpha=0.1)
    rate.set_title(_title(report), fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
