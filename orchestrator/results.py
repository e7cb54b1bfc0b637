"""Turn a finished Tune run into ranked tables and the champion candidate.

With several seeds per configuration, configurations are ranked by their median score over seeds, a diverged or
failed seed counting as the worst possible score (compare_gan's rule: robust evidence, never the luckiest seed).
"""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from typing import Any, Callable, Optional

from ray.tune import ResultGrid

from orchestrator.search import SEED_KEY, TRIAL_INDEX
from trainers.registry import Registry


@dataclass
class TrialOutcome:
    trial_id: str
    status: str  # done | stopped | diverged | error
    iterations: int
    step: int
    value: Optional[float]  # the score of the evaluation `search.score` picks (None when the trial never scored)
    params: dict[str, Any]
    result: Any  # ray.tune.Result, for its checkpoints
    checkpoint: Any = None  # that evaluation's ray.tune.Checkpoint: what registration exports
    checkpoint_metrics: Optional[dict[str, Any]] = None  # everything that evaluation reported

    @property
    def configuration(self) -> str:
        """The trial's hyperparameters without its seed: trials sharing it are seeds of one configuration."""
        return json.dumps({k: v for k, v in self.params.items() if k not in (SEED_KEY, TRIAL_INDEX)},
                          sort_keys=True, default=str)

    def row(self, metric: str) -> dict[str, Any]:
        return {"trial": self.trial_id, "status": self.status, "iterations": self.iterations, "step": self.step,
                metric: self.value, **{f"param:{k}": v for k, v in self.params.items()}}


@dataclass
class ConfigurationScore:
    configuration: str
    trials: list[TrialOutcome]
    median: float  # +/-inf when most seeds diverged
    ok_fraction: float  # share of seeds that neither diverged nor failed

    def row(self, metric: str) -> dict[str, Any]:
        return {"configuration": self.configuration, "seeds": len(self.trials), f"median_{metric}": self.median,
                "ok_fraction": self.ok_fraction, "trials": [t.trial_id for t in self.trials]}


def _status(result, max_iterations: int) -> str:
    if result.error is not None:
        return "error"
    metrics = result.metrics or {}
    if metrics.get("diverged", 0.0) >= 1.0:
        return "diverged"
    return "done" if metrics.get("training_iteration", 0) >= max_iterations else "stopped"


# search.score: which of a trial's checkpointed evaluations stands for it, as (checkpoint, its reported metrics).
Scoring = Callable[[Any, str, str], Optional[tuple[Any, dict[str, Any]]]]
SCORINGS: Registry[Scoring] = Registry("search.score")


@SCORINGS.register("best")
def best_evaluation(result, metric: str, mode: str) -> Optional[tuple[Any, dict[str, Any]]]:
    """The evaluation with the best score: what early stopping on a validation metric keeps."""
    if not result.best_checkpoints:
        return None
    best = result.get_best_checkpoint(metric, mode)
    return next(((c, m) for c, m in result.best_checkpoints if c == best), None)


@SCORINGS.register("last")
def last_evaluation(result, metric: str, mode: str) -> Optional[tuple[Any, dict[str, Any]]]:
    """The trial's final evaluation: rewards configurations that stay good, not ones that peak and fall apart.
    Tune never deletes a trial's latest checkpoint, whatever `storage.checkpoints_to_keep` says."""
    latest = result.checkpoint
    if latest is None:
        return None
    return latest, next((m for c, m in result.best_checkpoints or [] if c.path == latest.path), result.metrics or {})


def rank(grid: ResultGrid, metric: str, mode: str, max_iterations: int, score: str = "best") -> list[TrialOutcome]:
    pick = SCORINGS.get(score)
    outcomes = []
    for result in grid:
        status = _status(result, max_iterations)
        metrics = result.metrics or {}
        picked = pick(result, metric, mode) if status in ("done", "stopped") else None
        value = picked[1].get(metric) if picked else None
        usable = value is not None and math.isfinite(value)
        outcomes.append(TrialOutcome(
            trial_id=metrics.get("trial_id") or result.path.rstrip("/").split("/")[-1].removeprefix("trial_"),
            status=status,
            iterations=int(metrics.get("training_iteration", 0)),
            step=int(metrics.get("step", 0)),
            value=value if usable else None,
            params=dict(result.config or {}),
            result=result,
            checkpoint=picked[0] if usable else None,
            checkpoint_metrics=picked[1] if usable else None,
        ))
    sign = 1 if mode == "min" else -1
    # Scored trials first (best first), then the ones without a usable score.
    return sorted(outcomes, key=lambda o: (o.value is None, sign * o.value if o.value is not None else 0.0))


def rank_configurations(outcomes: list[TrialOutcome], mode: str) -> list[ConfigurationScore]:
    worst = math.inf if mode == "min" else -math.inf
    groups: dict[str, list[TrialOutcome]] = {}
    for o in outcomes:
        groups.setdefault(o.configuration, []).append(o)
    scores = []
    for configuration, trials in groups.items():
        values = [t.value if t.value is not None else worst for t in trials]
        ok = sum(t.status in ("done", "stopped") for t in trials) / len(trials)
        scores.append(ConfigurationScore(configuration, trials, statistics.median(values), ok))
    sign = 1 if mode == "min" else -1
    return sorted(scores, key=lambda c: (sign * c.median, -c.ok_fraction))


def champion(outcomes: list[TrialOutcome], mode: str) -> Optional[TrialOutcome]:
    """The best seed of the best-ranked configuration that has a usable score."""
    for config in rank_configurations(outcomes, mode):
        scored = [t for t in config.trials if t.value is not None]
        if scored:
            return min(scored, key=lambda t: t.value if mode == "min" else -t.value)
    return None


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[c]) for r in [header] + rows) for c in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in [header] + rows]


def format_table(outcomes: list[TrialOutcome], metric: str, mode: str = "min", floor: Optional[float] = None) -> str:
    keys = sorted({k for o in outcomes for k in o.params})
    rows = [[str(i), o.trial_id, o.status, str(o.iterations), str(o.step), _fmt(o.value)]
            + [_fmt(o.params.get(k)) for k in keys] for i, o in enumerate(outcomes, 1)]
    lines = _table(["rank", "trial", "status", "iter", "step", metric] + keys, rows)
    configs = rank_configurations(outcomes, mode)
    if any(len(c.trials) > 1 for c in configs):
        rows = [[str(i), _fmt(c.median), f"{c.ok_fraction:.0%}", str(len(c.trials)), c.configuration]
                for i, c in enumerate(configs, 1)]
        lines += ["", "configurations (median over seeds; a diverged seed counts as worst):"]
        lines += _table(["rank", f"median {metric}", "not diverged", "seeds", "hyperparameters"], rows)
    if floor is not None:
        lines.append(f"real-vs-real floor of {metric}: {floor:.4g}")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else "-"
    return "-" if value is None else str(value)
