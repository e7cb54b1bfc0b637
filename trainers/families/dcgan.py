"""DCGAN (Radford et al., 2016): strided (transposed) convolutions, BatchNorm in G, LeakyReLU in D.

The critic has no BatchNorm so that per-sample gradient penalties (WGAN-GP, R1) stay valid.
Works for square images whose side is a power of two from 8 px up (4x4 base, one x2 stage per octave).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from trainers.config import ModelConfig
from trainers.data.info import DataInfo
from trainers.families.base import FAMILIES, GENERATORS, Generator, Networks
from trainers.families.layers import maybe_sn


def _stages(image_size: int) -> int:
    stages = math.log2(image_size / 4) if image_size > 0 else -1
    if image_size < 8 or stages != int(stages):
        raise ValueError(f"convolutional families need a square image side that is a power of two >= 8, got {image_size}")
    return int(stages)


@GENERATORS.register("DCGANGenerator")
class DCGANGenerator(Generator):
    def __init__(self, latent_dim: int, channels: int, image_size: int, width: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        n = _stages(image_size)
        c = width * 2 ** (n - 1)
        self.base_channels = c
        self.project = nn.Sequential(nn.Linear(latent_dim, c * 16), nn.BatchNorm1d(c * 16), nn.ReLU())
        blocks: list[nn.Module] = []
        for _ in range(n):
            out = max(c // 2, width // 2)
            blocks += [nn.ConvTranspose2d(c, out, 4, 2, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
            c = out
        blocks += [nn.Conv2d(c, channels, 3, 1, 1), nn.Tanh()]
        self.body = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.project(z).view(z.shape[0], self.base_channels, 4, 4)
        return self.body(h)


class DCGANDiscriminator(nn.Module):
    """`features(x)` -> (B, F), `head` -> one logit: the split a projection discriminator (cgan) builds on."""

    def __init__(self, channels: int, image_size: int, width: int, spectral_norm: bool) -> None:
        super().__init__()
        n = _stages(image_size)
        layers: list[nn.Module] = [maybe_sn(nn.Conv2d(channels, width, 3, 1, 1), spectral_norm), nn.LeakyReLU(0.2)]
        c = width
        for _ in range(n):
            layers += [maybe_sn(nn.Conv2d(c, c * 2, 4, 2, 1), spectral_norm), nn.LeakyReLU(0.2)]
            c *= 2
        layers.append(nn.Flatten())
        self.body = nn.Sequential(*layers)
        self.num_features = c * 16
        self.head = maybe_sn(nn.Linear(c * 16, 1), spectral_norm)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.body(x)).squeeze(1)


def dcgan_networks(cfg: ModelConfig, info: DataInfo) -> Networks:
    kwargs = {"latent_dim": cfg.latent_dim, "channels": info.channels, "image_size": info.image_size, "width": cfg.width}
    if info.shape[0] != info.shape[1]:
        raise ValueError(f"convolutional families need square images; {info.name!r} holds {info.shape[0]}x{info.shape[1]}")
    return Networks(
        generator=DCGANGenerator(**kwargs),
        discriminator=DCGANDiscriminator(info.channels * cfg.pack, info.image_size, cfg.discriminator_width, bool(cfg.spectral_norm)),
        arch={"generator": "DCGANGenerator", "kwargs": kwargs},
    )


@FAMILIES.register("dcgan")
class DCGAN:

    def build(self, cfg: ModelConfig, info: DataInfo) -> Networks:
        return dcgan_networks(cfg, info)
