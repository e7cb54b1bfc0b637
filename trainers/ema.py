"""Exponential moving average of the generator's weights (Karras et al.; Yazici et al., 2019)."""
from __future__ import annotations

import copy

import torch
from torch import nn


class GeneratorEMA:
    """Holds an averaged copy of G: w_ema <- decay * w_ema + (1 - decay) * w, starting at `start` (copied before).

    Buffers (BatchNorm running statistics, StyleGAN's w average) are copied, not averaged.
    """

    def __init__(self, generator: nn.Module, decay: float, start: int = 0) -> None:
        self.decay = decay
        self.start = start
        self.model = copy.deepcopy(generator).eval().requires_grad_(False)
        self.model.noise_rng = None  # eval mode draws no noise; never share the trainer's generator
        self._source: nn.Module | None = None
        self._pairs: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
        self._buffers: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])

    @torch.no_grad()
    def update(self, generator: nn.Module, step: int) -> None:
        decay = self.decay if step >= self.start else 0.0
        if generator is not self._source:  # parameter lists are fixed once built: collect them once, not every step
            self._source = generator
            self._pairs = (list(self.model.parameters()), [p.detach() for p in generator.parameters()])
            self._buffers = (list(self.model.buffers()), list(generator.buffers()))
        # One fused call over all tensors: the same lerp as per tensor, without a Python loop per step.
        torch._foreach_lerp_(self._pairs[0], self._pairs[1], 1.0 - decay)
        if self._buffers[0]:
            torch._foreach_copy_(self._buffers[0], self._buffers[1])
