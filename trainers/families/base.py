"""The contract every GAN family fulfils.

A family turns (ModelConfig, DataInfo) into a generator and a discriminator, and names the training defaults it
stands for (`defaults`: the loss, optimizer, penalty... a job gets when it leaves those fields null; see
trainers.settings). A new family is one module: a class registered in FAMILIES plus its generator classes registered
in GENERATORS. Generators are rebuilt from a JSON architecture record alone (class name + constructor kwargs), so a
registered model loads with no pickle.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Optional, Protocol

import torch
from torch import nn

from trainers.config import ModelConfig
from trainers.data.info import DataInfo, DataKind
from trainers.registry import Registry


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
    data_kinds: ClassVar[frozenset[DataKind]]
    # Values for spec fields the job leaves null, by dotted path: {"train.loss": "wgan", "model.spectral_norm": True}.
    defaults: ClassVar[Mapping[str, Any]]

    def build(self, cfg: ModelConfig, info: DataInfo) -> Networks: ...


FAMILIES: Registry[type[Family]] = Registry("model.family")
# Generator classes by name, so an architecture record can rebuild one without unpickling anything.
GENERATORS: Registry[type[Generator]] = Registry("generator class")


def build_generator(arch: dict[str, Any]) -> Generator:
    """Rebuild an (untrained) generator from its JSON architecture record."""
    return GENERATORS.get(arch["generator"])(**arch["kwargs"])


# What a null model field means when the family has no default for it.
MODEL_FALLBACKS: dict[str, Any] = {"spectral_norm": False}


def resolve_model(cfg: ModelConfig) -> ModelConfig:
    """`cfg` with null fields filled from the family's `model.*` defaults, then MODEL_FALLBACKS."""
    defaults = FAMILIES.get(cfg.family).defaults
    filled = {
        key: defaults.get(f"model.{key}", fallback)
        for key, fallback in MODEL_FALLBACKS.items()
        if getattr(cfg, key) is None
    }
    return cfg.model_copy(update=filled) if filled else cfg


def build_networks(cfg: ModelConfig, info: DataInfo) -> Networks:
    """G and D for `cfg`; null fields take the family's defaults."""
    cfg = resolve_model(cfg)
    family = FAMILIES.get(cfg.family)()
    if info.kind not in family.data_kinds:
        raise ValueError(
            f"model.family {cfg.family!r} trains on {'/'.join(sorted(family.data_kinds))} data, "
            f"but {info.name!r} holds {info.kind} data"
        )
    return family.build(cfg, info)
