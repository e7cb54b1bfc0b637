"""LSGAN (Mao et al., 2017): least-squares loss with 0-1-1 coding, which keeps gradients alive for fakes that D
already classifies correctly."""
from __future__ import annotations

from trainers.config import ModelConfig
from trainers.data.info import DataInfo
from trainers.families.backbones import backbone_networks
from trainers.families.base import FAMILIES, Networks


@FAMILIES.register("lsgan")
class LSGAN:

    def build(self, cfg: ModelConfig, info: DataInfo) -> Networks:
        return backbone_networks(cfg, info)
