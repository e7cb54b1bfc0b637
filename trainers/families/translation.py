"""pix2pix and CycleGAN: image-to-image translation families (networks in trainers/translation/networks.py).

`build` returns the exported `Translator` as the generator (one network per direction) and the discriminators in
a ModuleDict keyed by the domain each judges, so a trainer holds one G and one D module like every family, and one
optimizer each over all their parameters, as the reference does for CycleGAN's two G and two D.
"""
from __future__ import annotations

from torch import nn

from trainers.config import ModelConfig
from trainers.data.info import DataInfo
from trainers.families.base import FAMILIES, GENERATORS, Networks
from trainers.translation.networks import PatchDiscriminator, Translator, patch_layers_for

GENERATORS.register("Translator")(Translator)


def translation_networks(cfg: ModelConfig, info: DataInfo, directions: tuple[str, ...], conditional: bool) -> Networks:
    """G (a Translator) and D for side-by-side A|B rows of `info`; `conditional` D sees (A, B) stacked (pix2pix)."""
    height, width, channels = info.shape
    size = height
    if width != 2 * height:
        raise ValueError(f"{info.name!r}: translation rows must be square A|B pairs (H x 2H), got {height}x{width}")
    kind = cfg.generator or "unet"
    kwargs = {"in_channels": channels, "out_channels": channels, "size": size, "ngf": cfg.width}
    if kind == "resnet":
        kwargs["blocks"] = cfg.depth
    networks = {d: {"kind": kind, "kwargs": dict(kwargs)} for d in directions}
    layers = cfg.d_layers if cfg.d_layers is not None else patch_layers_for(size)
    d_in = (2 * channels if conditional else channels) * cfg.pack  # PacGAN: packed samples stack their channels
    judges = {"B": "AtoB", "A": "BtoA"}  # the discriminator of domain B judges A->B translations
    discriminators = nn.ModuleDict({
        domain: PatchDiscriminator(d_in, cfg.discriminator_width, layers, size, bool(cfg.spectral_norm))
        for domain, direction in judges.items() if direction in directions
    })
    arch = {"generator": "Translator", "kwargs": {"networks": networks}}
    return Networks(generator=Translator(networks), discriminator=discriminators, arch=arch)


@FAMILIES.register("pix2pix")
class Pix2Pix:
    """Isola et al. 2017: a U-Net G(A) judged by a conditional PatchGAN D(A, B); cGAN + lambda_l1 * L1."""

    def build(self, cfg: ModelConfig, info: DataInfo) -> Networks:
        return translation_networks(cfg, info, ("AtoB",), conditional=True)


@FAMILIES.register("cyclegan")
class CycleGAN:
    """Zhu et al. 2017: G_AB, G_BA (ResNet) and PatchGAN D_A, D_B; LSGAN + cycle-consistency + identity losses."""

    def build(self, cfg: ModelConfig, info: DataInfo) -> Networks:
        return translation_networks(cfg, info, ("AtoB", "BtoA"), conditional=False)
