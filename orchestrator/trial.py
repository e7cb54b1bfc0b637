"""One Tune trial: train a GAN in-process, report scores and checkpoints, log to MLflow from the trial itself.

Single-worker trials run the training loop directly inside this function trainable (no TorchTrainer: the GUIDE
measured 37 s vs 7.5 s for trivial trials). Checkpoints carry everything a restore needs, so a retried or resumed
trial continues exactly where it stopped.
"""
from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from ray import tune

from orchestrator.devices import trial_device
from orchestrator.report.grids import record_grid
from orchestrator.search import expand_trial_config
from trainers.config import GANConfig
from trainers.loop import GANTrainer, TrainingDiverged
from trainers.tasks import trainer_class

log = logging.getLogger(__name__)

# What a diverged trial reports, so schedulers rank it last without the search crashing.
SENTINEL = {"min": 1e9, "max": -1e9}


@dataclass(frozen=True)
class TrackingTarget:
    uri: str
    experiment: str
    parent_run_id: str


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


def _open_tracker(ctx: TrialContext, trial_id: str, params: dict[str, Any]):
    if ctx.tracking is None:
        return None
    from orchestrator.tracking import TrialTracker

    try:
        return TrialTracker(ctx.tracking.uri, ctx.tracking.experiment, ctx.tracking.parent_run_id, trial_id, params)
    except Exception as exc:  # tracking must never kill training; the driver reports missing runs
        log.warning("MLflow tracking unavailable for %s: %s", trial_id, exc)
        return None


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}


def quiet_ray_logs() -> None:
    """Per-checkpoint INFO lines of Ray Train/Tune in a trial process would flood the driver's console."""
    for name in ("ray.train", "ray.tune"):
        logging.getLogger(name).setLevel(logging.WARNING)


def run_trial(config: dict[str, Any], ctx: TrialContext) -> None:
    """The Tune function trainable."""
    quiet_ray_logs()
    torch.set_num_threads(max(1, int(ctx.cpus_per_trial)))
    trial_id = tune.get_context().get_trial_id() or "local"
    cfg = ctx.config_for(config)
    placed = trial_device(cfg.train.device, ctx.gpus_per_trial, who=f"trial {trial_id}")
    # GANTrainer for generation families, TranslationTrainer for pix2pix/cyclegan: the family's task decides.
    trainer = trainer_class(cfg.model.family)(cfg, cache_dir=ctx.cache_dir, select_metric=ctx.metric, device=placed.device)
    try:  # what every score depends on besides the generator: feature space, weights digest, sample counts, resize
        scoring = {f"metrics.{k}": v for k, v in trainer.evaluator.provenance.items()}
    except BaseException:
        trainer.close()
        raise
    tracker = _open_tracker(ctx, trial_id, {**config, **placed.params(), **scoring})
    status = "FAILED"
    # Wall-clock start: lets anyone count how many trials ran at once from the reports alone.
    provenance: dict[str, float] = {"pid": float(os.getpid()), "started_at": time.time()}
    try:
        checkpoint = tune.get_checkpoint()
        if checkpoint:
            with checkpoint.as_directory() as directory:
                trainer.load_checkpoint(directory)  # re-applies this trial's own hyperparameters
            # What a retried, resumed or PBT-exploited trial started from, so it can be checked from outside.
            provenance.update(restored_step=float(trainer.step), restored_fingerprint=fingerprint(trainer.G))
        while trainer.step < cfg.train.steps:
            try:
                stats = trainer.train_steps(min(cfg.train.eval_every, cfg.train.steps - trainer.step))
            except TrainingDiverged as exc:
                log.warning("trial %s: %s", trial_id, exc)
                tune.report({ctx.metric: SENTINEL[ctx.mode], "diverged": 1.0, "step": float(exc.step),
                             "diverged_reason": exc.reason})
                status = "KILLED"
                return
            metrics = {**stats, **trainer.evaluate(), **applied_hparams(trainer), **provenance, "diverged": 0.0}
            metrics["fingerprint"] = fingerprint(trainer.G)  # of the state this report checkpoints
            if ctx.report_storage:
                record_grid(trainer, ctx.report_storage, trial_id)
            _report(trainer, metrics, tracker)
        status = "FINISHED"
    except SystemExit:  # Tune stopped the trial inside tune.report (ASHA/median): stopped early, not failed
        status = "KILLED"
        raise
    finally:
        trainer.close()
        if tracker is not None:
            tracker.finish(status)


def applied_hparams(trainer: GANTrainer) -> dict[str, float]:
    """The hyperparameters the optimizers actually hold (after a PBT exploit: the recipient's, not the donor's)."""
    g, d = trainer.opt_g.param_groups[0], trainer.opt_d.param_groups[0]
    applied = {"applied_lr_g": float(g["lr"]), "applied_lr_d": float(d["lr"])}
    if "betas" in g:  # Adam-family optimizers; RMSprop (WGAN) has none
        applied["applied_beta1"] = float(g["betas"][0])
    return applied


def fingerprint(generator: torch.nn.Module) -> float:
    """A cheap digest of a generator's weights: equal digests across trials mean a copied state."""
    with torch.no_grad():
        return float(sum(p.double().sum() * (i + 1) for i, p in enumerate(generator.parameters())))


def _report(trainer: GANTrainer, metrics: dict[str, float], tracker) -> None:
    directory = Path(tempfile.mkdtemp(prefix="ganforge-ckpt-"))
    try:
        trainer.save_checkpoint(directory)
        if tracker is not None:
            tracker.log_metrics(_finite(metrics), step=trainer.step)
            tracker.log_artifact(directory / "grid.png", artifact_path=f"grids/step_{trainer.step:07d}")
        metrics["reported_at"] = time.time()  # with started_at: when the trial ran, to count trials run at once
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(directory)))
    finally:
        shutil.rmtree(directory, ignore_errors=True)  # Tune has copied it to storage
