"""Preloading for Ray worker processes.

Ray prestarts worker processes when the embedded cluster starts; running this as their setup hook makes them import
torch, the trainers and MLflow while the driver is still setting up, instead of inside the first trial's timed
iterations (about 5-10 s per process on 2 cores).
"""
from __future__ import annotations


def preload() -> None:
    import torch  # noqa: F401

    import mlflow.tracking  # noqa: F401
    import orchestrator.tracking  # noqa: F401
    import orchestrator.trial  # noqa: F401
    import trainers.loop  # noqa: F401
    import trainers.metrics  # noqa: F401
