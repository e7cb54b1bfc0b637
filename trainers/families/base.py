"""The contract every GAN family fulfils.

A family turns (ModelConfig, DataInfo) into a generator and a discriminator. Generators are rebuilt from a JSON
architecture record alone (class name + constructor kwargs), so a registered model loads with no pickle.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from trainers.config import ModelConfig
from trainers.data.info import DataInfo, DataKind
from trainers.registry import Registry


class Generator(nn.Module):
    """Base class of generators: `forward(z, y=None)` maps latents (and optional labels) to samples in model range."""

    latent_dim: int
    num_classes: int = 0

    def sample_latents(self, n: int, generator: torch.Generator | None = None, device: Any = "cpu") -> torch.Tensor:
        return torch.randn(n, self.latent_dim, generator=generator, device=device)


@dataclass
class Networks:
    generator: Generator
    discriminator: nn.Module
    arch: dict[str, Any]  # {"generator": class name, "kwargs": {...}}; rebuilds G via build_generator


class Family(Protocol):
    data_kinds: ClassVar[frozenset[DataKind]]

    def build(self, cfg: ModelConfig, info: DataInfo) -> Networks: ...


FAMILIES: Registry[type[Family]] = Registry("model.family")
# Generator classes by name, so an architecture record can rebuild one without unpickling anything.
GENERATORS: Registry[type[Generator]] = Registry("generator class")


def build_generator(arch: dict[str, Any]) -> Generator:
    """Rebuild an (untrained) generator from its JSON architecture record."""
    return GENERATORS.get(arch["generator"])(**arch["kwargs"])


def build_networks(cfg: ModelConfig, info: DataInfo) -> Networks:
    family = FAMILIES.get(cfg.family)()
    if info.kind not in family.data_kinds:
        raise ValueError(
            f"model.family {cfg.family!r} trains on {'/'.join(sorted(family.data_kinds))} data, "
            f"but {info.name!r} holds {info.kind} data"
        )
    return family.build(cfg, info)
