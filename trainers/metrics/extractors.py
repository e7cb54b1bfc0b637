"""Feature extractors image metrics are computed in, by `metrics.features` name (declared in declared.py).

Each builder gets the data set's real rows (split.py: only the fit split may shape a network) and returns an
`Extractor`: `embed(model-range images) -> (N, d)` features plus the provenance recorded beside every score.
- own: a small network trained on the fit split (feature_net.py), cached under `cache_dir/features/`;
- inception: the FID InceptionV3 with the TTUR/pytorch-fid weights from a local file (inception.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from trainers.data.info import DataInfo
from trainers.metrics import feature_net as fn
from trainers.metrics import inception
from trainers.metrics.declared import FEATURE_SPACES
from trainers.metrics.split import RealRows
from trainers.registry import Registry

INCEPTION_BATCH = 32  # images per Inception forward: bounds activation memory at 299x299


@dataclass
class Extractor:
    space: str  # the metrics.features name
    module: nn.Module  # moved to the evaluating device
    embed: Callable[[Tensor], Tensor]
    num_features: int
    provenance: dict[str, Any]  # weights digest and what shaped them
    class_logits: Optional[Callable[[Tensor], Tensor]] = None  # features -> class logits, for nets that classify
    path: Optional[Path] = None  # the weights file it came from
    loaded: bool = True  # read from a file (False: trained just now)


Builder = Callable[[DataInfo, RealRows, Optional[Path], Optional[str]], Extractor]
EXTRACTORS: Registry[Builder] = Registry("metrics.features", declared=FEATURE_SPACES)


@EXTRACTORS.register("own")
def own(info: DataInfo, real: RealRows, cache_dir: Optional[Path], weights: Optional[str]) -> Extractor:
    x, y = real.fit()
    net, path, loaded = fn.load_or_train(info, x.float(), y, cache_dir)
    return Extractor(
        space="own", module=net, embed=net.embed, num_features=net.num_features, path=path, loaded=loaded,
        class_logits=net.class_logits if net.num_classes > 0 else None,
        provenance={"weights_sha256": fn.weights_digest(net), "fit_rows": len(x), "network": fn.kind_of(net)},
    )


@EXTRACTORS.register("inception")
def inception_v3(info: DataInfo, real: RealRows, cache_dir: Optional[Path], weights: Optional[str]) -> Extractor:
    if info.shape[2] not in (1, 3):
        raise ValueError(f"metrics.features inception scores grey or RGB images; data set {info.name!r} has "
                         f"{info.shape[2]} channels")
    path = inception.find_weights(weights, cache_dir)
    net = inception.load_inception(path)
    digest = inception.sha256_of(path)
    if not digest.startswith(inception.TTUR_SHA256_PREFIX):
        import warnings

        warnings.warn(f"{path}: SHA-256 {digest[:12]}… is not that of {inception.INCEPTION_WEIGHTS}; its fid/kid "
                      f"are not comparable with published numbers", stacklevel=2)

    def embed(x: Tensor) -> Tensor:
        return torch.cat([net(inception.legacy_pytorch_resize(chunk)) for chunk in x.split(INCEPTION_BATCH)])

    return Extractor(
        space="inception", module=net, embed=embed, num_features=inception.NUM_FEATURES, path=path,
        provenance={"weights_sha256": digest, "weights_file": path.name,
                    "weights_match_ttur": digest.startswith(inception.TTUR_SHA256_PREFIX)},
    )


class TorchmetricsFeature(nn.Module):
    """What torchmetrics gets as `feature=`: images -> (N, num_features) float32.

    FID and KID each run their feature module on the same chunk; the last chunk's features are remembered so each
    chunk is embedded once. `num_features` spares torchmetrics a dummy forward pass at Inception's 299x299 size.
    """

    def __init__(self, extractor: Extractor) -> None:
        super().__init__()
        self.net = extractor.module
        self._embed = extractor.embed
        self.num_features = extractor.num_features
        self._last: tuple[Tensor, int, Tensor] | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self._last is not None and self._last[0] is x and self._last[1] == x._version:
            return self._last[2]
        features = self._embed(x)
        self._last = (x, x._version, features)
        return features

    def forget(self) -> None:
        self._last = None

    def train(self, mode: bool = True) -> "TorchmetricsFeature":
        return super().train(False)  # never leaves eval mode, like torchmetrics' own Inception wrapper
