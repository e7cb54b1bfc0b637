"""Image suite: FID and KID through torchmetrics, precision/recall/density/coverage, and class coverage/KL.

All scores live in the feature space of a small network trained once on the data set (`feature_net.py`), cached
with its real statistics under `cache_dir/features/`:
- `<name>-<checksum[:12]>-<classifier|autoencoder>.safetensors`: the feature network's weights and JSON constructor
  record (the kind is in the name so labelled and unlabelled use of one data set never overwrite each other);
- `<name>-<checksum[:12]>-real-<key>.safetensors`: FID's real sums, the k-NN reference features and radii, the real
  label histogram and the real-vs-real floors, keyed by the network, the real samples and `num_samples`.
Reference sets: FID uses every real sample given; KID and the k-NN metrics use min(num_samples, #real) real samples
(fixed seed), as Naeem et al. advise equal real and fake counts.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import Tensor

from trainers.data.info import DataInfo
from trainers.catalog import METRIC_SUITE_INFO
from trainers.metrics import feature_net as fn
from trainers.metrics.base import CHUNK, METRIC_SUITES, Evaluator, RealSamples
from trainers.metrics.cache import digest, load_or_build
from trainers.metrics.classes import class_histogram, class_scores
from trainers.metrics.prdc import kth_neighbour_radii, prdc

# Bump when the feature network's architecture or training recipe changes: cached files of older versions are rebuilt.
FEATURE_NET_VERSION = 1
REFERENCE_VERSION = 1
KID_SUBSETS = 10  # torchmetrics' default of 100 would triple the time of an evaluation of 2,500 samples
KID_SUBSET_SIZE = 1000
KID_SEED = 0  # KID draws its subsets from the global RNG: fixed and isolated so scores are deterministic
REFERENCE_SEED = 0


def _cache_stem(info: DataInfo, x: Tensor, y: Tensor | None) -> str:
    safe_name = re.sub(r"[^A-Za-z0-9._-]+", "_", info.name) or "data"
    return f"{safe_name}-{info.checksum[:12] or digest(x, y)[:12]}"


def _load_or_train_feature_net(
    info: DataInfo, x: Tensor, y: Tensor | None, cache_dir: Path | None
) -> tuple[fn.FeatureNet, Path | None, bool]:
    net = fn.new_feature_net(x, y, info.num_classes)
    record = {"version": FEATURE_NET_VERSION, "kind": fn.kind_of(net), "kwargs": net.kwargs}
    path = None if cache_dir is None else cache_dir / "features" / f"{_cache_stem(info, x, y)}-{record['kind']}.safetensors"

    def train() -> tuple[dict[str, Tensor], dict[str, Any]]:
        return fn.train_feature_net(net, x.cpu(), None if y is None else y.cpu()).state_dict(), record

    (state, _), loaded = load_or_build(path, lambda meta: meta == record, train)
    if loaded:
        net.load_state_dict(state)
    return net.eval().requires_grad_(False), path, loaded


def _metric_kwargs() -> dict[str, Any]:
    # Only the evaluating process scores: never all-gather metric state across a DDP group (other ranks would hang).
    return {"sync_on_compute": False}


@METRIC_SUITES.register("image")
class ImageEvaluator(Evaluator):
    default_metric = METRIC_SUITE_INFO.get("image").default
    metric_names = tuple(METRIC_SUITE_INFO.get("image").modes)

    def __init__(
        self, info: DataInfo, real: RealSamples, num_samples: int, cache_dir: Path | None, device: torch.device
    ) -> None:
        x, y = real
        height, width, channels = info.shape
        super().__init__(info, x, num_samples, device, sample_shape=(channels, height, width))
        if y is not None and info.num_classes > 1 and (y.min() < 0 or y.max() >= info.num_classes):
            raise ValueError(
                f"real labels of data set {info.name!r} must lie in 0..{info.num_classes - 1} (its num_classes), "
                f"got {int(y.min())}..{int(y.max())}"
            )
        x = x.float()
        self.net, self.feature_net_path, self.feature_net_loaded = _load_or_train_feature_net(info, x, y, cache_dir)
        self.net.to(self.device)
        self.extractor = fn.FeatureExtractor(self.net)
        self.labelled = self.net.num_classes > 0

        # Imported here, not at module level: torchmetrics pulls in scipy.signal and its audio metrics (~1 s per
        # process), which point-cloud trials never need.
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance

        reference_size = min(len(x), num_samples)
        with warnings.catch_warnings():  # KID warns that it keeps all features in memory: a few hundred kB here
            warnings.simplefilter("ignore", UserWarning)
            self.fid = FrechetInceptionDistance(feature=self.extractor, reset_real_features=False, **_metric_kwargs())
            self.kid = KernelInceptionDistance(
                feature=self.extractor,
                subsets=KID_SUBSETS,
                subset_size=min(KID_SUBSET_SIZE, reference_size, num_samples),
                reset_real_features=False,
                **_metric_kwargs(),
            )
        self.fid.to(self.device)
        self.kid.to(self.device)

        key = digest(
            REFERENCE_VERSION, KID_SUBSETS, KID_SUBSET_SIZE, num_samples, *self.net.state_dict().values(), x, y
        )[:16]
        stem = _cache_stem(info, x, y)
        self.reference_path = None if cache_dir is None else cache_dir / "features" / f"{stem}-real-{key}.safetensors"

        def build() -> tuple[dict[str, Tensor], dict[str, Any]]:
            tensors = self._reference(x, y, reference_size)
            self._use_reference(tensors)
            return tensors, {"version": REFERENCE_VERSION, "floors": self.real_vs_real_floors(x)}

        (tensors, meta), self.reference_loaded = load_or_build(
            self.reference_path, lambda meta: meta.get("version") == REFERENCE_VERSION, build
        )
        self._use_reference(tensors)
        self.floors = {k: float(v) for k, v in meta["floors"].items()}

    def _reference(self, x: Tensor, y: Tensor | None, reference_size: int) -> dict[str, Tensor]:
        """Real statistics every evaluation compares against."""
        with torch.no_grad():
            for chunk in x.split(CHUNK):
                self.fid.update(chunk.to(self.device), real=True)
            pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(REFERENCE_SEED))[:reference_size]
            features = torch.cat([self.net.embed(c.to(self.device)) for c in x[pick.sort().values].split(CHUNK)])
            tensors = {
                "fid_real_sum": self.fid.real_features_sum,
                "fid_real_cov_sum": self.fid.real_features_cov_sum,
                "fid_real_count": self.fid.real_features_num_samples,
                "reference_features": features,
                "reference_radii": kth_neighbour_radii(features),
            }
            if self.labelled and y is not None:
                tensors["real_class_hist"] = class_histogram(y, self.net.num_classes)
        return tensors

    def _use_reference(self, t: dict[str, Tensor]) -> None:
        dev = self.device
        self.fid.real_features_sum = t["fid_real_sum"].to(dev)
        self.fid.real_features_cov_sum = t["fid_real_cov_sum"].to(dev)
        self.fid.real_features_num_samples = t["fid_real_count"].to(dev)
        self.kid.real_features = [t["reference_features"].to(dev)]
        self.reference_features = t["reference_features"].to(dev)
        self.reference_radii = t["reference_radii"].to(dev)
        self.real_class_hist = t["real_class_hist"].to(dev) if "real_class_hist" in t else None

    def score_chunks(self, chunks: Iterator[Tensor]) -> dict[str, float]:
        self.fid.reset()  # fake state only: reset_real_features=False keeps the cached real statistics
        self.kid.reset()
        try:
            for x in chunks:
                # score what a person would see: pixels outside [-1, 1] clip, non-finite ones read as grey/extremes
                x = torch.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0).clamp_(-1.0, 1.0)
                self.fid.update(x, real=False)
                self.kid.update(x, real=False)  # same chunk: the extractor reuses FID's features
        finally:
            self.extractor.forget()
        fake = torch.cat(self.kid.fake_features)
        scores = {"fid": self.fid.compute().item()}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(KID_SEED)
            scores["kid"] = self.kid.compute()[0].item()
        scores.update(prdc(self.reference_features, self.reference_radii, fake))
        if self.real_class_hist is not None:
            predicted = self.net.class_logits(fake).argmax(dim=1)
            scores.update(class_scores(predicted, self.real_class_hist))
        return scores
