"""GPU speed knobs: bf16 autocast (`train.precision`) and channels_last (`train.channels_last`).

Both only act on CUDA devices; on CPU they are no-ops, so a job written for a GPU cluster still trains on a laptop.
Penalties and losses are computed in fp32 outside autocast (double backward in bf16 loses too much precision).
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import torch
from torch import nn

from trainers.config import TrainConfig
from trainers.catalog import PRECISION_NAMES
from trainers.registry import Registry

PRECISIONS: Registry[Callable[[torch.device], ContextManager]] = Registry("train.precision", declared=PRECISION_NAMES)
PRECISIONS.register("fp32")(lambda device: contextlib.nullcontext())
PRECISIONS.register("bf16")(
    lambda device: torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
)


class Accelerator:
    def __init__(self, train: TrainConfig, device: torch.device) -> None:
        self.device = device
        self._autocast = PRECISIONS.get(train.precision)
        self.channels_last = train.channels_last and device.type == "cuda"

    def autocast(self) -> ContextManager:
        return self._autocast(self.device)

    def module(self, module: nn.Module) -> nn.Module:
        return module.to(memory_format=torch.channels_last) if self.channels_last else module

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x
