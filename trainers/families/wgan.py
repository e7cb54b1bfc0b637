"""WGAN (Arjovsky et al., 2017): a Wasserstein critic kept roughly Lipschitz by clipping its weights to +-0.01,
trained with RMSprop and five critic steps per generator step, as in the paper."""
from __future__ import annotations

from trainers.config import ModelConfig
from trainers.data.info import DataInfo
from trainers.families.backbones import backbone_networks
from trainers.families.base import FAMILIES, Networks


@FAMILIES.register("wgan")
class WGAN:

    def build(self, cfg: ModelConfig, info: DataInfo) -> Networks:
        return backbone_networks(cfg, info)
