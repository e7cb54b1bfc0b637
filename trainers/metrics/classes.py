"""Class-level mode coverage for labelled data, judged by the data set's own classifier.

- class_coverage: share of classes the classifier assigns to at least COVERED_SHARE of their real frequency
  (a class with 10 % of the real data is covered from 2.5 % of the samples), so a few misclassified samples of a
  collapsed generator do not count as covering a class.
- class_kl: KL(predicted class histogram of the samples || real label histogram), the reverse KL used for mixture
  modes (0 for a matching histogram, log K for all samples in one of K equally frequent classes).
"""
from __future__ import annotations

import torch

COVERED_SHARE = 0.25
_EPS = 1e-12  # keeps the KL finite if the real data lacks a class the samples show


def class_histogram(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    counts = torch.bincount(labels.flatten().long(), minlength=num_classes)[:num_classes].double()
    return counts / counts.sum().clamp_min(1)


def class_scores(predicted: torch.Tensor, real_hist: torch.Tensor) -> dict[str, float]:
    fake_hist = class_histogram(predicted, real_hist.numel())
    present = fake_hist > 0
    kl = (fake_hist[present] * (fake_hist[present] / real_hist[present].clamp_min(_EPS)).log()).sum()
    covered = (fake_hist >= COVERED_SHARE * real_hist) & (real_hist > 0)
    return {
        "class_coverage": (covered.sum().double() / (real_hist > 0).sum()).item(),
        "class_kl": kl.item(),
    }
