"""Translation networks after junyanz/pytorch-CycleGAN-and-pix2pix (models/networks.py), sized for small images.

- `UnetGenerator`: pix2pix's encoder-decoder with skip connections, one stride-2 level per halving of the image
  (down to 1x1), channels ngf * min(2^level, 8).
- `ResnetGenerator`: CycleGAN's 7x7 stem, stride-2 down-sampling, residual blocks, transposed-conv up-sampling.
- `PatchDiscriminator`: PatchGAN, a map of real/fake logits, one per receptive field; `layers` stride-2 convolutions
  set the field (1: 16 px, 2: 34 px, 3: 70 px); 0 is the 1x1 PixelGAN.
- `Translator`: the exported model, one generator per direction ("AtoB", and "BtoA" for CycleGAN), rebuilt from a
  JSON record like every ganforge generator.

Normalisation is instance norm throughout: the reference trains pix2pix with batch norm at batch size 1, which is
instance norm; our batches are larger, so batch norm would change the model.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from trainers.families.layers import maybe_sn

DIRECTIONS = ("AtoB", "BtoA")
MAX_MULT = 8  # channels stop doubling at 8 x ngf (the reference's cap)


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=False)


def levels_for(size: int) -> int:
    """Stride-2 levels a U-Net needs to reach 1x1 from a `size` x `size` image."""
    if size < 2 or size & (size - 1):
        raise ValueError(f"translation networks need a power-of-two image side of at least 2 px, got {size}")
    return int(math.log2(size))


class UnetGenerator(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, size: int, ngf: int) -> None:
        super().__init__()
        self.levels = levels_for(size)
        ch = [ngf * min(2**i, MAX_MULT) for i in range(self.levels)]
        self.downs = nn.ModuleList()
        self.ups = nn.ModuleList()
        for i in range(self.levels):
            inner, outer = ch[i], (in_channels if i == 0 else ch[i - 1])
            innermost, outermost = i == self.levels - 1, i == 0
            down: list[nn.Module] = [] if outermost else [nn.LeakyReLU(0.2)]
            down.append(nn.Conv2d(outer, inner, 4, stride=2, padding=1))
            if not (outermost or innermost):
                down.append(_norm(inner))
            # The up path sees the skip connection's channels too, except at the innermost level.
            up_in = inner if innermost else 2 * inner
            up: list[nn.Module] = [nn.ReLU(), nn.ConvTranspose2d(up_in, out_channels if outermost else outer, 4, 2, 1)]
            up.append(nn.Tanh() if outermost else _norm(outer))
            self.downs.append(nn.Sequential(*down))
            self.ups.append(nn.Sequential(*up))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
        for i in reversed(range(self.levels)):
            if i < self.levels - 1:
                x = torch.cat([skips[i], x], dim=1)
            x = self.ups[i](x)
        return x


class ResidualBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), _norm(dim), nn.ReLU(),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), _norm(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, size: int, ngf: int, blocks: int) -> None:
        super().__init__()
        # The reference down-samples twice (256 px -> 64 px); small images keep at least 4x4 before the blocks.
        downsampling = max(0, min(2, levels_for(size) - 2))
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7), _norm(ngf), nn.ReLU()]
        for i in range(downsampling):
            mult = 2**i
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1), _norm(ngf * mult * 2), nn.ReLU()]
        layers += [ResidualBlock(ngf * 2**downsampling) for _ in range(blocks)]
        for i in reversed(range(downsampling)):
            mult = 2**i
            layers += [nn.ConvTranspose2d(ngf * mult * 2, ngf * mult, 3, stride=2, padding=1, output_padding=1),
                       _norm(ngf * mult), nn.ReLU()]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def patch_layers_for(size: int) -> int:
    """The PatchGAN depth that fits a `size` px image with at least a 2x2 map of patches (at most pix2pix's 3)."""
    return max(0, min(3, levels_for(size) - 2))


def patch_map_side(size: int, layers: int) -> int:
    """Side of the logit map a PatchGAN with `layers` stride-2 convolutions makes from `size` px."""
    if layers == 0:
        return size
    for _ in range(layers):
        size = size // 2
    return size - 2  # two 4x4 stride-1 convolutions with padding 1 take one pixel each


class PatchDiscriminator(nn.Module):
    def __init__(self, in_channels: int, ndf: int, layers: int, size: int, spectral_norm: bool = False) -> None:
        super().__init__()
        if patch_map_side(size, layers) < 1:
            raise ValueError(f"model.d_layers={layers} is too deep for {size} px images "
                             f"(at most {patch_layers_for(size)}; null sizes it)")
        sn = spectral_norm
        if layers == 0:  # PixelGAN: 1x1 convolutions, a logit per pixel
            seq: list[nn.Module] = [maybe_sn(nn.Conv2d(in_channels, ndf, 1), sn), nn.LeakyReLU(0.2),
                                    maybe_sn(nn.Conv2d(ndf, ndf * 2, 1), sn), _norm(ndf * 2), nn.LeakyReLU(0.2),
                                    maybe_sn(nn.Conv2d(ndf * 2, 1, 1), sn)]
        else:
            seq = [maybe_sn(nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), sn), nn.LeakyReLU(0.2)]
            mult = 1
            for n in range(1, layers):
                prev, mult = mult, min(2**n, MAX_MULT)
                seq += [maybe_sn(nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1), sn), _norm(ndf * mult),
                        nn.LeakyReLU(0.2)]
            prev, mult = mult, min(2**layers, MAX_MULT)
            seq += [maybe_sn(nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1), sn), _norm(ndf * mult),
                    nn.LeakyReLU(0.2), maybe_sn(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1), sn)]
        self.net = nn.Sequential(*seq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


NETWORK_KINDS: dict[str, type[nn.Module]] = {"unet": UnetGenerator, "resnet": ResnetGenerator}


class Translator(nn.Module):
    """Image-to-image translation in model range: `forward(x, direction)` maps N x C x H x W in [-1, 1].

    `networks` is the JSON record {direction: {"kind": "unet"|"resnet", "kwargs": {...}}}; the weights live under
    `nets.<direction>.`. `latent_dim = 0` and `task` tell it apart from a sampling generator.
    """

    task = "translation"
    latent_dim = 0
    num_classes = 0
    noise_rng = None

    def __init__(self, networks: dict[str, dict[str, Any]]) -> None:
        super().__init__()
        unknown = [d for d in networks if d not in DIRECTIONS]
        if unknown or not networks:
            raise ValueError(f"translator directions must be among {DIRECTIONS}, got {sorted(networks)}")
        self.nets = nn.ModuleDict({d: NETWORK_KINDS[spec["kind"]](**spec["kwargs"]) for d, spec in networks.items()})

    @property
    def directions(self) -> tuple[str, ...]:
        return tuple(self.nets.keys())

    def forward(self, x: torch.Tensor, direction: str = "AtoB") -> torch.Tensor:
        if direction not in self.nets:
            raise ValueError(f"this translator maps {' and '.join(self.directions)}, not {direction}")
        return self.nets[direction](x)
