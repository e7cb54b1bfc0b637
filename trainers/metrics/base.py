"""The evaluator contract: one metric suite per data kind, picked from a registry.

An evaluator is built once per trial from the real samples (expensive parts cached on disk) and then scores a
generator at every evaluation from exactly `num_samples` samples, so scores compare across evaluations and trials.
Evaluators never touch the global RNG: the trainer's checkpoints record it, and evaluating must not change training.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, ClassVar, Iterator

import torch
from torch import Tensor

from trainers import catalog
from trainers.data.info import DataInfo
from trainers.metrics.threads import one_thread
from trainers.registry import Registry

SampleFn = Callable[[int], Tensor]
RealSamples = tuple[Tensor, "Tensor | None"]

METRIC_MODES = catalog.METRIC_MODES  # every metric's natural direction, declared with the suites' names

CHUNK = 500  # samples requested from sample_fn at a time: bounds memory for large images
FLOOR_SEED = 1234  # fixed draw of real samples for the real-vs-real floor


class Evaluator:
    """Scores generated samples against the real data of one data set.

    Subclasses set `default_metric` and `metric_names`, fill `floors` in `__init__`, and implement `score_chunks`.
    """

    default_metric: ClassVar[str]
    metric_names: ClassVar[tuple[str, ...]]  # every name a suite may report (some only for labelled data)

    def __init__(
        self, info: DataInfo, real_x: Tensor, num_samples: int, device: torch.device, sample_shape: tuple[int, ...]
    ) -> None:
        """`sample_shape`: one sample in model range, e.g. (C, H, W) for images, (D,) for points."""
        if num_samples < 2:
            raise ValueError(f"num_samples must be at least 2 to score samples, got {num_samples}")
        if tuple(real_x.shape[1:]) != sample_shape:
            raise ValueError(
                f"real samples of data set {info.name!r} have shape {tuple(real_x.shape[1:])}; expected "
                f"{sample_shape} per sample (from its shape {tuple(info.shape)})"
            )
        self.info = info
        self.num_samples = num_samples
        self.device = device
        self.sample_shape = sample_shape
        self.floors: dict[str, float] = {}

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


# Suites by data kind; each is constructed as suite(info, real, num_samples, cache_dir: Path | None, device).
METRIC_SUITES: Registry[type[Evaluator]] = Registry("metric suite for data kind", declared=catalog.METRIC_SUITE_INFO)


def build_evaluator(
    info: DataInfo,
    real: RealSamples,
    num_samples: int,
    cache_dir: str | Path | None,
    device: str | torch.device = "cpu",
) -> Evaluator:
    """The metric suite for `info.kind`, ready to score generators.

    `real` = (x, y): real samples in model range (images float32 NCHW in [-1, 1]; points N x D) and int64 labels or
    None. `cache_dir` holds the feature network and real statistics across processes (None: nothing cached).
    """
    x, y = real
    if not isinstance(x, Tensor) or x.ndim < 2 or len(x) < 2:
        raise ValueError(f"real samples of data set {info.name!r} must be a tensor of at least 2 rows")
    if y is not None and (not isinstance(y, Tensor) or y.shape != (len(x),)):
        raise ValueError(f"real labels of data set {info.name!r} must be a 1-D tensor with one label per sample")
    suite = METRIC_SUITES.get(info.kind)
    with one_thread():
        return suite(info, (x, y), num_samples, None if cache_dir is None else Path(cache_dir), torch.device(device))
