"""Budget: the best score to expect after k trials (Lucic et al. 2018), by bootstrap over the finished trials, with a
90 % band; with several seeds per configuration, each configuration's median and spread (Kurach et al. 2019)."""
from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Optional

from orchestrator.report.data import ReportData
from orchestrator.report.sections.common import caption, param_label, value
from orchestrator.report.svg import BLACK, BLUE, PURPLE, VERMILION, Chart, Scale, chart_for, esc, fmt, legend

TITLE = "Budget"
BOOTSTRAP_DRAWS = 2000
BAND = (0.05, 0.95)


def expected_best(values: list[float], mode: str, draws: int = BOOTSTRAP_DRAWS, seed: int = 0):
    """For k = 1..n: (k, mean, low, high) of the best of k trials drawn with replacement."""
    import numpy as np

    rng = np.random.default_rng(seed)
    pool = np.asarray(values, dtype=float)
    out = []
    for k in range(1, len(pool) + 1):
        samples = rng.choice(pool, size=(draws, k), replace=True)
        best = samples.min(axis=1) if mode == "min" else samples.max(axis=1)
        out.append((k, float(best.mean()), float(np.quantile(best, BAND[0])), float(np.quantile(best, BAND[1]))))
    return out


def _budget_chart(data: ReportData) -> tuple[str, str]:
    finished = [t.value for t in data.trials if t.status == "done" and t.value is not None]
    pool, which = finished, "finished trials"
    if len(finished) < 2:
        pool, which = [t.value for t in data.scored], "scored trials (too few finished ones)"
    if len(pool) < 2:
        return "", ""
    curve = expected_best(pool, data.mode)
    floor = data.floors.get(f"{data.metric}_floor")
    ys = [c[2] for c in curve] + [c[3] for c in curve] + ([floor] if floor is not None else [])
    chart = chart_for(900, 320, [c[0] for c in curve], ys, "trials run (k)", f"expected best {data.metric}",
                      xlog=False)
    chart.band([(c[0], c[2]) for c in curve], [(c[0], c[3]) for c in curve], BLUE)
    chart.line([(c[0], c[1]) for c in curve], BLUE, 2.5, title="expected best")
    for k, mean, lo, hi in curve:
        chart.marker((k, mean), BLUE, "dot", f"k={k}: {fmt(mean)} (90 % of draws in {fmt(lo)} … {fmt(hi)})", 3)
    if floor is not None:
        chart.hline(floor, BLACK, f"real-vs-real floor {floor:.4g}")
    note = (f"Bootstrap over the {len(pool)} {which}: {BOOTSTRAP_DRAWS} draws of k trials with replacement; the line "
            f"is the mean best {esc(data.metric)}, the band holds 90 % of the draws. A curve still falling at the "
            "right says more trials would likely help.")
    return chart.svg() + legend([("line", BLUE, "expected best"), ("band", BLUE, "5–95 % of draws"),
                                 ("dash", BLACK, "real-vs-real floor")]), note


def _seeds_chart(data: ReportData) -> Optional[str]:
    groups = defaultdict(list)
    for t in data.trials:
        groups[t.configuration].append(t)
    if not any(len(g) > 1 for g in groups.values()):
        return None
    worst = math.inf if data.mode == "min" else -math.inf
    rows = []
    for config, trials in groups.items():
        scored = [t.value for t in trials if t.value is not None]
        median = statistics.median([t.value if t.value is not None else worst for t in trials])
        rows.append((median, config, trials, scored))
    rows.sort(key=lambda r: r[0] if data.mode == "min" else -r[0])
    values = [v for r in rows for v in r[3]]
    if not values:
        return None
    height = 40 + 26 * len(rows) + 46
    margin = (16, 20, 46, 300)  # room on the left for each configuration's description
    left, right, top, bottom = Chart.frame(900, height, margin)
    x = Scale.fit(values, left, right)
    chart = Chart(900, height, x, Scale(0, len(rows), top, bottom), f"{data.metric} over seeds", "", margin=margin,
                  yticks=False)
    labels = []
    for i, (median, config, trials, scored) in enumerate(rows):
        y = i + 0.5
        failed = len(trials) - len(scored)
        if scored:
            chart.line([(min(scored), y), (max(scored), y)], BLUE, 2, title="range over seeds")
            for v in scored:
                chart.marker((v, y), BLUE, "dot", f"{fmt(v)}", 3)
        if math.isfinite(median):
            chart.marker((median, y), VERMILION, "cross", f"median {fmt(median)}", 6)
        desc = ", ".join(f"{param_label(k)} {value(v)}" for k, v in sorted(trials[0].params.items())
                         if k != "train.seed" and k in data.space)
        py = chart.y(y)
        extra = f" · {failed} diverged/failed" if failed else ""
        labels.append(f'<text x="{left - 8}" y="{py + 4:.1f}" text-anchor="end" class="tick">'
                      f'<title>{esc(desc)}</title>{esc(desc[:44] + ("…" if len(desc) > 44 else ""))}'
                      f' ({len(trials)} seeds{extra})</text>')
        if failed:
            chart.marker((x.hi, y), PURPLE, "triangle", f"{failed} of {len(trials)} seeds diverged or failed", 4)
    svg = chart.svg().replace("</svg>", "".join(labels) + "</svg>")
    return (caption("Each configuration's seeds: dots are seeds, the bar their range, the cross the median the run "
                    "ranks by (a diverged seed counts as the worst score, a triangle marks it).") + svg)


def render(data: ReportData) -> Optional[str]:
    svg, note = _budget_chart(data)
    out = (caption(note) + f"<figure>{svg}</figure>") if svg else caption("Needs at least two scored trials.")
    seeds = _seeds_chart(data)
    if seeds:
        out += "<h3>Configurations over seeds</h3>" + seeds
    return out
