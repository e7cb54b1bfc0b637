"""Hyperparameters vs score: parallel coordinates (one axis per searched hyperparameter, the score last, one line
per scored trial coloured by its score) and an importance estimate with its method named."""
from __future__ import annotations

import json
import math
from typing import Any, Optional

from orchestrator.report.data import ReportData, TrialRecord
from orchestrator.report.sections.common import caption, param_label, value
from orchestrator.report.svg import BLUE, ORANGE, SKY, esc, fmt

TITLE = "Hyperparameters"
MIN_TRIALS_FOR_IMPORTANCE = 5
FOREST_TREES = 100
PERMUTATION_REPEATS = 5


def _key(v: Any) -> str:
    return json.dumps(v, sort_keys=True, default=str)


class Axis:
    """One vertical axis: numeric (linear or log) or categorical (values spread evenly, in first-seen order)."""

    def __init__(self, name: str, values: list[Any], log: bool, always_numeric: bool = False):
        self.name = name
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        few = len(set(map(_key, values))) <= 3 and not always_numeric
        self.categories = None if numeric and not few else sorted({_key(v) for v in values})
        self.log = log and numeric and all(v > 0 for v in values)
        nums = [self._t(v) for v in values] if self.categories is None else []
        self.lo, self.hi = (min(nums), max(nums)) if nums else (0.0, 1.0)

    def _t(self, v: float) -> float:
        return math.log10(v) if self.log else float(v)

    def position(self, v: Any) -> float:
        """0 (bottom) .. 1 (top)."""
        if self.categories is not None:
            n = len(self.categories)
            return 0.5 if n == 1 else self.categories.index(_key(v)) / (n - 1)
        return 0.5 if self.hi == self.lo else (self._t(v) - self.lo) / (self.hi - self.lo)

    def labels(self) -> list[tuple[float, str]]:
        if self.categories is not None:
            return [(self.position(json.loads(c)), value(json.loads(c))) for c in self.categories]
        ticks = [self.lo, (self.lo + self.hi) / 2, self.hi]
        return [(0.5 if self.hi == self.lo else (t - self.lo) / (self.hi - self.lo), fmt(10 ** t if self.log else t))
                for t in ticks]


def score_colour(fraction: float) -> str:
    """0 = best (dark blue) .. 1 = worst (orange), through sky blue: Okabe-Ito hues, readable on white."""
    stops = [(0.0, BLUE), (0.5, SKY), (1.0, ORANGE)]
    for (f0, c0), (f1, c1) in zip(stops, stops[1:]):
        if fraction <= f1:
            w = (fraction - f0) / (f1 - f0)
            rgb = [round(int(c0[i:i + 2], 16) * (1 - w) + int(c1[i:i + 2], 16) * w) for i in (1, 3, 5)]
            return "#" + "".join(f"{c:02x}" for c in rgb)
    return ORANGE


def parallel_coordinates(data: ReportData, trials: list[TrialRecord], keys: list[str]) -> str:
    width, height, top, bottom, left, right = 960, 340, 30, 290, 70, 890
    axes = [Axis(k, [t.params[k] for t in trials], data.space.get(k) == "loguniform") for k in keys]
    axes.append(Axis(data.metric, [t.value for t in trials], False, always_numeric=True))
    xs = [left + i * (right - left) / max(len(axes) - 1, 1) for i in range(len(axes))]
    lo, hi = axes[-1].lo, axes[-1].hi
    parts = []
    order = sorted(trials, key=lambda t: t.value if data.mode == "max" else -t.value)  # best drawn last, on top
    for t in order:
        share = 0.0 if hi == lo else (t.value - lo) / (hi - lo)
        worst = share if data.mode == "min" else 1 - share
        pts = " ".join(f"{x:.1f},{bottom - a.position(v) * (bottom - top):.1f}"
                       for x, a, v in zip(xs, axes, [t.params[k] for k in keys] + [t.value]))
        width_px = 3.2 if t.trial_id == data.champion else 1.4
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{score_colour(worst)}" stroke-width="{width_px}" '
                     f'stroke-opacity="0.85"><title>trial {esc(t.trial_id)}: {esc(data.metric)} {fmt(t.value)}'
                     "</title></polyline>")
    for x, a in zip(xs, axes):
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom}" stroke="#444" stroke-width="1.2"/>')
        title = param_label(a.name) + (" (log)" if a.log else "")
        parts.append(f'<text x="{x:.1f}" y="{top - 12}" text-anchor="middle" class="axis">{esc(title)}</text>')
        for pos, label in a.labels():
            y = bottom - pos * (bottom - top)
            parts.append(f'<text x="{x + 5:.1f}" y="{y + 4:.1f}" class="tick pc">{label}</text>')
    gradient = "".join(f'<stop offset="{f}" stop-color="{score_colour(f)}"/>' for f in (0, 0.5, 1))
    legend_bar = (f'<defs><linearGradient id="pcg">{gradient}</linearGradient></defs>'
                  f'<rect x="{left}" y="{height - 26}" width="200" height="10" fill="url(#pcg)"/>'
                  f'<text x="{left}" y="{height - 4}" class="tick">best {esc(data.metric)}</text>'
                  f'<text x="{left + 200}" y="{height - 4}" text-anchor="end" class="tick">worst</text>')
    return (f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="parallel coordinates">{"".join(parts)}{legend_bar}</svg>')


def _encode(trials: list[TrialRecord], keys: list[str], space: dict[str, str]):
    """Trials x hyperparameters as numbers: log10 for log-uniform, category index for choices."""
    columns = []
    for k in keys:
        values = [t.params[k] for t in trials]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            columns.append([math.log10(v) if space.get(k) == "loguniform" and v > 0 else float(v) for v in values])
        else:
            cats = sorted({_key(v) for v in values})
            columns.append([float(cats.index(_key(v))) for v in values])
    return [list(row) for row in zip(*columns)]


def importance(trials: list[TrialRecord], keys: list[str],
               space: dict[str, str]) -> Optional[list[tuple[str, float, float]]]:
    """(key, permutation importance share, Spearman rho) per hyperparameter, most important first."""
    if len(trials) < MIN_TRIALS_FOR_IMPORTANCE or not keys:
        return None
    import numpy as np
    from scipy.stats import spearmanr
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.inspection import permutation_importance

    x, y = np.array(_encode(trials, keys, space)), np.array([t.value for t in trials])
    forest = RandomForestRegressor(n_estimators=FOREST_TREES, min_samples_leaf=2, random_state=0).fit(x, y)
    perm = permutation_importance(forest, x, y, n_repeats=PERMUTATION_REPEATS, random_state=0).importances_mean
    perm = perm.clip(min=0)
    shares = perm / perm.sum() if perm.sum() > 0 else perm
    out = []
    for i, k in enumerate(keys):
        varies = len(set(x[:, i])) > 1 and len(set(y)) > 1  # Spearman is undefined for a constant column
        rho = spearmanr(x[:, i], y).statistic if varies else float("nan")
        out.append((k, float(shares[i]), float(rho)))
    return sorted(out, key=lambda r: -r[1])


def _importance_table(rows: list[tuple[str, float, float]], metric: str) -> str:
    body = "".join(
        f'<tr><td title="{esc(k)}">{esc(param_label(k))}</td><td class="num">{share:.0%}</td>'
        f'<td><div class="bar" style="width:{share * 240:.0f}px"></div></td>'
        f'<td class="num">{"–" if math.isnan(rho) else f"{rho:+.2f}"}</td></tr>' for k, share, rho in rows)
    return ('<table class="importance"><thead><tr><th>hyperparameter</th><th>importance</th><th></th>'
            f'<th>Spearman ρ with {esc(metric)}</th></tr></thead><tbody>{body}</tbody></table>')


def render(data: ReportData) -> Optional[str]:
    keys = sorted(k for k in data.space if all(k in t.params for t in data.scored))
    trials = data.scored
    if not keys or not trials:
        return caption("No searched hyperparameters, or no scored trial yet.")
    out = caption(f"One line per scored trial ({len(trials)}), from its hyperparameters to its {esc(data.metric)}; "
                  "colour by score, the champion drawn thicker. Log-uniform hyperparameters are on log axes; "
                  "choices are spread evenly. Hover a line for its trial.")
    out += f"<figure>{parallel_coordinates(data, trials, keys)}</figure>"
    rows = importance(trials, keys, data.space)
    out += "<h3>Importance</h3>"
    if rows is None:
        return out + caption(f"Needs at least {MIN_TRIALS_FOR_IMPORTANCE} scored trials ({len(trials)} so far).")
    method = (f"Method: permutation importance of a random forest ({FOREST_TREES} trees, scikit-learn) fitted to the "
              f"{len(trials)} scored trials, hyperparameters → {esc(data.metric)} (log10 of log-uniform values, "
              "choices as categories); shares of the total loss in fit when one hyperparameter is shuffled "
              f"({PERMUTATION_REPEATS} repeats). Spearman's ρ beside it gives the direction of a monotone trend "
              "(for choices, in the order of the axis above). With few trials, read both as hints.")
    return out + caption(method) + _importance_table(rows, data.metric)
