"""One Tune trial: train a GAN in-process, report scores and checkpoints, log to MLflow from the trial itself.

The trial drives the one evaluation cycle (trainers/cycle.py) with a `TuneReporter`: what is added here is only
Tune's (its reports, checkpoints and restarts), the trial's MLflow run and the report's sample grids.
Single-worker trials run the training loop directly inside this function trainable (no TorchTrainer: the GUIDE
measured 37 s vs 7.5 s for trivial trials). Checkpoints carry everything a restore needs, so a retried or resumed
trial continues exactly where it stopped.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
from ray import tune

from orchestrator.devices import trial_device
from orchestrator.report.grids import record_grid
from orchestrator.search import expand_trial_config
from orchestrator.tracking.trial_run import TrackingTarget, open_trial_tracker
from trainers.config import GANConfig
from trainers.cycle import TrainingDiverged, build_trainer, run_cycle

log = logging.getLogger(__name__)

# What a diverged trial reports, so schedulers rank it last without the search crashing.
SENTINEL = {"min": 1e9, "max": -1e9}


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a job shares (sent once through `tune.with_parameters`)."""

    base: dict[str, Any]  # the job's data/model/train sections
    metric: str
    mode: str
    cpus_per_trial: float
    cache_dir: Optional[str] = None
    workers_per_trial: int = 1
    gpus_per_trial: float = 0.0
    max_failures: int = 0
    train_storage: Optional[str] = None  # where multi-worker trials keep their Train runs
    tracking: Optional[TrackingTarget] = None
    report_storage: Optional[str] = None  # where each evaluation's sample grid goes (orchestrator.report)
    tags: dict[str, str] = field(default_factory=dict)

    def config_for(self, sampled: dict[str, Any]) -> GANConfig:
        data = {k: dict(v) for k, v in self.base.items()}
        for path, value in expand_trial_config(sampled, base_seed=self.base["train"].get("seed", 0)).items():
            node = data
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = value
        return GANConfig.model_validate(data)


def quiet_ray_logs() -> None:
    """Per-checkpoint INFO lines of Ray Train/Tune in a trial process would flood the driver's console."""
    for name in ("ray.train", "ray.tune"):
        logging.getLogger(name).setLevel(logging.WARNING)


@contextlib.contextmanager
def checkpoint_folder(checkpoint: Any) -> Iterator[Optional[str]]:
    """A Ray (Tune or Train) checkpoint as a local folder for as long as the block runs; None stays None."""
    if checkpoint is None:
        yield None
        return
    with checkpoint.as_directory() as directory:
        yield directory


@dataclass
class TuneReporter:
    """The cycle's reports as Tune reports with Tune checkpoints, copied to the trial's MLflow run and its sample
    grids to the report's storage; a restart starts from the checkpoint Tune hands the trial."""

    trial_id: str
    metric: str
    mode: str
    tracker: Any = None  # orchestrator.tracking.TrialTracker, or None without tracking
    report_storage: Optional[str] = None
    checkpoints: bool = True

    def restore_point(self):
        return checkpoint_folder(tune.get_checkpoint())

    def report(self, trainer: Any, metrics: dict[str, Any], checkpoint: Optional[Path]) -> None:
        if self.report_storage:
            record_grid(trainer, self.report_storage, self.trial_id)
        if self.tracker is not None:
            self.tracker.log_report(metrics, step=trainer.step)
            self.tracker.log_artifact(checkpoint / "grid.png", artifact_path=f"grids/step_{trainer.step:07d}")
        metrics["reported_at"] = time.time()  # with started_at: when the trial ran, to count trials run at once
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(checkpoint)))  # Tune copies it

    def diverged(self, error: TrainingDiverged, metrics: dict[str, Any]) -> None:
        log.warning("trial %s: %s", self.trial_id, error)
        tune.report({self.metric: SENTINEL[self.mode], **metrics})


def run_trial(config: dict[str, Any], ctx: TrialContext) -> None:
    """The Tune function trainable."""
    quiet_ray_logs()
    torch.set_num_threads(max(1, int(ctx.cpus_per_trial)))
    trial_id = tune.get_context().get_trial_id() or "local"
    cfg = ctx.config_for(config)
    placed = trial_device(cfg.train.device, ctx.gpus_per_trial, who=f"trial {trial_id}")
    trainer = build_trainer(cfg, cache_dir=ctx.cache_dir, select_metric=ctx.metric, device=placed.device)
    try:  # what every score depends on besides the generator: feature space, weights digest, sample counts, resize
        scoring = {f"metrics.{k}": v for k, v in trainer.evaluator.provenance.items()}
        tracker = open_trial_tracker(ctx.tracking, trial_id, {**config, **placed.params(), **scoring})
    except BaseException:
        trainer.close()
        raise
    reporter = TuneReporter(trial_id, ctx.metric, ctx.mode, tracker, ctx.report_storage)
    status = "FAILED"
    # Wall-clock start: lets anyone count how many trials ran at once from the reports alone.
    provenance = {"pid": float(os.getpid()), "started_at": time.time()}
    try:
        outcome = run_cycle(trainer, reporter, steps=cfg.train.steps, eval_every=cfg.train.eval_every,
                            provenance=provenance)
        status = "FINISHED" if outcome.status == "finished" else "KILLED"
    except SystemExit:  # Tune stopped the trial inside tune.report (ASHA/median): stopped early, not failed
        status = "KILLED"
        raise
    finally:
        trainer.close()
        if tracker is not None:
            tracker.finish(status)
