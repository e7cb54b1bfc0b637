"""SNGAN (Miyato et al., 2018): spectral normalisation on every discriminator layer with the hinge loss and one
critic step per generator step (compare_gan's finding for SN)."""
from __future__ import annotations

from trainers.config import ModelConfig
from trainers.data.info import DataInfo
from trainers.families.backbones import backbone_networks
from trainers.families.base import FAMILIES, Networks


@FAMILIES.register("sngan")
class SNGAN:

    def build(self, cfg: ModelConfig, info: DataInfo) -> Networks:
        return backbone_networks(cfg, info)
