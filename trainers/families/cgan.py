"""Class-conditional GAN: G sees a learned label embedding beside z (Mirza & Osindero, 2014); D is a projection
discriminator (Miyato & Koyama, 2018): D(x, y) = head(phi(x)) + <embed(y), phi(x)>.

Both wrap the data kind's backbone (MLP for points, DCGAN for images), so any labelled data set trains it.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trainers.config import ModelConfig
from trainers.data.info import DataInfo
from trainers.families.backbones import backbone_networks
from trainers.families.base import FAMILIES, GENERATORS, Generator, Networks, build_generator
from trainers.families.layers import maybe_sn

EMBED_DIM = 16  # size of the label embedding appended to z


@GENERATORS.register("ConditionalGenerator")
class ConditionalGenerator(Generator):
    """`base` is the JSON arch of an unconditional generator whose latent is z plus the label embedding."""

    def __init__(self, base: dict[str, Any], num_classes: int, embed_dim: int = EMBED_DIM) -> None:
        super().__init__()
        self.base = build_generator(base)
        self.num_classes = num_classes
        self.latent_dim = self.base.latent_dim - embed_dim
        self.embed = nn.Embedding(num_classes, embed_dim)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None:
            raise ValueError(f"this conditional generator needs class labels 0..{self.num_classes - 1}")
        return self.base(torch.cat([z, self.embed(y)], dim=1))


class ProjectionDiscriminator(nn.Module):
    def __init__(self, base: nn.Module, num_classes: int, spectral_norm: bool) -> None:
        super().__init__()
        self.base = base
        self.embed = maybe_sn(nn.Embedding(num_classes, base.num_features), spectral_norm)
        nn.init.normal_(self.embed.weight, std=0.02)  # start as the unconditional critic

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        phi = self.base.features(x)
        out = self.base.head(phi).squeeze(1)
        return out if y is None else out + (self.embed(y) * phi).sum(dim=1)


@FAMILIES.register("cgan")
class ConditionalGAN:

    def build(self, cfg: ModelConfig, info: DataInfo) -> Networks:
        if info.num_classes < 2:
            raise ValueError(f"model.family 'cgan' needs labelled data; {info.name!r} has no class labels")
        inner = backbone_networks(cfg.model_copy(update={"latent_dim": cfg.latent_dim + EMBED_DIM}), info)
        kwargs = {"base": inner.arch, "num_classes": info.num_classes, "embed_dim": EMBED_DIM}
        generator = ConditionalGenerator(**kwargs)
        generator.base = inner.generator  # the network just built, not a second random initialisation
        return Networks(
            generator=generator,
            discriminator=ProjectionDiscriminator(inner.discriminator, info.num_classes, bool(cfg.spectral_norm)),
            arch={"generator": "ConditionalGenerator", "kwargs": kwargs},
        )
