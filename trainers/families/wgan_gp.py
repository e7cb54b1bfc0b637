"""WGAN-GP (Gulrajani et al., 2017): the Wasserstein loss with a gradient penalty (lambda 10) on interpolates
instead of weight clipping, Adam, five critic steps per generator step."""
from __future__ import annotations

from trainers.config import ModelConfig
from trainers.data.info import DataInfo
from trainers.families.backbones import backbone_networks
from trainers.families.base import FAMILIES, Networks


@FAMILIES.register("wgan-gp")
class WGANGP:

    def build(self, cfg: ModelConfig, info: DataInfo) -> Networks:
        return backbone_networks(cfg, info)
