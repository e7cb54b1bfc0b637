"""Learning curves: the search metric over generator steps for every trial, the champion highlighted, early-stopped
and diverged trials marked where they ended; small charts for the other scores."""
from __future__ import annotations

from orchestrator.report.data import ReportData, TrialRecord
from orchestrator.report.sections.common import caption, with_floor
from orchestrator.report.sections.table import score_columns
from orchestrator.report.svg import (BLACK, BLUE, ORANGE, PURPLE, SKY, VERMILION, chart_for, esc, legend)

TITLE = "Learning curves"
MAX_POINTS = 200  # per trial and chart: enough for a smooth curve, bounded page size
OTHER_CHARTS = 6


def downsample(points: list[tuple[float, float]], limit: int = MAX_POINTS) -> list[tuple[float, float]]:
    """Every k-th point, always keeping the last (where a trial ended)."""
    if len(points) <= limit:
        return points
    stride = -(-len(points) // limit)
    return points[::stride][: limit - 1] + [points[-1]]


def metric_chart(data: ReportData, metric: str, width: int, height: int, marks: bool = True,
                 max_points: int = MAX_POINTS) -> str:
    series = {t.trial_id: downsample(t.series(metric), max_points) for t in data.trials}
    xs = [p[0] for s in series.values() for p in s] + [0]
    ys = [p[1] for s in series.values() for p in s]
    floor = data.floors.get(f"{metric}_floor")
    if not ys:
        return ""
    chart = chart_for(width, height, xs, ys + ([floor] if floor is not None else []), "generator step",
                      with_floor(metric, {}), xlog=False, title=metric)
    champion = None
    for t in data.trials:
        points = series[t.trial_id]
        if t.trial_id == data.champion:
            champion = (t, points)
            continue
        colour = SKY if t.status == "stopped" else BLUE
        chart.line(points, colour, 1.3, 0.65, title=f"trial {t.trial_id} ({t.status})", cls=f"t-{t.trial_id}")
        if marks:
            _end_marker(chart, t, points)
    if floor is not None:
        chart.hline(floor, BLACK, f"real-vs-real floor {floor:.4g}")
    if champion is not None:
        t, points = champion
        chart.line(points, VERMILION, 3.2, 1.0, title=f"champion {t.trial_id}")
        if points:
            chart.marker(points[-1], VERMILION, "dot", f"champion {t.trial_id}")
    return chart.svg()


def _end_marker(chart, t: TrialRecord, points) -> None:
    if t.status == "stopped" and points:
        chart.marker(points[-1], ORANGE, "cross", f"trial {t.trial_id}: {t.reason}")
    elif t.status in ("diverged", "error"):
        last = points[-1] if points else None
        if last is not None:
            chart.marker(last, PURPLE, "triangle", f"trial {t.trial_id}: {t.reason}")


def render(data: ReportData, max_points: int = MAX_POINTS) -> str:
    main = metric_chart(data, data.metric, 900, 380, max_points=max_points)
    if not main:
        return caption("No evaluation has been reported yet.")
    items = [("line", VERMILION, f"champion ({data.champion})" if data.champion else "champion"),
             ("thin", BLUE, "finished or running"), ("thin", SKY, "stopped early"),
             ("cross", ORANGE, "stopped early here"), ("triangle", PURPLE, "diverged or failed after this"),
             ("dash", BLACK, "real-vs-real floor")]
    others = [m for m in score_columns(data)[1:] if any(t.series(m) for t in data.trials)][:OTHER_CHARTS]
    small = "".join(f'<figure class="small"><figcaption>{esc(m)}</figcaption>{metric_chart(data, m, 420, 240, False, max_points)}'
                    "</figure>" for m in others)
    note = ("Each line is one trial's score at every evaluation (the same fixed real and generated sample counts at "
            "every step); hover a line or marker for the trial. ")
    return (caption(note) + f'<figure>{main}</figure>' + legend(items)
            + (f'<h3>Other scores</h3><div class="grid2">{small}</div>' if small else ""))
