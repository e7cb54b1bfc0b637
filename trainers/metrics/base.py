"""The evaluator contract: one metric suite per data kind, picked from a registry.

An evaluator is built once per trial from the real rows (expensive parts cached on disk) and then scores a
generator at every evaluation from exactly `num_samples` samples, so scores compare across evaluations and trials.
Scores are computed against the held-out rows of split.py's fixed split (the fit rows may only shape a feature
network). Evaluators never touch the global RNG: the trainer's checkpoints record it, and evaluating must not change
training. Names, directions and defaults come from the suite's declaration in declared.py.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch
from torch import Tensor

from trainers.data.info import DataInfo
from trainers.metrics.declared import METRIC_MODES, METRIC_SUITE_INFO
from trainers.metrics.split import RealRows, RealSamples
from trainers.metrics.threads import one_thread
from trainers.registry import Registry

SampleFn = Callable[[int], Tensor]
__all__ = ["METRIC_MODES", "METRIC_SUITES", "Evaluator", "RealRows", "RealSamples", "build_evaluator"]

CHUNK = 500  # samples requested from sample_fn at a time: bounds memory for large images
FLOOR_SEED = 1234  # fixed draw of real samples for the real-vs-real floor


class Evaluator:
    """Scores generated samples against the real data of one data set.

    Subclasses fill `floors` (and add to `provenance`) in `__init__` and implement `score_chunks`.
    """

    def __init__(
        self, info: DataInfo, real_x: Tensor, num_samples: int, device: torch.device, sample_shape: tuple[int, ...],
        features: str = "own",
    ) -> None:
        """`real_x`: the held-out real samples scores compare with; `sample_shape`: one sample in model range, e.g.
        (C, H, W) for images, (D,) for points; `features`: the feature space metric names are in."""
        if num_samples < 2:
            raise ValueError(f"num_samples must be at least 2 to score samples, got {num_samples}")
        if tuple(real_x.shape[1:]) != sample_shape:
            raise ValueError(
                f"real samples of data set {info.name!r} have shape {tuple(real_x.shape[1:])}; expected "
                f"{sample_shape} per sample (from its shape {tuple(info.shape)})"
            )
        declared = METRIC_SUITE_INFO.get(info.kind)
        self.features = features if declared.uses_features else None
        self.default_metric = declared.default_metric(features)
        self.metric_names = tuple(declared.metric_modes(features))  # every name it may report (some: labelled only)
        self.info = info
        self.real_x = real_x
        self.num_samples = num_samples
        self.device = device
        self.sample_shape = sample_shape
        self.floors: dict[str, float] = {}
        # What every score depends on besides the generator: recorded beside it (MLflow params, run record, report).
        self.provenance: dict[str, Any] = {"suite": info.kind, "n_fake": num_samples, "n_real": len(real_x)}

    def evaluate(self, sample_fn: SampleFn) -> dict[str, float]:
        """Score exactly `num_samples` samples drawn from `sample_fn(n)` (called in chunks, without gradients)."""
        with torch.no_grad(), one_thread():
            return self.score_chunks(self._chunks(sample_fn))

    def score_chunks(self, chunks: Iterator[Tensor]) -> dict[str, float]:
        raise NotImplementedError

    def _chunks(self, sample_fn: SampleFn) -> Iterator[Tensor]:
        left = self.num_samples
        while left > 0:
            n = min(CHUNK, left)
            x = sample_fn(n)
            if not isinstance(x, Tensor) or tuple(x.shape) != (n, *self.sample_shape):
                got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
                raise ValueError(f"sample_fn({n}) returned {got}; expected a tensor of shape {(n, *self.sample_shape)}")
            yield x.detach().to(self.device, torch.float32)
            left -= n

    def real_vs_real_floors(self, real_x: Tensor) -> dict[str, float]:
        """Scores of `num_samples` real samples drawn with replacement (fixed seed) from the real set itself.

        This is the best score a sampler reproducing the real data achieves at this sample count (FID in particular
        is biased by the sample count), so every score is published beside it as `<metric>_floor`.
        """
        draw = torch.Generator().manual_seed(FLOOR_SEED)

        def real_sampler(n: int) -> Tensor:
            return real_x[torch.randint(len(real_x), (n,), generator=draw)]

        return {f"{name}_floor": value for name, value in self.evaluate(real_sampler).items()}


# Suites by data kind (declared in declared.py); each is constructed as
# suite(info, real: RealRows, num_samples, cache_dir: Path | None, device, features: str, weights: str | None),
# except the translation suites ("paired", "unpaired"), which score a translator on a separate held-out data set and
# are built by trainers/translation/trainer.py (translation.py has their constructor).
METRIC_SUITES: Registry[type[Evaluator]] = Registry("metric suite for data kind", declared=METRIC_SUITE_INFO)


def build_evaluator(
    info: DataInfo,
    real: RealRows | RealSamples,
    num_samples: int,
    cache_dir: str | Path | None,
    device: str | torch.device = "cpu",
    features: str = "own",
    weights: Optional[str] = None,
) -> Evaluator:
    """The metric suite for `info.kind`, ready to score generators.

    `real`: the data set's rows (`RealRows`, read on demand), or (x, y) held in memory: samples in model range
    (images float32 NCHW in [-1, 1]; points N x D) and int64 labels or None; split.py splits either the same way.
    `cache_dir` holds feature networks and real statistics across processes (None: nothing cached). `features`: the
    feature space of image metrics (`metrics.features`); `weights`: its weights file or folder (`metrics.weights`).
    """
    if not isinstance(real, RealRows):
        x, y = real
        if not isinstance(x, Tensor) or x.ndim < 2 or len(x) < 2:
            raise ValueError(f"real samples of data set {info.name!r} must be a tensor of at least 2 rows")
        if y is not None and (not isinstance(y, Tensor) or y.shape != (len(x),)):
            raise ValueError(f"real labels of data set {info.name!r} must be a 1-D tensor with one label per sample")
        real = RealRows.of(x, y, name=info.name)
    declared = METRIC_SUITE_INFO.get(info.kind)
    importlib.import_module(declared.module)  # registers the suite
    suite = METRIC_SUITES.get(info.kind)
    with one_thread():
        return suite(info, real, num_samples, None if cache_dir is None else Path(cache_dir), torch.device(device),
                     features, weights)


def load_all_suites() -> None:
    """Import every declared suite's module, so METRIC_SUITES lists them all (tests compare it with the declarations)."""
    for kind in METRIC_SUITE_INFO:
        importlib.import_module(METRIC_SUITE_INFO.get(kind).module)
