"""Turn a finished Tune run into a ranked table and the champion candidate."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

from ray.tune import ResultGrid


@dataclass
class TrialOutcome:
    trial_id: str
    status: str  # done | stopped | diverged | error
    iterations: int
    step: int
    value: Optional[float]  # best checkpointed score (None when the trial never scored)
    params: dict[str, Any]
    result: Any  # ray.tune.Result, for its checkpoints

    def row(self, metric: str) -> dict[str, Any]:
        return {"trial": self.trial_id, "status": self.status, "iterations": self.iterations, "step": self.step,
                metric: self.value, **{f"param:{k}": v for k, v in self.params.items()}}


def _status(result, max_iterations: int) -> str:
    if result.error is not None:
        return "error"
    metrics = result.metrics or {}
    if metrics.get("diverged", 0.0) >= 1.0:
        return "diverged"
    return "done" if metrics.get("training_iteration", 0) >= max_iterations else "stopped"


def rank(grid: ResultGrid, metric: str, mode: str, max_iterations: int) -> list[TrialOutcome]:
    outcomes = []
    for result in grid:
        status = _status(result, max_iterations)
        value = None
        if status in ("done", "stopped"):
            best = result.get_best_checkpoint(metric, mode) if result.best_checkpoints else None
            scores = [m.get(metric) for c, m in result.best_checkpoints if c == best] if best else []
            value = scores[0] if scores and scores[0] is not None and math.isfinite(scores[0]) else None
        metrics = result.metrics or {}
        outcomes.append(TrialOutcome(
            trial_id=metrics.get("trial_id") or result.path.rstrip("/").split("/")[-1],
            status=status,
            iterations=int(metrics.get("training_iteration", 0)),
            step=int(metrics.get("step", 0)),
            value=value,
            params=dict(result.config or {}),
            result=result,
        ))
    sign = 1 if mode == "min" else -1
    # Scored trials first (best first), then the ones without a usable score.
    return sorted(outcomes, key=lambda o: (o.value is None, sign * o.value if o.value is not None else 0.0))


def format_table(outcomes: list[TrialOutcome], metric: str, floor: Optional[float] = None) -> str:
    keys = sorted({k for o in outcomes for k in o.params})
    header = ["rank", "trial", "status", "iter", "step", metric] + keys
    rows = []
    for i, o in enumerate(outcomes, 1):
        value = "-" if o.value is None else f"{o.value:.4g}"
        rows.append([str(i), o.trial_id, o.status, str(o.iterations), str(o.step), value]
                    + [_fmt(o.params.get(k)) for k in keys])
    widths = [max(len(r[c]) for r in [header] + rows) for c in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in [header] + rows]
    if floor is not None:
        lines.append(f"real-vs-real floor of {metric}: {floor:.4g}")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "-" if value is None else str(value)
