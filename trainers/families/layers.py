"""Small building blocks shared by families."""
from __future__ import annotations

import torch
from torch import nn


def maybe_sn(layer: nn.Module, enabled: bool) -> nn.Module:
    """Wrap a layer in spectral normalisation when asked (a discriminator-side stabiliser)."""
    return nn.utils.parametrizations.spectral_norm(layer) if enabled else layer


def pack_samples(x: torch.Tensor, pack: int) -> torch.Tensor:
    """PacGAN: merge `pack` consecutive samples along the feature/channel axis, (B, C, ...) -> (B/pack, pack*C, ...)."""
    if pack == 1:
        return x
    b = x.shape[0] - x.shape[0] % pack  # a ragged tail cannot form a pack; drop it
    x = x[:b]
    return x.reshape(b // pack, pack * x.shape[1], *x.shape[2:])
