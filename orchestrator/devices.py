"""Which device a trial trains on: the GPU Ray assigned it, else the CPU, said in one line when that is a surprise.

Ray hides every GPU but the trial's own behind CUDA_VISIBLE_DEVICES, so `cuda` inside a trial is its assigned device.
It does not hide GPUs from a trial that reserved none: `train.device: auto` must then mean the CPU, or unreserved
trials would crowd onto a GPU Ray gave to others.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Optional

import torch

from orchestrator.errors import ClusterError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrialDevice:
    device: torch.device
    gpu_ids: tuple[str, ...]  # what Ray assigned (ray.get_gpu_ids()); empty when the trial reserved no GPU
    cuda_visible_devices: str  # as the trial process sees it ("unset" when Ray left it alone)
    warning: Optional[str] = None  # the one line a trial prints when it cannot use the GPU it was given

    def params(self) -> dict[str, str]:
        """What the trial's MLflow run records, so a run says where it trained."""
        return {"ganforge.device": str(self.device), "ganforge.gpu_ids": ",".join(self.gpu_ids) or "none",
                "ganforge.cuda_visible_devices": self.cuda_visible_devices}


def assigned_gpu_ids() -> tuple[str, ...]:
    import ray

    return tuple(str(i) for i in ray.get_gpu_ids()) if ray.is_initialized() else ()


def choose_device(requested: str, gpus_reserved: float, gpu_ids: tuple[str, ...], cuda_available: bool,
                  who: str = "trial") -> TrialDevice:
    """`requested` is train.device (auto, cpu, cuda); `gpus_reserved` the trial's (or worker's) GPU share."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
    if requested == "cpu" or (requested == "auto" and gpus_reserved <= 0):
        return TrialDevice(torch.device("cpu"), gpu_ids, visible)
    if cuda_available:
        return TrialDevice(torch.device("cuda"), gpu_ids, visible)
    given = f"Ray assigned GPU {','.join(gpu_ids)}" if gpu_ids else f"train.device is {requested}"
    problem = (f"{who}: {given} (CUDA_VISIBLE_DEVICES={visible}) but torch {torch.__version__} finds no usable "
               "CUDA device")
    if requested == "cuda":
        raise ClusterError(f"{problem}; install a CUDA build of torch on the workers or set train.device: auto")
    return TrialDevice(torch.device("cpu"), gpu_ids, visible, warning=f"{problem}; training on CPU")


def trial_device(requested: str, gpus_reserved: float, who: str = "trial") -> TrialDevice:
    """The device of the calling trial process; logs the one warning line if it falls back to the CPU."""
    chosen = choose_device(requested, gpus_reserved, assigned_gpu_ids(), torch.cuda.is_available(), who)
    if chosen.warning:
        log.warning(chosen.warning)
    return chosen
