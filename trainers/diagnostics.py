"""Training health beside the scores: spectral norms, sample diversity and the mode-collapse flag.

The loop samples D accuracy, gradient norms and losses every few steps (see loop._DIAGNOSTICS_EVERY); the
functions here run once per evaluation, so their cost is amortised over hundreds of steps.

Mode collapse (`collapsed` = 1.0) is flagged when either
- the covered share falls below `train.collapse_coverage`: the first coverage signal the suite reports (mixture
  modes, class coverage, or PRDC coverage), divided by its real-vs-real floor, so 1.0 means "as covered as real
  data at this sample count"; or
- sample diversity (mean pairwise distance between samples) falls below `train.collapse_diversity` times the
  real data's.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from trainers.config import TrainConfig

DIVERSITY_SAMPLES = 256  # pairwise distances of this many samples: enough to see a collapse, cheap to compute
# Coverage-type scores by priority: the most direct evidence of dropped modes first.
COVERAGE_SIGNALS = ("modes", "class_coverage", "coverage")


@torch.no_grad()
def largest_spectral_norm(module: nn.Module) -> float:
    """The largest spectral norm over the weight matrices of `module` (conv kernels reshaped to out x in*k*k).

    Spectrally normalised layers report their normalised weight (about 1); a growing value in a plain D is the
    classic precursor of a divergence.
    """
    largest = 0.0
    for sub in module.modules():
        weight = getattr(sub, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.dim() >= 2:
            # Equalised-learning-rate layers (StyleGAN) store N(0, 1) weights and apply them times `scale`.
            matrix = (weight.detach().float() * getattr(sub, "scale", 1.0)).reshape(weight.shape[0], -1)
            largest = max(largest, float(torch.linalg.matrix_norm(matrix, ord=2)))
    return largest


@torch.no_grad()
def sample_diversity(x: torch.Tensor) -> float:
    """Mean pairwise L2 distance between (up to DIVERSITY_SAMPLES) samples, flattened; 0 for identical samples."""
    x = x[:DIVERSITY_SAMPLES].flatten(1).double()
    x = torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    n = x.shape[0]
    if n < 2:
        return 0.0
    return float(torch.pdist(x).sum() * 2 / (n * (n - 1)))


def coverage_share(scores: dict[str, float], floors: dict[str, float]) -> Optional[float]:
    """The first available coverage signal relative to its real-vs-real floor (None when the suite has none)."""
    for name in COVERAGE_SIGNALS:
        if name in scores and math.isfinite(scores[name]):
            floor = floors.get(f"{name}_floor")
            return scores[name] / floor if floor and floor > 0 else scores[name]
    return None


def collapse_report(
    scores: dict[str, float], floors: dict[str, float], diversity_ratio: float, train: TrainConfig
) -> dict[str, float]:
    """`collapsed` (0/1), `coverage_share` (when known) and `diversity_ratio` for one evaluation."""
    share = coverage_share(scores, floors)
    collapsed = diversity_ratio < train.collapse_diversity or (share is not None and share < train.collapse_coverage)
    out = {"collapsed": float(collapsed), "diversity_ratio": diversity_ratio}
    if share is not None:
        out["coverage_share"] = share
    return out
