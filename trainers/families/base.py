"""The contract every GAN family fulfils.

A family turns (ModelConfig, DataInfo) into a generator and a discriminator. The data kinds it trains on and the
training defaults it stands for (the loss, optimizer, penalty... a job gets when it leaves those fields null) are
declared in trainers/catalog.py, so validation reads them without torch. A new family is one module: a class
registered in FAMILIES plus its generator classes registered in GENERATORS, and its entry in the catalog.
Generators are rebuilt from a JSON architecture record alone (class name + constructor kwargs), so a registered
model loads with no pickle.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Protocol

import torch
from torch import nn

from trainers.catalog import FAMILY_INFO
from trainers.config import ModelConfig
from trainers.data.info import DataInfo
from trainers.registry import Registry
from trainers.settings import resolve_model


class Generator(nn.Module):
    """Base class of generators: `forward(z, y=None)` maps latents (and optional labels) to samples in model range."""

    latent_dim: int
    num_classes: int = 0
    # Where training-time randomness inside forward (StyleGAN's noise inputs and style mixing) comes from; the
    # trainer points it at its checkpointed generator. In eval mode generators must be deterministic given (z, y).
    noise_rng: Optional[torch.Generator] = None

    def sample_latents(self, n: int, generator: torch.Generator | None = None, device: Any = "cpu") -> torch.Tensor:
        return torch.randn(n, self.latent_dim, generator=generator, device=device)


@dataclass
class Networks:
    generator: Generator
    discriminator: nn.Module
    arch: dict[str, Any]  # {"generator": class name, "kwargs": {...}}; rebuilds G via build_generator


class Family(Protocol):
    def build(self, cfg: ModelConfig, info: DataInfo) -> Networks: ...


FAMILIES: Registry[type[Family]] = Registry("model.family", declared=FAMILY_INFO)
# Generator classes by name, so an architecture record can rebuild one without unpickling anything.
GENERATORS: Registry[type[Generator]] = Registry("generator class")


def build_generator(arch: dict[str, Any]) -> Generator:
    """Rebuild an (untrained) generator from its JSON architecture record."""
    return GENERATORS.get(arch["generator"])(**arch["kwargs"])


def build_networks(cfg: ModelConfig, info: DataInfo) -> Networks:
    """G and D for `cfg`; null fields take the family's defaults."""
    cfg = resolve_model(cfg)
    family = FAMILIES.get(cfg.family)()
    data_kinds = FAMILY_INFO.get(cfg.family).data_kinds
    if info.kind not in data_kinds:
        raise ValueError(
            f"model.family {cfg.family!r} trains on {'/'.join(sorted(data_kinds))} data, "
            f"but {info.name!r} holds {info.kind} data"
        )
    return family.build(cfg, info)
