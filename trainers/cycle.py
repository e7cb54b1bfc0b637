"""The evaluation cycle: train `eval_every` steps, evaluate, report (with a checkpoint), until `steps`.

Every way a training runs drives this one loop: `trainers.loop.train` to the end (`NoReporter`), a Tune trial
(orchestrator/trial.py) and each rank of a DDP trial (orchestrator/ddp_trial.py). What differs is only where a
report and its checkpoint go and where a restart's checkpoint comes from: that is the `Reporter`. Any trainer with
the `Trainable` methods plugs in (`GANTrainer`, `TranslationTrainer`: `build_trainer` picks by the family's task).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Optional, Protocol, runtime_checkable


class TrainingDiverged(RuntimeError):
    """The losses became NaN/Inf or exploded: the trial ends as `diverged` instead of crashing the search."""

    def __init__(self, step: int, reason: str) -> None:
        super().__init__(f"training diverged at step {step}: {reason}")
        self.step = step
        self.reason = reason


@runtime_checkable
class Trainable(Protocol):
    """What the cycle asks of a trainer."""

    step: int  # generator updates done so far (restored by load_checkpoint)
    rank: int  # 0 evaluates, checkpoints and reports; other ranks of a data-parallel run only train

    def train_steps(self, n: int) -> dict[str, float]:
        """Train `n` steps; the mean diagnostics. Raises TrainingDiverged (on every rank together)."""
        ...

    def evaluate(self) -> dict[str, float]:
        """The scores of the current state ({} on ranks other than 0)."""
        ...

    def applied_hparams(self) -> dict[str, float]:
        """The hyperparameters the optimizers hold now (after a PBT exploit: the recipient's own)."""
        ...

    def fingerprint(self) -> float:
        """A cheap digest of the weights a checkpoint would hold: equal digests mean a copied state."""
        ...

    def save_checkpoint(self, directory: str | os.PathLike) -> Path: ...

    def load_checkpoint(self, directory: str | os.PathLike) -> None: ...

    def close(self) -> None: ...


class Reporter(Protocol):
    """Where a cycle's reports go and where a restart comes from."""

    checkpoints: bool  # whether each report carries a checkpoint (written into a temporary folder for it)

    def restore_point(self) -> ContextManager[Optional[str]]:
        """A local folder holding the checkpoint to start from, or None for a fresh start."""
        ...

    def report(self, trainer: Trainable, metrics: dict[str, Any], checkpoint: Optional[Path]) -> None:
        """One evaluation's metrics (rank 0), or {} from another rank that only keeps in step."""
        ...

    def diverged(self, error: TrainingDiverged, metrics: dict[str, Any]) -> None:
        """The run ended diverged; `metrics` says so (diverged, step, diverged_reason)."""
        ...


@dataclass
class NoReporter:
    """Reports go nowhere but `on_eval`; a divergence is raised to the caller."""

    on_eval: Optional[Callable[[Any, dict[str, float]], None]] = None
    checkpoints: bool = False

    def restore_point(self) -> ContextManager[Optional[str]]:
        return contextlib.nullcontext(None)

    def report(self, trainer: Trainable, metrics: dict[str, Any], checkpoint: Optional[Path]) -> None:
        if self.on_eval and metrics:
            self.on_eval(trainer, metrics)

    def diverged(self, error: TrainingDiverged, metrics: dict[str, Any]) -> None:
        raise error


@dataclass
class CycleOutcome:
    status: str  # "finished" or "diverged"
    metrics: dict[str, Any] = field(default_factory=dict)  # the last report


def run_cycle(trainer: Trainable, reporter: Reporter, *, steps: int, eval_every: int,
              provenance: Optional[dict[str, float]] = None) -> CycleOutcome:
    """Drive `trainer` to `steps`; `provenance` goes into every report (who ran it: pid, start time, workers)."""
    provenance = dict(provenance or {})
    with reporter.restore_point() as directory:
        if directory:
            trainer.load_checkpoint(directory)  # re-applies this run's own hyperparameters
            # What a retried, resumed or PBT-exploited run started from, so it can be checked from outside.
            provenance.update(restored_step=float(trainer.step), restored_fingerprint=trainer.fingerprint())
    metrics: dict[str, Any] = {}
    while trainer.step < steps:
        try:
            stats = trainer.train_steps(min(eval_every, steps - trainer.step))
        except TrainingDiverged as exc:
            metrics = {"diverged": 1.0, "step": float(exc.step), "diverged_reason": exc.reason}
            reporter.diverged(exc, metrics)
            return CycleOutcome("diverged", metrics)
        if trainer.rank != 0:
            reporter.report(trainer, {}, None)  # keeps the ranks' reports in step
            continue
        metrics = {**stats, **trainer.evaluate(), **trainer.applied_hparams(), **provenance, "diverged": 0.0,
                   "fingerprint": trainer.fingerprint()}  # of the state this report checkpoints
        if not reporter.checkpoints:
            reporter.report(trainer, metrics, None)
            continue
        with tempfile.TemporaryDirectory(prefix="ganforge-ckpt-", ignore_cleanup_errors=True) as folder:
            trainer.save_checkpoint(folder)
            reporter.report(trainer, metrics, Path(folder))  # the reporter copies it before the folder goes
    return CycleOutcome("finished", metrics)


def build_trainer(cfg: Any, **options: Any) -> Trainable:
    """The trainer for a config, by its family's task (trainers/tasks.py): GANTrainer for generation families,
    TranslationTrainer for pix2pix / CycleGAN."""
    from trainers.tasks import trainer_class

    return trainer_class(cfg.model.family)(cfg, **options)
