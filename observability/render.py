"""Render the dashboards' key panels to a PNG from Prometheus, for those without Grafana.

The panels are read from the dashboards' JSON (``observability/grafana/dashboards``), so
the picture shows exactly what Grafana would: requests/s, p50/p99 latency, runs, tokens and
cost over time, and each provider model's breaker state.

    python -m observability.render --prometheus http://127.0.0.1:9090 \\
        --out docs/img/observability.png [--minutes 15]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from observability.prometheus import DASHBOARDS

# (dashboard file, panel title): the picture's panels, in reading order.
KEY_PANELS = (
    ("runtime-health.json", "Requests/s by route and status"),
    ("runtime-health.json", "Latency p50 / p99 by route"),
    ("agents-and-cost.json", "Runs/s by graph and status"),
    ("agents-and-cost.json", "Tokens/s by model and direction"),
    ("agents-and-cost.json", "Cost USD/hour by model"),
    ("agents-and-cost.json", "Breaker state per provider model"),
)
MAX_SERIES = 8  # per panel: the largest ones, so the legend stays readable
BREAKER_STATES = ("closed", "half-open", "open")
STATE_COLOURS = ("#56a64b", "#f2cc0c", "#e02f44")
# Grafana's unit ids, as axis labels.
UNITS = {
    "reqps": "per second",
    "currencyUSD": "USD",
    "percentunit": "share",
    "short": "",
    "none": "",
}


@dataclass
class Series:
    label: str
    times: list[datetime]
    values: list[float]


@dataclass
class PanelData:
    title: str
    unit: str
    series: list[Series] = field(default_factory=list)
    dropped: int = 0


def load_panels(dashboards: Path = DASHBOARDS) -> dict[tuple[str, str], dict[str, Any]]:
    """Every panel (rows excluded) of every dashboard, by (file name, title)."""
    panels = {}
    for path in sorted(dashboards.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            if panel.get("type") != "row":
                panels[(path.name, panel["title"])] = panel
    return panels


def grafana_to_promql(expr: str, rate_interval: str) -> str:
    """A Grafana panel expression with its macros filled in."""
    return expr.replace("$__rate_interval", rate_interval).replace("$__interval", rate_interval)


def legend(template: str, labels: dict[str, str]) -> str:
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)
    return text.strip() or ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "value"


def query_range(
    client: httpx.Client, expr: str, start: float, end: float, step_s: float
) -> list[dict[str, Any]]:
    response = client.get(
        "/api/v1/query_range",
        params={"query": expr, "start": start, "end": end, "step": step_s},
    )
    response.raise_for_status()
    body = response.json()
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus refused {expr!r}: {body.get('error')}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def fetch(
    prometheus: str,
    *,
    minutes: float = 15.0,
    step_s: float | None = None,
    rate_interval: str = "1m",
    panels: tuple[tuple[str, str], ...] = KEY_PANELS,
) -> list[PanelData]:
    """The key panels' series over the last ``minutes`` (NaN points dropped)."""
    known = load_panels()
    end = time.time()
    start = end - minutes * 60
    step = step_s or max(1.0, minutes * 60 / 300)
    found = []
    with httpx.Client(base_url=prometheus, timeout=10.0) as client:
        for key in panels:
            panel = known[key]
            data = PanelData(panel["title"], panel["fieldConfig"]["defaults"].get("unit", ""))
            for target in panel["targets"]:
                expr = grafana_to_promql(target["expr"], rate_interval)
                for item in query_range(client, expr, start, end, step):
                    points = [(t, float(v)) for t, v in item["values"] if math.isfinite(float(v))]
                    if points:
                        data.series.append(
                            Series(
                                legend(target.get("legendFormat", ""), item["metric"]),
                                [datetime.fromtimestamp(t) for t, _ in points],
                                [v for _, v in points],
                            )
                        )
            data.series.sort(key=lambda s: max(s.values), reverse=True)
            data.dropped = max(0, len(data.series) - MAX_SERIES)
            data.series = data.series[:MAX_SERIES]
            found.append(data)
    return found


def draw(panels: list[PanelData], out: Path, title: str = "Agent runtime") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    columns = 2
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(14, 3.6 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        heading = panel.title + (
            f" (top {MAX_SERIES} of {MAX_SERIES + panel.dropped})" if panel.dropped else ""
        )
        ax.set_title(heading, fontsize=10)
        if "Breaker" in panel.title:
            _state_timeline(ax, panel)
        else:
            for series in panel.series:
                ax.plot(series.times, series.values, label=series.label, linewidth=1.2)
            if UNITS.get(panel.unit, panel.unit):
                ax.set_ylabel(UNITS.get(panel.unit, panel.unit), fontsize=8)
            if panel.series:
                ax.legend(fontsize=7, loc="best", framealpha=0.6)
        if not panel.series:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=3, maxticks=7))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    figure.suptitle(title)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=90)
    plt.close(figure)
    return out


def _state_timeline(ax: Any, panel: PanelData) -> None:
    """One row per model, coloured by breaker state (as Grafana's state timeline)."""
    import matplotlib.dates as mdates
    from matplotlib.patches import Patch

    for row, series in enumerate(panel.series):
        times = [mdates.date2num(t) for t in series.times]
        for i, (start, value) in enumerate(zip(times, series.values, strict=True)):
            end = times[i + 1] if i + 1 < len(times) else start
            state = min(max(round(value), 0), len(BREAKER_STATES) - 1)
            ax.broken_barh([(start, end - start)], (row - 0.4, 0.8), color=STATE_COLOURS[state])
    ax.set_yticks(range(len(panel.series)), [s.label for s in panel.series])
    ax.set_ylim(-0.6, max(len(panel.series), 1) - 0.4)
    ax.xaxis_date()
    legend = [Patch(color=c, label=s) for c, s in zip(STATE_COLOURS, BREAKER_STATES, strict=True)]
    ax.legend(handles=legend, fontsize=7, loc="upper right", ncols=3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--out", type=Path, default=Path("docs/img/observability.png"))
    parser.add_argument("--minutes", type=float, default=15.0, help="how far back")
    parser.add_argument("--rate-interval", default="1m", help="window of rate()")
    args = parser.parse_args(argv)
    try:
        panels = fetch(args.prometheus, minutes=args.minutes, rate_interval=args.rate_interval)
    except httpx.HTTPError as exc:
        print(f"cannot query Prometheus at {args.prometheus}: {exc}", file=sys.stderr)
        return 1
    draw(panels, args.out)
    for panel in panels:
        print(f"  {panel.title}: {len(panel.series) + panel.dropped} series")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
