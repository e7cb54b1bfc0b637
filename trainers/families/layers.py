"""Small building blocks shared by families."""
from __future__ import annotations

import torch
from torch import nn


def maybe_sn(layer: nn.Module, enabled: bool) -> nn.Module:
    """Wrap a layer in spectral normalisation when asked (a discriminator-side stabiliser)."""
    return nn.utils.parametrizations.spectral_norm(layer) if enabled else layer


class Maxout(nn.Module):
    """A maxout layer (Goodfellow et al. 2013): `out_features` units, each the max of `pieces` linear functions.

    The discriminator of the GAN paper's and PacGAN's 2-D mixture experiments. On ring-8 it lifted the share of
    high-quality samples from 87 % to 96 % against LeakyReLU units twice as wide (docs/results.md).
    """

    def __init__(self, in_features: int, out_features: int, pieces: int, spectral_norm: bool = False) -> None:
        super().__init__()
        self.out_features, self.pieces = out_features, pieces
        self.linear = maybe_sn(nn.Linear(in_features, out_features * pieces), spectral_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(x.shape[0], self.out_features, self.pieces).amax(dim=-1)


def pack_samples(x: torch.Tensor, pack: int) -> torch.Tensor:
    """PacGAN: merge `pack` consecutive samples along the feature/channel axis, (B, C, ...) -> (B/pack, pack*C, ...)."""
    if pack == 1:
        return x
    b = x.shape[0] - x.shape[0] % pack  # a ragged tail cannot form a pack; drop it
    x = x[:b]
    return x.reshape(b // pack, pack * x.shape[1], *x.shape[2:])
