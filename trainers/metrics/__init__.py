"""Sample-quality metrics: one suite per data kind, each scoring a generator from a fixed number of samples.

    ev = build_evaluator(info, (x, y), num_samples=2500, cache_dir=storage / "cache")   # features="own"
    scores = ev.evaluate(lambda n: generator(generator.sample_latents(n)))   # {"fd_own": ..., "kd_own": ..., ...}
    ev.floors                 # {"fd_own_floor": ..., ...}: the same scores for real samples
    ev.default_metric         # "fd_own" (images; "fid" with features="inception") or "reverse_kl" (points)
    ev.provenance             # feature space, weights digest, sample counts, resize rule
    METRIC_MODES["fd_own"]    # "min"

Suites and feature spaces are declared in declared.py (no torch: validation reads it); a suite's module registers its
evaluator in METRIC_SUITES and is imported when that kind is first built. This package imports torch only when one of
the names below is used, so `from trainers.metrics.declared import ...` stays light. The translation suites "paired"
and "unpaired" (translation.py) score a translator on held-out rows instead of samples.
"""
from __future__ import annotations

from typing import Any

from trainers.metrics.declared import METRIC_MODES

_LAZY = {"METRIC_SUITES": "trainers.metrics.base", "Evaluator": "trainers.metrics.base",
         "build_evaluator": "trainers.metrics.base", "save_grid": "trainers.metrics.grid"}

__all__ = ["METRIC_MODES", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'trainers.metrics' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)
