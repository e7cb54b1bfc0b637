"""Preloading for Ray worker processes.

The embedded cluster runs `preload` as every worker's setup hook, so a trial process imports torch, the trainers,
MLflow and Tune's trainable while Tune is still placing it, not inside the trial's first timed iteration.

What it cannot do (measured on Ray 2.60, see docs/benchmarks.md): hand trials an already-warm process. Tune gives its
trainable actors a runtime env of their own (`env_vars`, `ray.tune.execution.class_cache`), so they never take the
workers Ray prestarts at `ray.init`, and a worker that once ran a task is never given to an actor; every trial
process is a fresh worker that pays these imports once (then `reuse_actors` keeps it for the next trials).
"""
from __future__ import annotations


def preload() -> None:
    import torch  # noqa: F401

    import mlflow.tracking  # noqa: F401
    import orchestrator.tracking  # noqa: F401
    import orchestrator.trial  # noqa: F401
    import ray.tune.trainable.function_trainable  # noqa: F401  (what a trial actor imports first)
    import trainers.loop  # noqa: F401
