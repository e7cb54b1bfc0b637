"""Image suite: Fréchet and kernel distances through torchmetrics, precision/recall/density/coverage, class scores.

Every score lives in the feature space `metrics.features` names (extractors.py), and the two distances say which in
their names: `fid`/`kid` in Inception's, `fd_own`/`kd_own` in the data set's own network's (declared.py). Scores in
the own space compare with the held-out rows of split.py's fixed split, the network training on the disjoint fit rows
only; pretrained Inception saw none of them, so its reference may be any rows.
Reference statistics are cached under `cache_dir/features/<name>-<checksum[:12]>-real-<key>.safetensors`: FD's real
sums, the k-NN reference features and radii, the real label histogram and the real-vs-real floors, keyed by the
feature space's weights, the held-out samples and `num_samples`.
Reference set: min(num_samples, held-out (own) or all (inception) rows) real samples for every score (Naeem et al. advise equal real and fake
counts); the floors score num_samples of them drawn with replacement, the best a sampler of the data can reach.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import Tensor

from trainers.data.info import DataInfo
from trainers.metrics.base import CHUNK, METRIC_SUITES, Evaluator, RealRows
from trainers.metrics.cache import digest, load_or_build
from trainers.metrics.classes import class_histogram, class_scores
from trainers.metrics.declared import FEATURE_SPACES
from trainers.metrics.extractors import EXTRACTORS, TorchmetricsFeature
from trainers.metrics.feature_net import cache_stem
from trainers.metrics.prdc import kth_neighbour_radii, prdc

REFERENCE_VERSION = 2
KID_SUBSETS = 10  # torchmetrics' default of 100 would triple the time of an evaluation of 2,500 samples
KID_SUBSET_SIZE = 1000
KID_SEED = 0  # KID draws its subsets from the global RNG: fixed and isolated so scores are deterministic


def _metric_kwargs() -> dict[str, Any]:
    # Only the evaluating process scores: never all-gather metric state across a DDP group (other ranks would hang).
    return {"sync_on_compute": False}


@METRIC_SUITES.register("image")
class ImageEvaluator(Evaluator):
    def __init__(
        self, info: DataInfo, real: RealRows, num_samples: int, cache_dir: Path | None, device: torch.device,
        features: str = "own", weights: str | None = None,
    ) -> None:
        space = FEATURE_SPACES.get(features)
        x, y = real.reference(num_samples, held_out=space.fitted_on_data)
        height, width, channels = info.shape
        super().__init__(info, x, num_samples, device, sample_shape=(channels, height, width), features=features)
        if y is not None and info.num_classes > 1 and (y.min() < 0 or y.max() >= info.num_classes):
            raise ValueError(
                f"real labels of data set {info.name!r} must lie in 0..{info.num_classes - 1} (its num_classes), "
                f"got {int(y.min())}..{int(y.max())}"
            )
        x = x.float()
        self.fd_name, self.kd_name = space.names["fd"], space.names["kd"]
        found = EXTRACTORS.get(features)(info, real, cache_dir, weights)
        self.net, self.feature_net_path, self.feature_net_loaded = found.module, found.path, found.loaded
        self.net.to(self.device)
        self.class_logits = found.class_logits if y is not None else None
        self.extractor = TorchmetricsFeature(found)
        self.provenance.update(features=features, resize=space.resize, **found.provenance)

        # Imported here, not at module level: torchmetrics pulls in scipy.signal and its audio metrics (~1 s per
        # process), which point-cloud trials never need.
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance

        reference_size = len(x)
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

        key = digest(REFERENCE_VERSION, KID_SUBSETS, KID_SUBSET_SIZE, num_samples, features,
                     found.provenance["weights_sha256"], x, y)[:16]
        stem = cache_stem(info, x, y)
        self.reference_path = None if cache_dir is None else cache_dir / "features" / f"{stem}-real-{key}.safetensors"

        def build() -> tuple[dict[str, Tensor], dict[str, Any]]:
            tensors = self._reference(x, y)
            self._use_reference(tensors)
            return tensors, {"version": REFERENCE_VERSION, "floors": self.real_vs_real_floors(x)}

        (tensors, meta), self.reference_loaded = load_or_build(
            self.reference_path, lambda meta: meta.get("version") == REFERENCE_VERSION, build
        )
        self._use_reference(tensors)
        self.floors = {k: float(v) for k, v in meta["floors"].items()}

    def _reference(self, x: Tensor, y: Tensor | None) -> dict[str, Tensor]:
        """Real statistics every evaluation compares against."""
        with torch.no_grad():
            features = []
            for chunk in x.split(CHUNK):
                chunk = chunk.to(self.device)
                self.fid.update(chunk, real=True)
                features.append(self.extractor(chunk))  # the features FD just computed for this chunk
            self.extractor.forget()
            features = torch.cat(features)
            tensors = {
                "fid_real_sum": self.fid.real_features_sum,
                "fid_real_cov_sum": self.fid.real_features_cov_sum,
                "fid_real_count": self.fid.real_features_num_samples,
                "reference_features": features,
                "reference_radii": kth_neighbour_radii(features),
            }
            if self.class_logits is not None and y is not None:
                tensors["real_class_hist"] = class_histogram(y, self.info.num_classes)
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
        scores = {self.fd_name: self.fid.compute().item()}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(KID_SEED)
            scores[self.kd_name] = self.kid.compute()[0].item()
        scores.update(prdc(self.reference_features, self.reference_radii, fake))
        if self.real_class_hist is not None and self.class_logits is not None:
            predicted = self.class_logits(fake).argmax(dim=1)
            scores.update(class_scores(predicted, self.real_class_hist))
        return scores
