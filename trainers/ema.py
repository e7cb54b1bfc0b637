"""Exponential moving average of the generator's weights (Karras et al.; Yazici et al., 2019)."""
from __future__ import annotations

import copy

import torch
from torch import nn


class GeneratorEMA:
    """Holds an averaged copy of G: w_ema <- decay * w_ema + (1 - decay) * w, starting at `start` (copied before).

    Buffers (BatchNorm running statistics) are copied, not averaged.
    """

    def __init__(self, generator: nn.Module, decay: float, start: int = 0) -> None:
        self.decay = decay
        self.start = start
        self.model = copy.deepcopy(generator).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, generator: nn.Module, step: int) -> None:
        decay = self.decay if step >= self.start else 0.0
        for ema_p, p in zip(self.model.parameters(), generator.parameters()):
            ema_p.lerp_(p.detach(), 1.0 - decay)
        for ema_b, b in zip(self.model.buffers(), generator.buffers()):
            ema_b.copy_(b)
