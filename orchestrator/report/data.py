"""What a report shows, as plain data: built from a stored run (collect.py) or directly (bench/report_open.py)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

STATUSES = ("done", "stopped", "diverged", "error", "running")  # orchestrator.results' statuses, plus running


@dataclass
class TrialRecord:
    trial_id: str
    status: str  # one of STATUSES
    reason: str  # why the trial ended (or where it is), in words
    params: dict[str, Any]  # the searched hyperparameters it was given
    value: Optional[float]  # the score that ranks it (None: never scored)
    iterations: int
    step: int
    history: list[dict[str, float]] = field(default_factory=list)  # one row per evaluation, numeric metrics
    scores: dict[str, float] = field(default_factory=dict)  # every metric of the evaluation that ranks it
    configuration: str = ""  # its hyperparameters without the seed: seeds of one configuration share it
    grids: list[tuple[int, bytes]] = field(default_factory=list)  # (step, PNG) from the fixed latents

    def series(self, metric: str) -> list[tuple[float, float]]:
        """(step, value) of `metric` over the trial's evaluations, finite values only."""
        out = []
        for row in self.history:
            value, step = row.get(metric), row.get("step")
            if value is not None and step is not None and math.isfinite(value) and row.get("diverged", 0.0) < 1:
                out.append((step, value))
        return out


@dataclass
class ReportData:
    name: str
    metric: str
    mode: str  # min | max
    trials: list[TrialRecord]  # ranked: best first, unscored last
    champion: Optional[str] = None  # trial id
    champion_value: Optional[float] = None  # its score as the run recorded it (None: the trial's value here)
    search: dict[str, Any] = field(default_factory=dict)  # the spec's search section (algorithm, scheduler, ...)
    space: dict[str, str] = field(default_factory=dict)  # searched key -> distribution kind (choice, loguniform...)
    floors: dict[str, float] = field(default_factory=dict)  # "<metric>_floor" -> real-vs-real value
    dataset: dict[str, Any] = field(default_factory=dict)  # uri, name, rows, checksum, kind
    eval_samples: int = 0
    eval_every: int = 0
    steps: int = 0
    started_at: Optional[float] = None
    ended_at: Optional[float] = None
    running: bool = False
    registered: Optional[dict[str, Any]] = None  # name, version, alias, promoted
    pbt_records: list[dict[str, Any]] = field(default_factory=list)  # orchestrator.pbt_lineage records
    job_yaml: str = ""  # redacted
    resolved_spec: dict[str, Any] = field(default_factory=dict)  # redacted
    overrides: list[str] = field(default_factory=list)
    git_commit: Optional[str] = None
    ganforge_version: str = ""
    run_path: str = ""
    built_at: Optional[float] = None

    @property
    def scored(self) -> list[TrialRecord]:
        return [t for t in self.trials if t.value is not None]

    def trial(self, trial_id: Optional[str]) -> Optional[TrialRecord]:
        return next((t for t in self.trials if t.trial_id == trial_id), None)

    def better(self, a: float, b: float) -> bool:
        return a < b if self.mode == "min" else a > b
