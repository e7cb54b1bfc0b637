"""A small StyleGAN (Karras et al., 2019; StyleGAN2, 2020) for 8-32 px images.

Generator: a mapping network z -> w (pixel norm + `model.depth` equalised-lr layers), a learned 4x4 constant, and
per resolution two modulated/demodulated 3x3 convolutions with per-pixel noise inputs, plus skip toRGB outputs.
Style mixing (`model.style_mixing`) feeds a second latent's w to the layers after a random crossover during
training; `truncation` (psi) pulls w towards its running average at sampling time.
Discriminator: residual blocks with a minibatch standard-deviation feature, as in StyleGAN2.

Training-time randomness (noise, mixing) is drawn from `noise_rng`, which the trainer ties to its checkpointed
generator; in eval mode the noise inputs are fixed buffers, so sampling is a function of (z, truncation).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from trainers.config import ModelConfig
from trainers.data.info import DataInfo
from trainers.families.base import FAMILIES, GENERATORS, Generator, Networks
from trainers.families.dcgan import _stages
from trainers.families.layers import maybe_sn

MAPPING_LR_MULTIPLIER = 0.01  # StyleGAN's slower mapping network
W_AVG_BETA = 0.995  # running average of w for the truncation trick
MBSTD_GROUP = 4
MAX_CHANNELS = 256


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate: weights stored N(0, 1/lr_mul^2), scaled at run time."""

    def __init__(self, d_in: int, d_out: int, bias_init: float = 0.0, lr_mul: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(d_out, d_in) / lr_mul)
        self.bias = nn.Parameter(torch.full((d_out,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(d_in)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class ModulatedConv(nn.Module):
    """conv(x * style) * demod: StyleGAN2's weight (de)modulation written as input/output scaling, which is the
    same operation as modulating the weights per sample but runs as one ordinary convolution."""

    def __init__(self, c_in: int, c_out: int, kernel: int, w_dim: int, demodulate: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.affine = EqualLinear(w_dim, c_in, bias_init=1.0)  # styles start at 1: an unmodulated conv
        self.scale = 1 / math.sqrt(c_in * kernel * kernel)
        self.demodulate = demodulate
        self.padding = kernel // 2

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        style = self.affine(w)  # (B, c_in)
        weight = self.weight * self.scale
        x = F.conv2d(x * style[:, :, None, None], weight, padding=self.padding)
        if self.demodulate:
            # per sample and output channel: 1 / ||weight * style||_2 over (c_in, k, k)
            demod = torch.rsqrt((style.square() @ weight.square().sum(dim=[2, 3]).t()) + 1e-8)  # (B, c_out)
            x = x * demod[:, :, None, None]
        return x


class StyleLayer(nn.Module):
    """Modulated conv + noise input + bias + leaky ReLU, optionally after x2 upsampling."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, resolution: int, upsample: bool) -> None:
        super().__init__()
        self.upsample = upsample
        self.conv = ModulatedConv(c_in, c_out, 3, w_dim)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.register_buffer("const_noise", torch.randn(1, 1, resolution, resolution))
        self.bias = nn.Parameter(torch.zeros(c_out))

    def forward(self, x: torch.Tensor, w: torch.Tensor, rng: Optional[torch.Generator]) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = self.conv(x, w)
        if self.training:
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], generator=rng).to(x)
        else:
            noise = self.const_noise
        x = x + noise * self.noise_strength + self.bias[None, :, None, None]
        return F.leaky_relu(x, 0.2) * math.sqrt(2)


class ToRGB(nn.Module):
    def __init__(self, c_in: int, channels: int, w_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv(c_in, channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias[None, :, None, None]


def _channels(width: int, stage: int, stages: int) -> int:
    """Channels at `stage` (0 = 4x4, `stages` = full size): width * 2^(stages-1) at 4x4, halving per octave down to
    width / 2, as DCGAN does."""
    return min(MAX_CHANNELS, max(width // 2, 1, (width << stages) >> (stage + 1)))


@GENERATORS.register("StyleGANGenerator")
class StyleGANGenerator(Generator):
    def __init__(
        self, latent_dim: int, channels: int, image_size: int, width: int, mapping_layers: int, style_mixing: float
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.w_dim = latent_dim
        self.style_mixing = style_mixing
        stages = _stages(image_size)
        self.mapping = nn.ModuleList(
            EqualLinear(latent_dim if i == 0 else self.w_dim, self.w_dim, lr_mul=MAPPING_LR_MULTIPLIER)
            for i in range(mapping_layers)
        )
        c = _channels(width, 0, stages)
        self.const = nn.Parameter(torch.randn(1, c, 4, 4))
        self.layers = nn.ModuleList([StyleLayer(c, c, self.w_dim, 4, upsample=False)])
        self.to_rgb = nn.ModuleList([ToRGB(c, channels, self.w_dim)])
        for stage in range(1, stages + 1):
            out = _channels(width, stage, stages)
            res = 4 * 2**stage
            self.layers.append(StyleLayer(c, out, self.w_dim, res, upsample=True))
            self.layers.append(StyleLayer(out, out, self.w_dim, res, upsample=False))
            self.to_rgb.append(ToRGB(out, channels, self.w_dim))
            c = out
        # Each conv layer and each toRGB reads one w; the toRGB of a stage shares its last conv layer's w.
        self.num_ws = len(self.layers)
        self.register_buffer("w_avg", torch.zeros(self.w_dim))

    def map(self, z: torch.Tensor) -> torch.Tensor:
        x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)  # pixel norm
        for layer in self.mapping:
            x = F.leaky_relu(layer(x), 0.2) * math.sqrt(2)
        return x

    def _styles(self, z: torch.Tensor, truncation: Optional[float]) -> torch.Tensor:
        """(B, num_ws, w_dim): one w per layer, mixed with a second latent's w during training."""
        w = self.map(z)
        if self.training:
            with torch.no_grad():
                self.w_avg.lerp_(w.detach().float().mean(dim=0), 1 - W_AVG_BETA)  # fp32 under bf16 autocast too
        if truncation is not None and truncation != 1:
            w = self.w_avg.lerp(w.float(), truncation)
        ws = w[:, None, :].expand(-1, self.num_ws, -1)
        if self.training and self.style_mixing > 0 and self.num_ws > 1:
            rng = self.noise_rng
            if float(torch.rand((), generator=rng)) < self.style_mixing:
                cutoff = int(torch.randint(1, self.num_ws, (), generator=rng))
                w2 = self.map(torch.randn(z.shape, generator=rng).to(z))
                ws = torch.cat([ws[:, :cutoff], w2[:, None, :].expand(-1, self.num_ws - cutoff, -1)], dim=1)
        return ws

    def forward(
        self, z: torch.Tensor, y: torch.Tensor | None = None, truncation: Optional[float] = None
    ) -> torch.Tensor:
        ws = self._styles(z, truncation)
        rng = self.noise_rng
        x = self.const.expand(z.shape[0], -1, -1, -1)
        x = self.layers[0](x, ws[:, 0], rng)
        rgb = self.to_rgb[0](x, ws[:, 0])
        for stage in range(1, len(self.to_rgb)):
            i = 2 * stage - 1
            x = self.layers[i](x, ws[:, i], rng)
            x = self.layers[i + 1](x, ws[:, i + 1], rng)
            rgb = F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False) + self.to_rgb[stage](x, ws[:, i + 1])
        return torch.tanh(rgb)


class MinibatchStd(nn.Module):
    """Appends the mean standard deviation across a group of samples as one feature map (StyleGAN's diversity cue).

    Groups are consecutive samples; a batch that is not a multiple of the group size uses one group per batch.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = MBSTD_GROUP if b % MBSTD_GROUP == 0 else b
        y = x.reshape(b // g, g, c, h, w)
        y = (y.var(dim=1, unbiased=False) + 1e-8).sqrt().mean(dim=[1, 2, 3])  # (b/g,)
        y = y.repeat_interleave(g).reshape(b, 1, 1, 1).expand(b, 1, h, w)
        return torch.cat([x, y], dim=1)


class ResidualDown(nn.Module):
    def __init__(self, c_in: int, c_out: int, spectral_norm: bool) -> None:
        super().__init__()
        self.conv1 = maybe_sn(nn.Conv2d(c_in, c_in, 3, 1, 1), spectral_norm)
        self.conv2 = maybe_sn(nn.Conv2d(c_in, c_out, 3, 1, 1), spectral_norm)
        self.skip = maybe_sn(nn.Conv2d(c_in, c_out, 1, bias=False), spectral_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.conv1(x), 0.2)
        h = F.avg_pool2d(F.leaky_relu(self.conv2(h), 0.2), 2)
        return (h + self.skip(F.avg_pool2d(x, 2))) / math.sqrt(2)


class StyleGANDiscriminator(nn.Module):
    def __init__(self, channels: int, image_size: int, width: int, spectral_norm: bool) -> None:
        super().__init__()
        stages = _stages(image_size)
        c = _channels(width, stages, stages)
        self.from_rgb = maybe_sn(nn.Conv2d(channels, c, 1), spectral_norm)
        blocks = []
        for stage in range(stages, 0, -1):
            out = _channels(width, stage - 1, stages)
            blocks.append(ResidualDown(c, out, spectral_norm))
            c = out
        self.blocks = nn.Sequential(*blocks)
        self.mbstd = MinibatchStd()
        self.conv = maybe_sn(nn.Conv2d(c + 1, c, 3, 1, 1), spectral_norm)
        self.fc = maybe_sn(nn.Linear(c * 16, c), spectral_norm)
        self.head = maybe_sn(nn.Linear(c, 1), spectral_norm)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.blocks(F.leaky_relu(self.from_rgb(x), 0.2))
        h = F.leaky_relu(self.conv(self.mbstd(h)), 0.2)
        h = F.leaky_relu(self.fc(h.flatten(1)), 0.2)
        return self.head(h).squeeze(1)


@FAMILIES.register("stylegan")
class StyleGAN:
    # StyleGAN2's recipe: non-saturating loss with lazy R1; gamma scaled down for tiny images.

    def build(self, cfg: ModelConfig, info: DataInfo) -> Networks:
        size = info.image_size
        if not 8 <= size <= 32 or info.shape[0] != info.shape[1]:
            raise ValueError(f"model.family 'stylegan' trains on square 8-32 px images; {info.name!r} holds {info.shape[0]}x{info.shape[1]}")
        kwargs = {
            "latent_dim": cfg.latent_dim,
            "channels": info.channels,
            "image_size": size,
            "width": cfg.width,
            "mapping_layers": cfg.depth,
            "style_mixing": cfg.style_mixing,
        }
        return Networks(
            generator=StyleGANGenerator(**kwargs),
            discriminator=StyleGANDiscriminator(info.channels * cfg.pack, size, cfg.discriminator_width, bool(cfg.spectral_norm)),
            arch={"generator": "StyleGANGenerator", "kwargs": kwargs},
        )
