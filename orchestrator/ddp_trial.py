"""A multi-worker trial: a Ray `TorchTrainer` (DDP; gloo on CPU, nccl on GPU) inside the Tune function trainable.

Ray Train V2's TuneReportCallback forwards rank-0 metrics but no Tune checkpoint, which leaves PBT nothing to
exploit and a retried trial nothing to resume from. So the Train run hands each (metrics, checkpoint path) to this
Tune function through a Ray queue, and the function reports both to Tune itself: every checkpoint becomes a Tune
checkpoint, and PBT copies a donor's whole state.

Each rank drives the one evaluation cycle (trainers/cycle.py) with a `_TrainReporter`; what is added here is only
Ray's: the Train run, the queue and the forwarding to Tune.

Going the other way, a Tune checkpoint this trial starts from (a PBT exploit, a retry, a resumed job) reaches every
rank through the train loop config: V2 refuses `resume_from_checkpoint`, and a Train run restored by name would
resume from its own latest checkpoint rather than the donor's, so each start of the trial is a new Train run. Every
rank loads it, then the trial's own hyperparameters are applied (ray-project/ray#62173), and rank 0 reports the same
provenance as a single-worker trial (`orchestrator.trial`): pid, fingerprint, restored_step/_fingerprint, applied_*.

Tune stops a trial (PBT exploit or pause, ASHA, a failure) by ending its process, which takes the Train controller
with it but not the controller's worker placement group: Ray keeps an actor's placement group until the job ends,
and Train's own cleaner (a detached actor per run) needs the State API: without a dashboard (the embedded cluster)
or with two Ray instances on the host it dies with a traceback on the console and cleans nothing. So ganforge
leaves it out, and a trial that starts releases what dead controllers left (`release_orphaned_worker_groups`) while
it waits for its workers: the moment those resources are needed.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Optional

import torch
from ray import train, tune
from ray.util.queue import Empty, Queue

from orchestrator.devices import trial_device
from orchestrator.tracking.trial_run import open_trial_tracker
from orchestrator.trial import SENTINEL, TrialContext, checkpoint_folder, quiet_ray_logs
from trainers.config import GANConfig
from trainers.cycle import build_trainer, run_cycle

log = logging.getLogger(__name__)

ORPHAN_SWEEP_S = 2.0  # how often a trial waiting for its workers looks for resources stopped trials left reserved
HEALTH_CHECK_ENV, HEALTH_CHECK_S = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5"  # Train's default: 2 s


class _ForwardReports(train.UserCallback):
    """Runs in the Train controller: passes rank 0's report to the Tune function (blocking: one in flight)."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    def after_report(self, run_context, metrics, checkpoint) -> None:
        self.queue.put({"metrics": dict(metrics[0]), "checkpoint": checkpoint})


class _TrainReporter:
    """The cycle's reports on a DDP rank as Ray Train reports (rank 0's with its checkpoint, which
    `_ForwardReports` hands to the Tune function); a restart starts from this Train run's own latest checkpoint (its
    worker group was restarted), else from the one Tune gave the trial."""

    checkpoints = True

    def __init__(self, sentinel: dict[str, float], restore: Any) -> None:
        self.sentinel, self.restore = sentinel, restore

    def restore_point(self):
        return checkpoint_folder(train.get_checkpoint() or self.restore)

    def report(self, trainer: Any, metrics: dict[str, Any], checkpoint: Optional[Path]) -> None:
        train.report(metrics, checkpoint=train.Checkpoint.from_directory(str(checkpoint)) if checkpoint else None)

    def diverged(self, error: Exception, metrics: dict[str, Any]) -> None:
        train.report({**self.sentinel, **metrics})  # on every rank together (the trainer agrees across ranks)


def _worker_loop(config: dict[str, Any]) -> None:
    """What every DDP rank runs: the evaluation cycle; rank 0 evaluates and checkpoints."""
    # Ray Train sets each worker's root logger to INFO with a console handler and logs every report through a logger
    # outside "ray.train" (which LoggingConfig governs): keep worker consoles to warnings and errors, as in a
    # single-worker trial's process.
    logging.getLogger().setLevel(logging.WARNING)
    context = train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(max(1, int(config["cpus"])))
    cfg = GANConfig.model_validate(config["cfg"])
    device = trial_device(cfg.train.device, config["gpus"], who=f"rank {rank}").device
    if device.type == "cuda":  # Ray Train shows a node's workers all their GPUs: it knows which one is this rank's
        device = train.torch.get_device()
    trainer = build_trainer(cfg, cache_dir=config["cache_dir"], device=device, rank=rank, world_size=world,
                            select_metric=config["metric"])
    reporter = _TrainReporter({config["metric"]: config["sentinel"]}, config.get("restore"))
    try:
        run_cycle(trainer, reporter, steps=cfg.train.steps, eval_every=cfg.train.eval_every,
                  provenance={"rank0_pid": float(os.getpid()), "workers": float(world)})
    finally:
        trainer.close()


def release_orphaned_worker_groups() -> int:
    """Remove the placement groups of Train controllers that died without removing them; returns how many.

    Only a group created by a now-dead `TrainController` actor qualifies: nothing can use it any more (the workers
    it held died with their controller), and it is what Ray Train's PlacementGroupCleaner would remove.
    """
    import ray
    from ray._private.state import state
    from ray.core.generated import gcs_pb2
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    table = gcs_pb2.PlacementGroupTableData
    accessor = state._connect_and_get_accessor()
    removed = 0
    for raw in accessor.get_placement_group_table():
        group = table.FromString(raw)
        if group.is_detached or group.state == table.REMOVED or not group.creator_actor_dead:
            continue
        creator = ray.ActorID(group.creator_actor_id)
        if creator.is_nil():  # made by a driver (Tune's trial groups): the job owns it
            continue
        info = accessor.get_actor_info(creator)
        if info is None or gcs_pb2.ActorTableData.FromString(info).class_name != "TrainController":
            continue
        try:
            remove_placement_group(PlacementGroup(ray.PlacementGroupID(group.placement_group_id)))
        except Exception as exc:  # removed meanwhile by another starting trial
            log.debug("placement group %s: %s", group.placement_group_id.hex(), exc)
            continue
        log.info("released the workers' CPUs/GPUs a stopped multi-worker trial left reserved")
        removed += 1
    return removed


def _release_orphans_safely() -> None:
    try:
        release_orphaned_worker_groups()
    except Exception as exc:  # Ray internals moved: the trial may wait for resources, but must not fail for this
        log.warning("could not look for placement groups left by stopped trials: %s", exc)


def _torch_trainer():
    from ray.train.torch import TorchTrainer

    class Trainer(TorchTrainer):
        """Ray's TorchTrainer without its placement-group cleaner, which `release_orphaned_worker_groups` replaces."""

        def _create_default_callbacks(self):
            return [cb for cb in super()._create_default_callbacks()
                    if type(cb).__name__ != "PlacementGroupCleanerCallback"]

    return Trainer


def run_ddp_trial(config: dict[str, Any], ctx: TrialContext) -> None:
    """The Tune function trainable for `resources.workers_per_trial > 1`."""
    quiet_ray_logs()
    trial_id = tune.get_context().get_trial_id() or "local"
    cfg = ctx.config_for(config)
    tracker = open_trial_tracker(ctx.tracking, trial_id, dict(config))
    queue: Queue = Queue(maxsize=1, actor_options={"num_cpus": 0})
    # Train's controller notices finished (or dead) workers at its next health check, every 2 s by default: each run
    # of a trial would end up to 2 s late. A poll is one small remote call per worker; Train propagates the variable
    # from this process to its controller. A value the user set wins.
    os.environ.setdefault(HEALTH_CHECK_ENV, HEALTH_CHECK_S)
    trainer = _torch_trainer()(
        _worker_loop,
        train_loop_config={"cfg": cfg.model_dump(), "metric": ctx.metric, "sentinel": SENTINEL[ctx.mode],
                           "cache_dir": ctx.cache_dir, "cpus": ctx.cpus_per_trial, "gpus": ctx.gpus_per_trial,
                           "restore": tune.get_checkpoint()},
        scaling_config=train.ScalingConfig(
            num_workers=ctx.workers_per_trial,
            use_gpu=ctx.gpus_per_trial > 0,
            resources_per_worker={"CPU": ctx.cpus_per_trial, **({"GPU": ctx.gpus_per_trial} if ctx.gpus_per_trial else {})},
        ),
        run_config=train.RunConfig(
            # A new run per start: one restored by name would resume from its own checkpoint, not Tune's.
            name=f"ddp-{trial_id}-{uuid.uuid4().hex[:8]}",
            storage_path=ctx.train_storage,
            failure_config=train.FailureConfig(max_failures=ctx.max_failures),
            callbacks=[_ForwardReports(queue)],
            # The controller and every worker otherwise print INFO lines per start and per report to the driver's
            # console; warnings and errors still show, and Ray's session logs keep everything.
            logging_config=train.LoggingConfig(log_level="WARNING"),
        ),
    )
    outcome: dict[str, BaseException] = {}

    def fit() -> None:
        try:
            trainer.fit()
        except BaseException as exc:  # surfaced to Tune below, so FailureConfig retries the trial
            outcome["error"] = exc

    _release_orphans_safely()
    worker = threading.Thread(target=fit, name=f"ddp-{trial_id}", daemon=True)
    worker.start()
    status = "FAILED"
    pid = float(os.getpid())  # the trial's process: the one Tune restarts
    started, last_sweep = False, time.monotonic()
    try:
        while worker.is_alive() or not queue.empty():
            try:
                item = queue.get(timeout=1.0)
            except Empty:
                # Until this trial's workers run, a controller that died just now may still hold their resources.
                if not started and time.monotonic() - last_sweep > ORPHAN_SWEEP_S:
                    _release_orphans_safely()
                    last_sweep = time.monotonic()
                continue
            started = True
            metrics, checkpoint = {**item["metrics"], "pid": pid}, item["checkpoint"]
            if tracker is not None:
                tracker.log_report(metrics, step=int(metrics.get("step", 0)))
            if checkpoint is not None:  # Train's class; Tune wants its own (same path, same filesystem)
                checkpoint = tune.Checkpoint(path=checkpoint.path, filesystem=checkpoint.filesystem)
            tune.report(metrics, checkpoint=checkpoint)
        worker.join()
        if "error" in outcome:
            raise outcome["error"]
        status = "FINISHED"
    except SystemExit:  # Tune stopped the trial inside tune.report (PBT pause/exploit, ASHA): not a failure
        status = "KILLED"
        raise
    finally:
        if tracker is not None:
            tracker.finish(status)
