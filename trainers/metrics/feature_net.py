"""Small feature networks trained on the data set itself (`metrics.features: own`): the offline feature space.

Inception features of 8x8 digits would mean little, and Inception weights are not always at hand. A labelled data set
gets a small CNN classifier (features = its penultimate layer, and the classifier also scores class coverage); an
unlabelled one gets an autoencoder (features = its code). Both train deterministically in seconds on CPU, without
touching the caller's global RNG (the trainer's checkpoints record that RNG), on the fit split only (split.py).

Cached as `cache_dir/features/<name>-<checksum[:12]>-<kind>-<key>.safetensors` (weights + JSON constructor record),
`key` a digest of everything that changes the weights: the recipe below, the network's constructor and the exact
rows it trains on. So whichever job fills the cache first, every later one gets the same network.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from trainers.data.info import DataInfo
from trainers.metrics.cache import digest, load_or_build
from trainers.metrics.threads import one_thread
from trainers.registry import Registry

# Bump when the architecture or training recipe changes in a way the constants below do not show.
FEATURE_NET_VERSION = 2
NUM_FEATURES = 128
TRAIN_STEPS = 400  # a fixed budget, whatever the data set size: 2-4 s on one core for 8x8 digits
BATCH_SIZE = 128
LEARNING_RATE = 2e-3
TRAIN_SEED = 0
SCALE_SAMPLES = 10_000  # real samples that set the feature scale

FEATURE_NETS: Registry[type["FeatureNet"]] = Registry("feature network")


def _trunk(channels: int, height: int, width: int) -> tuple[nn.Sequential, int]:
    """Conv stack halving the resolution until it is at most 2x2; returns it and its flattened output size."""
    layers: list[nn.Module] = [nn.Conv2d(channels, 32, 3, padding=1), nn.LeakyReLU(0.2)]
    filters = 32
    while max(height, width) > 2:
        out = min(2 * filters, NUM_FEATURES)
        layers += [nn.Conv2d(filters, out, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
        filters, height, width = out, math.ceil(height / 2), math.ceil(width / 2)
    layers.append(nn.Flatten())
    return nn.Sequential(*layers), filters * height * width


class FeatureNet(nn.Module):
    """Contract: `embed(x)` maps model-range images (N,C,H,W) to (N, num_features); `loss(x, y)` trains it.

    Raw features are rescaled so real features have unit root-mean-square per dimension, the magnitude KID's
    polynomial kernel (gamma = 1/d) assumes and one that keeps FID readable across data sets.
    """

    num_features: int = NUM_FEATURES
    num_classes: int = 0

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        self.kwargs = kwargs  # JSON constructor record: the cache rebuilds the net from it, no pickle
        self.register_buffer("feature_scale", torch.ones(()))

    def raw_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.raw_features(x) * self.feature_scale

    def class_logits(self, features: torch.Tensor) -> torch.Tensor | None:
        """Class logits from `embed` features, for nets that classify; None otherwise."""
        return None


@FEATURE_NETS.register("classifier")
class ClassifierNet(FeatureNet):
    def __init__(self, channels: int, height: int, width: int, num_classes: int) -> None:
        super().__init__(channels=channels, height=height, width=width, num_classes=num_classes)
        trunk, flat = _trunk(channels, height, width)
        self.encoder = nn.Sequential(trunk, nn.Linear(flat, NUM_FEATURES), nn.ReLU())
        self.head = nn.Linear(NUM_FEATURES, num_classes)
        self.num_classes = num_classes

    def raw_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def class_logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features / self.feature_scale)

    def loss(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return F.cross_entropy(self.head(self.encoder(x)), y)


@FEATURE_NETS.register("autoencoder")
class AutoencoderNet(FeatureNet):
    def __init__(self, channels: int, height: int, width: int) -> None:
        super().__init__(channels=channels, height=height, width=width)
        trunk, flat = _trunk(channels, height, width)
        self.encoder = nn.Sequential(trunk, nn.Linear(flat, NUM_FEATURES))
        self.decoder = nn.Sequential(
            nn.Linear(NUM_FEATURES, 256), nn.LeakyReLU(0.2), nn.Linear(256, channels * height * width), nn.Tanh()
        )

    def raw_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def loss(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return F.mse_loss(self.decoder(self.encoder(x)), x.flatten(1))


def new_feature_net(x: torch.Tensor, y: torch.Tensor | None, num_classes: int) -> FeatureNet:
    """An untrained net of the right kind for these real samples: a classifier when labels exist."""
    channels, height, width = x.shape[1:]
    if y is not None and num_classes > 1:
        return ClassifierNet(channels=channels, height=height, width=width, num_classes=num_classes)
    return AutoencoderNet(channels=channels, height=height, width=width)


def kind_of(net: FeatureNet) -> str:
    return next(name for name in FEATURE_NETS if type(net) is FEATURE_NETS.get(name))


def train_feature_net(net: FeatureNet, x: torch.Tensor, y: torch.Tensor | None) -> FeatureNet:
    """Train `net` in place with a fixed recipe, seed and thread count: same inputs, same weights on one machine."""
    with one_thread(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(TRAIN_SEED)
        for module in net.modules():  # re-initialise under our seed: weights depend on nothing the caller did
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.reset_parameters()
        order = torch.Generator().manual_seed(TRAIN_SEED)
        opt = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=TRAIN_STEPS)
        net.train()
        with torch.enable_grad():
            for _ in range(TRAIN_STEPS):
                idx = torch.randint(len(x), (min(BATCH_SIZE, len(x)),), generator=order)
                loss = net.loss(x[idx], None if y is None else y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
    net.eval().requires_grad_(False)
    with one_thread(), torch.no_grad():
        features = torch.cat([net.raw_features(chunk) for chunk in x[:SCALE_SAMPLES].split(1024)])
        net.feature_scale.fill_(features.square().mean().clamp_min(1e-12).rsqrt().item())
    return net


def weights_digest(net: FeatureNet) -> str:
    return digest(*net.state_dict().values())


def cache_stem(info: DataInfo, x: torch.Tensor, y: torch.Tensor | None) -> str:
    safe_name = re.sub(r"[^A-Za-z0-9._-]+", "_", info.name) or "data"
    return f"{safe_name}-{info.checksum[:12] or digest(x, y)[:12]}"


def load_or_train(
    info: DataInfo, x: torch.Tensor, y: torch.Tensor | None, cache_dir: Path | None
) -> tuple[FeatureNet, Path | None, bool]:
    """The feature network for these fit rows: (net in eval mode, its cache file or None, loaded from the file)."""
    net = new_feature_net(x, y, info.num_classes)
    record = {"version": FEATURE_NET_VERSION, "kind": kind_of(net), "kwargs": net.kwargs}
    recipe = (NUM_FEATURES, TRAIN_STEPS, BATCH_SIZE, LEARNING_RATE, TRAIN_SEED, SCALE_SAMPLES)
    key = digest(repr(sorted(record.items())), *recipe, x, y)[:16]
    path = None
    if cache_dir is not None:
        path = cache_dir / "features" / f"{cache_stem(info, x, y)}-{record['kind']}-{key}.safetensors"

    def train() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return train_feature_net(net, x.cpu(), None if y is None else y.cpu()).state_dict(), record

    (state, _), loaded = load_or_build(path, lambda meta: meta == record, train)
    if loaded:
        net.load_state_dict(state)
    return net.eval().requires_grad_(False), path, loaded
