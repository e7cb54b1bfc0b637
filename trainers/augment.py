"""DiffAugment (Zhao et al., 2020): differentiable augmentations applied to every image the discriminator sees.

Real and fake images get the same kind of random transform, and G's gradient flows through it, so D cannot
overfit a small data set without G learning the augmentations. Policies register by name (`train.augment`); each is
`policy(x, rng) -> x` on NCHW images in model range [-1, 1], drawing its randomness from the trainer's CPU generator
(captured by checkpoints) so training stays deterministic.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from trainers.catalog import AUGMENT_NAMES
from trainers.registry import Registry

Augmentation = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
AUGMENTATIONS: Registry[Augmentation] = Registry("train.augment", declared=AUGMENT_NAMES)

TRANSLATION_RATIO = 0.125  # shift by up to 1/8 of the side, as in the paper
CUTOUT_RATIO = 0.5  # erase a square of half the side


def _rand(shape: tuple[int, ...], rng: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.rand(shape, generator=rng).to(device=like.device, dtype=like.dtype)


def _randint(low: int, high: int, shape: tuple[int, ...], rng: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randint(low, high, shape, generator=rng).to(device)


@AUGMENTATIONS.register("color")
def color(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Random brightness, saturation and contrast per image."""
    b = x.shape[0]
    x = x + (_rand((b, 1, 1, 1), rng, x) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_rand((b, 1, 1, 1), rng, x) * 2) + mean
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (_rand((b, 1, 1, 1), rng, x) + 0.5) + mean


@AUGMENTATIONS.register("translation")
def translation(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Shift each image by up to 1/8 of its side, filling with zeros."""
    b, _, h, w = x.shape
    sh, sw = int(h * TRANSLATION_RATIO + 0.5), int(w * TRANSLATION_RATIO + 0.5)
    dx = _randint(-sh, sh + 1, (b, 1, 1), rng, x.device)
    dy = _randint(-sw, sw + 1, (b, 1, 1), rng, x.device)
    gb, gx, gy = torch.meshgrid(
        torch.arange(b, device=x.device), torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij"
    )
    gx = torch.clamp(gx + dx + 1, 0, h + 1)
    gy = torch.clamp(gy + dy + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1])  # the zero border is what shifted-in pixels read
    return padded.permute(0, 2, 3, 1)[gb, gx, gy].permute(0, 3, 1, 2).contiguous()


@AUGMENTATIONS.register("cutout")
def cutout(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Zero a random square of half the side in each image."""
    b, _, h, w = x.shape
    ch, cw = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
    ox = _randint(0, h + (1 - ch % 2), (b, 1, 1), rng, x.device)
    oy = _randint(0, w + (1 - cw % 2), (b, 1, 1), rng, x.device)
    gb, gx, gy = torch.meshgrid(
        torch.arange(b, device=x.device), torch.arange(ch, device=x.device), torch.arange(cw, device=x.device), indexing="ij"
    )
    gx = torch.clamp(gx + ox - ch // 2, 0, h - 1)
    gy = torch.clamp(gy + oy - cw // 2, 0, w - 1)
    mask = torch.ones(b, h, w, dtype=x.dtype, device=x.device)
    mask[gb, gx, gy] = 0
    return x * mask.unsqueeze(1)


def diff_augment(x: torch.Tensor, policies: list[Augmentation], rng: torch.Generator) -> torch.Tensor:
    for policy in policies:
        x = policy(x, rng)
    return x
