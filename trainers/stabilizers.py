"""Stabilisers that act on what the discriminator sees or on its weights, composed from config.

Each registered factory looks at the (resolved) train section and returns a `Stabilizer` or None when its knob is
off; the loop calls every built stabiliser's hooks at fixed points and never asks which ones are there:
- `d_input(x, step, rng)`: every sample D judges, real or fake, in D's and in G's step (before PacGAN packing);
- `after_d_update(D)`: after each optimizer step of D.
Penalties (GP, R1), spectral norm, label smoothing, EMA, TTUR and gradient clipping live where they act: in
penalties.py, the families, losses.py, ema.py, the optimizers and the loop.
"""
from __future__ import annotations

from typing import Callable, ClassVar, Optional

import torch
from torch import nn

from trainers.augment import AUGMENTATIONS, diff_augment
from trainers.config import TrainConfig
from trainers.data.info import DataInfo
from trainers.registry import Registry


class Stabilizer:
    order: ClassVar[int] = 0  # hooks run in ascending order (augment before noise)

    def d_input(self, x: torch.Tensor, step: int, rng: torch.Generator) -> torch.Tensor:
        return x

    def after_d_update(self, discriminator: nn.Module) -> None:
        pass


StabilizerFactory = Callable[[TrainConfig, DataInfo], Optional[Stabilizer]]
STABILIZERS: Registry[StabilizerFactory] = Registry("stabilizer")


class DiffAugment(Stabilizer):
    order = 10

    def __init__(self, names: list[str]) -> None:
        self.policies = [AUGMENTATIONS.get(name) for name in names]

    def d_input(self, x: torch.Tensor, step: int, rng: torch.Generator) -> torch.Tensor:
        return diff_augment(x, self.policies, rng)


@STABILIZERS.register("diffaugment")
def _diffaugment(train: TrainConfig, info: DataInfo) -> Optional[Stabilizer]:
    if not train.augment:
        return None
    if not info.is_image:
        raise ValueError(f"train.augment {train.augment} needs image data; {info.name!r} holds {info.kind}")
    return DiffAugment(train.augment)


class InstanceNoise(Stabilizer):
    """Gaussian noise on D's inputs (Sønderby et al., 2017; Arjovsky & Bottou, 2017), optionally annealed to 0."""

    order = 20

    def __init__(self, std: float, anneal_steps: int) -> None:
        self.std = std
        self.anneal_steps = anneal_steps

    def std_at(self, step: int) -> float:
        if self.anneal_steps <= 0:
            return self.std
        return self.std * max(0.0, 1.0 - step / self.anneal_steps)

    def d_input(self, x: torch.Tensor, step: int, rng: torch.Generator) -> torch.Tensor:
        std = self.std_at(step)
        if std <= 0:
            return x
        return x + std * torch.randn(x.shape, generator=rng).to(x)


@STABILIZERS.register("instance_noise")
def _instance_noise(train: TrainConfig, info: DataInfo) -> Optional[Stabilizer]:
    return InstanceNoise(train.instance_noise, train.instance_noise_steps) if train.instance_noise > 0 else None


class WeightClip(Stabilizer):
    """WGAN's Lipschitz constraint: every critic weight clamped to [-c, c] after each update."""

    def __init__(self, limit: float) -> None:
        self.limit = limit

    @torch.no_grad()
    def after_d_update(self, discriminator: nn.Module) -> None:
        params = list(discriminator.parameters())
        torch._foreach_clamp_min_(params, -self.limit)
        torch._foreach_clamp_max_(params, self.limit)


@STABILIZERS.register("weight_clip")
def _weight_clip(train: TrainConfig, info: DataInfo) -> Optional[Stabilizer]:
    return WeightClip(train.weight_clip) if train.weight_clip else None


def build_stabilizers(train: TrainConfig, info: DataInfo) -> list[Stabilizer]:
    """The stabilisers `train` (resolved: no null fields) switches on, in hook order."""
    built = [s for name in STABILIZERS if (s := STABILIZERS.get(name)(train, info)) is not None]
    return sorted(built, key=lambda s: s.order)
