"""The original GAN (Goodfellow et al., 2014) as MLPs, for low-dimensional data such as the 2-D mixtures."""
from __future__ import annotations

import torch
from torch import nn

from trainers.config import ModelConfig
from trainers.data.info import DataInfo
from trainers.families.base import FAMILIES, GENERATORS, Generator, Networks
from trainers.families.layers import maybe_sn


@GENERATORS.register("MLPGenerator")
class MLPGenerator(Generator):
    def __init__(self, latent_dim: int, out_dim: int, width: int, depth: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        layers: list[nn.Module] = []
        d = latent_dim
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.ReLU()]
            d = width
        layers.append(nn.Linear(d, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z)


class MLPDiscriminator(nn.Module):
    def __init__(self, in_dim: int, width: int, depth: int, spectral_norm: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = in_dim
        for _ in range(depth):
            layers += [maybe_sn(nn.Linear(d, width), spectral_norm), nn.LeakyReLU(0.2)]
            d = width
        layers.append(maybe_sn(nn.Linear(d, 1), spectral_norm))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x).squeeze(1)


@FAMILIES.register("gan")
class MLPGAN:
    data_kinds = frozenset({"points"})

    def build(self, cfg: ModelConfig, info: DataInfo) -> Networks:
        dim = info.shape[0]
        kwargs = {"latent_dim": cfg.latent_dim, "out_dim": dim, "width": cfg.width, "depth": cfg.depth}
        return Networks(
            generator=MLPGenerator(**kwargs),
            discriminator=MLPDiscriminator(dim * cfg.pack, cfg.width, cfg.depth, cfg.spectral_norm),
            arch={"generator": "MLPGenerator", "kwargs": kwargs},
        )
