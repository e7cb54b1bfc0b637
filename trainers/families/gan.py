"""The original GAN (Goodfellow et al., 2014) as MLPs: 2-D mixtures, or images flattened to vectors.

Train it with `train.loss: minimax` (the paper's objective) or `ns` (its non-saturating variant, the default).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from trainers.config import ModelConfig
from trainers.data.info import DataInfo
from trainers.families.base import FAMILIES, GENERATORS, Generator, Networks
from trainers.families.layers import CategoricalLatent, Maxout, maybe_sn


@GENERATORS.register("MLPGenerator")
class MLPGenerator(Generator):
    """`image_shape` (C, H, W) makes it emit images in [-1, 1] (tanh); without it, raw D-dimensional points.
    `latent_categories` > 0 puts a categorical latent code (layers.CategoricalLatent) in front of the MLP."""

    def __init__(
        self, latent_dim: int, out_dim: int, width: int, depth: int, image_shape: Optional[list[int]] = None,
        latent_categories: int = 0,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.image_shape = tuple(image_shape) if image_shape else None
        layers: list[nn.Module] = []
        d = latent_dim
        self.categorical = CategoricalLatent(latent_dim, latent_categories) if latent_categories else None
        if self.categorical is not None:
            layers.append(self.categorical)
            d = self.categorical.out_features
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.ReLU()]
            d = width
        layers.append(nn.Linear(d, out_dim))
        if self.image_shape:
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        x = self.net(z)
        return x.view(z.shape[0], *self.image_shape) if self.image_shape else x


class MLPDiscriminator(nn.Module):
    """`features(x)` -> (B, width), `head` -> one logit: the split a projection discriminator (cgan) builds on."""

    def __init__(self, in_dim: int, width: int, depth: int, spectral_norm: bool, maxout: int = 0) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]  # images arrive as (B, C, H, W)
        d = in_dim
        for _ in range(depth):
            if maxout:
                layers.append(Maxout(d, width, maxout, spectral_norm))
            else:
                layers += [maybe_sn(nn.Linear(d, width), spectral_norm), nn.LeakyReLU(0.2)]
            d = width
        self.body = nn.Sequential(*layers)
        self.num_features = d
        self.head = maybe_sn(nn.Linear(d, 1), spectral_norm)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.body(x)).squeeze(1)


def mlp_networks(cfg: ModelConfig, info: DataInfo) -> Networks:
    """MLP G and D for points (D-dim) or images (C*H*W values, generated through tanh)."""
    image_shape = [info.channels, info.shape[0], info.shape[1]] if info.kind == "image" else None
    dim = math.prod(image_shape) if image_shape else info.shape[0]
    kwargs = {"latent_dim": cfg.latent_dim, "out_dim": dim, "width": cfg.width, "depth": cfg.depth}
    if image_shape:
        kwargs["image_shape"] = image_shape
    if cfg.latent_categories:
        kwargs["latent_categories"] = cfg.latent_categories
    return Networks(
        generator=MLPGenerator(**kwargs),
        discriminator=MLPDiscriminator(dim * cfg.pack, cfg.discriminator_width, cfg.depth, bool(cfg.spectral_norm), cfg.d_maxout),
        arch={"generator": "MLPGenerator", "kwargs": kwargs},
    )


@FAMILIES.register("gan")
class MLPGAN:

    def build(self, cfg: ModelConfig, info: DataInfo) -> Networks:
        return mlp_networks(cfg, info)
