"""The networks objective-defined families (wgan, wgan-gp, sngan, lsgan, cgan) train, chosen by data kind:
MLPs for points, DCGAN convolutions for images."""
from __future__ import annotations

from typing import Callable

from trainers.config import ModelConfig
from trainers.data.info import DataInfo
from trainers.families.base import Networks
from trainers.families.dcgan import dcgan_networks
from trainers.families.gan import mlp_networks
from trainers.registry import Registry

BACKBONES: Registry[Callable[[ModelConfig, DataInfo], Networks]] = Registry("backbone for data kind")
BACKBONES.register("points")(mlp_networks)
BACKBONES.register("image")(dcgan_networks)


def backbone_networks(cfg: ModelConfig, info: DataInfo) -> Networks:
    return BACKBONES.get(info.kind)(cfg, info)
