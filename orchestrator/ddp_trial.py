"""A multi-worker trial: a Ray `TorchTrainer` (DDP; gloo on CPU, nccl on GPU) inside the Tune function trainable.

Ray Train V2's TuneReportCallback forwards rank-0 metrics but no Tune checkpoint, which leaves PBT nothing to
exploit and a retried trial nothing to resume from. So the Train run hands each (metrics, checkpoint path) to this
Tune function through a Ray queue, and the function reports both to Tune itself: every checkpoint becomes a Tune
checkpoint, PBT copies a donor's whole state, and `resume_from_checkpoint` starts the workers from it.
"""
from __future__ import annotations

import logging
import tempfile
import threading
from typing import Any

import torch
from ray import train, tune
from ray.util.queue import Empty, Queue

from orchestrator.trial import SENTINEL, TrialContext, _finite, _open_tracker
from trainers.config import GANConfig
from trainers.loop import GANTrainer, TrainingDiverged

log = logging.getLogger(__name__)


class _ForwardReports(train.UserCallback):
    """Runs in the Train controller: passes rank 0's report to the Tune function (blocking: one in flight)."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    def after_report(self, run_context, metrics, checkpoint) -> None:
        self.queue.put({"metrics": dict(metrics[0]), "checkpoint": checkpoint})


def _worker_loop(config: dict[str, Any]) -> None:
    """What every DDP rank runs; rank 0 evaluates and checkpoints."""
    context = train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(max(1, int(config["cpus"])))
    cfg = GANConfig.model_validate(config["cfg"])
    device = train.torch.get_device() if torch.cuda.is_available() else torch.device("cpu")
    trainer = GANTrainer(cfg, cache_dir=config["cache_dir"], device=device, rank=rank, world_size=world,
                         select_metric=config["metric"])
    try:
        checkpoint = train.get_checkpoint()
        if checkpoint:
            with checkpoint.as_directory() as directory:
                trainer.load_checkpoint(directory)
        while trainer.step < cfg.train.steps:
            try:
                stats = trainer.train_steps(min(cfg.train.eval_every, cfg.train.steps - trainer.step))
            except TrainingDiverged as exc:  # raised on every rank together (the trainer agrees across ranks)
                train.report({config["metric"]: config["sentinel"], "diverged": 1.0, "step": float(exc.step)})
                return
            if rank == 0:
                metrics = {**stats, **trainer.evaluate(), "diverged": 0.0, "workers": float(world)}
                with tempfile.TemporaryDirectory(prefix="ganforge-ddp-") as directory:
                    trainer.save_checkpoint(directory)
                    train.report(metrics, checkpoint=train.Checkpoint.from_directory(directory))
            else:
                train.report({})
    finally:
        trainer.close()


def run_ddp_trial(config: dict[str, Any], ctx: TrialContext) -> None:
    """The Tune function trainable for `resources.workers_per_trial > 1`."""
    from ray.train.torch import TorchTrainer

    trial_id = tune.get_context().get_trial_id() or "local"
    cfg = ctx.config_for(config)
    tracker = _open_tracker(ctx, trial_id, dict(config))
    queue: Queue = Queue(maxsize=1, actor_options={"num_cpus": 0})
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"cfg": cfg.model_dump(), "metric": ctx.metric, "sentinel": SENTINEL[ctx.mode],
                           "cache_dir": ctx.cache_dir, "cpus": ctx.cpus_per_trial},
        scaling_config=train.ScalingConfig(
            num_workers=ctx.workers_per_trial,
            use_gpu=ctx.gpus_per_trial > 0,
            resources_per_worker={"CPU": ctx.cpus_per_trial, **({"GPU": ctx.gpus_per_trial} if ctx.gpus_per_trial else {})},
        ),
        run_config=train.RunConfig(
            name=f"ddp-{trial_id}",
            storage_path=ctx.train_storage,
            failure_config=train.FailureConfig(max_failures=ctx.max_failures),
            callbacks=[_ForwardReports(queue)],
        ),
        resume_from_checkpoint=tune.get_checkpoint(),
    )
    outcome: dict[str, BaseException] = {}

    def fit() -> None:
        try:
            trainer.fit()
        except BaseException as exc:  # surfaced to Tune below, so FailureConfig retries the trial
            outcome["error"] = exc

    worker = threading.Thread(target=fit, name=f"ddp-{trial_id}", daemon=True)
    worker.start()
    status = "FAILED"
    try:
        while worker.is_alive() or not queue.empty():
            try:
                item = queue.get(timeout=1.0)
            except Empty:
                continue
            metrics, checkpoint = item["metrics"], item["checkpoint"]
            if tracker is not None:
                tracker.log_metrics(_finite(metrics), step=int(metrics.get("step", 0)))
            tune.report(metrics, checkpoint=checkpoint)
        worker.join()
        if "error" in outcome:
            raise outcome["error"]
        status = "FINISHED"
    finally:
        if tracker is not None:
            tracker.finish(status)
