"""A live trial table: each trial's status, iteration and metric, redrawn in place on a terminal, one line per
event elsewhere (CI logs, `ray job logs`)."""
from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from ray.tune import Callback


class TrialTable(Callback):
    def __init__(self, metric: str, mode: str, total: int, stream: TextIO | None = None, min_interval_s: float = 1.0):
        self.metric, self.mode, self.total = metric, mode, total
        self.stream = stream or sys.stdout
        self.interactive = self.stream.isatty()
        self.rows: dict[str, dict[str, Any]] = {}
        self._drawn_lines = 0
        self._last_draw = 0.0
        self.min_interval_s = min_interval_s
        self.started = time.monotonic()

    # -- Tune callback hooks
    def on_trial_start(self, iteration, trials, trial, **info):
        self._update(trial, status="RUNNING")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        diverged = result.get("diverged", 0.0) >= 1.0
        self._update(
            trial,
            status="DIVERGED" if diverged else "RUNNING",
            iteration=result.get("training_iteration", 0),
            step=int(result.get("step", 0)),
            value=result.get(self.metric),
        )

    def on_trial_complete(self, iteration, trials, trial, **info):
        row = self.rows.get(trial.trial_id, {})
        self._update(trial, status="DIVERGED" if row.get("status") == "DIVERGED" else "DONE", force=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._update(trial, status="ERROR", force=True)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._update(trial, status="RETRYING", force=True)

    def on_experiment_end(self, trials, **info):
        self._draw(force=True)

    # -- rendering
    def _update(self, trial, force: bool = False, **fields: Any) -> None:
        row = self.rows.setdefault(trial.trial_id, {"trial": str(trial), "iteration": 0, "step": 0, "value": None})
        changed_status = fields.get("status") != row.get("status")
        row.update(fields)
        if self.interactive:
            self._draw(force=force)
        elif changed_status or "value" in fields:
            self._print_line(row)

    def _print_line(self, row: dict[str, Any]) -> None:
        value = "-" if row["value"] is None else f"{row['value']:.4g}"
        print(f"[{time.monotonic() - self.started:6.1f}s] {row['trial']:<18} {row['status']:<9} "
              f"iter={row['iteration']} step={row['step']} {self.metric}={value}", file=self.stream, flush=True)

    def render(self) -> list[str]:
        done = sum(r["status"] in ("DONE", "DIVERGED", "ERROR") for r in self.rows.values())
        lines = [f"trials {done}/{self.total} finished   metric {self.metric} ({self.mode})   "
                 f"elapsed {time.monotonic() - self.started:.0f}s",
                 f"{'trial':<18} {'status':<9} {'iter':>5} {'step':>7} {self.metric:>12}"]
        for row in self.rows.values():
            value = "-" if row["value"] is None else f"{row['value']:.4g}"
            lines.append(f"{row['trial']:<18} {row['status']:<9} {row['iteration']:>5} {row['step']:>7} {value:>12}")
        return lines

    def _draw(self, force: bool = False) -> None:
        if not self.interactive:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < self.min_interval_s:
            return
        self._last_draw = now
        lines = self.render()
        if self._drawn_lines:
            self.stream.write(f"\x1b[{self._drawn_lines}F\x1b[J")  # move up and clear the previous table
        self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()
        self._drawn_lines = len(lines)
