"""Mode metrics for 2-D Gaussian mixtures, following PacGAN's released evaluation (Lin et al. 2018, Table 1).

Each sample is assigned to its nearest mean. It is *high quality* when within HQ_SIGMAS standard deviations of that
mean (a perfect sampler reaches only P(chi2_2 <= 9) = 1 - exp(-4.5) = 98.89 %).
- modes: number of means with at least one high-quality sample;
- hq: percentage of all samples that are high quality;
- reverse_kl: KL(p || uniform) where p is the histogram of the *high-quality* samples over the modes, i.e.
  sum_i p_i log(K p_i) with 0 log 0 = 0 (PacGAN's mode histogram counts only high-quality samples). With no
  high-quality sample at all it is log K, the value of a sampler collapsed onto one mode;
- mode_hq: modes / K x hq (percent, higher is better), one number for selection: a generator must both cover the
  modes and put its samples on them. Modes alone rewards blur; HQ alone, and reverse KL (which only sees the HQ
  samples), reward a generator that drops modes or puts 2 % of its samples on every mode. A perfect sampler scores
  ~98.9, one collapsed onto a single mode hq / K. It is the score bench/pacgan_protocol.py's search ranks by.
- balanced_mode_hq: exp(-reverse_kl) x hq = effective modes / K x hq, where the effective number of modes is the
  perplexity exp(H(p)) of that histogram: mode_hq with "how many modes, counting how evenly they are filled" in
  place of "how many have one HQ sample". Equal to mode_hq when the covered modes are filled evenly; below it
  when they are not (8 modes filled 3:1 score less than 8 filled 1:1), so a search ranked by it prefers the
  generator that meets the reverse-KL target too.
- spread_mode_hq: balanced_mode_hq that cannot be raised by drawing the modes narrower than the data: HQ counts only
  up to a perfect sampler's rate (98.89 %) and the score is scaled by min(1, mode_spread). The HQ threshold alone
  rewards narrow modes (a point mass on every mean scores 100 % HQ, KL 0); here it scores 0, and the perfect
  sampler is the best possible generator (~98.9). Wider modes than the data's already lose HQ.
Non-finite samples count as low quality.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import torch
from torch import Tensor

from trainers.data.info import DataInfo
from trainers.metrics.base import METRIC_SUITES, Evaluator, RealRows

HQ_SIGMAS = 3.0
PERFECT_HQ = 100.0 * (1.0 - math.exp(-HQ_SIGMAS**2 / 2))  # P(chi2_2 <= 9): a perfect 2-D sampler's HQ percentage


def mode_hq(modes: float, hq: float, k: int) -> float:
    """Share of the K modes covered times the HQ percentage: the mixture suite's selection score."""
    return modes / k * hq


def balanced_mode_hq(hq: float, reverse_kl: float) -> float:
    """HQ percentage times the effective share of modes, exp(H(p)) / K = exp(-reverse KL)."""
    return hq * math.exp(-reverse_kl)


def spread_mode_hq(hq: float, reverse_kl: float, spread: float) -> float:
    """balanced_mode_hq with HQ capped at a perfect sampler's rate and scaled by min(1, spread): narrow modes never pay."""
    return min(hq, PERFECT_HQ) * math.exp(-reverse_kl) * min(1.0, spread)


def mixture_scores(x: Tensor, means: Tensor, sigma: float) -> dict[str, float]:
    dist = torch.cdist(x.double(), means.double())  # (N, K)
    nearest_dist, nearest = dist.min(dim=1)
    hq = nearest_dist < HQ_SIGMAS * sigma  # NaN compares False: non-finite samples are low quality
    k = means.shape[0]
    counts = torch.bincount(nearest[hq], minlength=k).double()
    if counts.sum() == 0:
        reverse_kl = math.log(k)
    else:
        p = counts[counts > 0] / counts.sum()
        reverse_kl = (p * (p * k).log()).sum().item()
    modes = float((counts > 0).sum().item())
    hq_percent = 100.0 * hq.double().mean().item()
    spread = mode_spread(nearest_dist[hq], sigma, means.shape[1])
    return {"modes": modes, "hq": hq_percent, "reverse_kl": reverse_kl, "mode_hq": mode_hq(modes, hq_percent, k),
            "balanced_mode_hq": balanced_mode_hq(hq_percent, reverse_kl), "mode_spread": spread,
            "spread_mode_hq": spread_mode_hq(hq_percent, reverse_kl, spread)}


def mode_spread(hq_dist: Tensor, sigma: float, dim: int) -> float:
    """RMS distance of the high-quality samples to their mode, over a perfect sampler's (1.0).

    The mode metrics above do not see collapse *within* a mode: a generator that puts a point mass on every mean
    scores 100 % HQ and KL 0. This does: such a generator scores 0. A perfect sampler's HQ samples have
    E[r^2 | r < c sigma] = sigma^2 D P(chi2_{D+2} <= c^2) / P(chi2_D <= c^2) (0.95 D sigma^2 for c = 3, D = 2).
    """
    if hq_dist.numel() == 0:
        return 0.0
    c2 = torch.tensor(HQ_SIGMAS**2 / 2, dtype=torch.float64)
    expected = sigma**2 * dim * (torch.special.gammainc(torch.tensor(dim / 2 + 1.0, dtype=torch.float64), c2)
                                 / torch.special.gammainc(torch.tensor(dim / 2, dtype=torch.float64), c2)).item()
    return math.sqrt(hq_dist.double().pow(2).mean().item() / expected)


def _mixture_spec(info: DataInfo) -> tuple[Tensor, float]:
    mixture = info.extra.get("mixture")
    where = f'data set {info.name!r}: info.extra["mixture"]'
    if not isinstance(mixture, dict) or "means" not in mixture or "sigma" not in mixture:
        raise ValueError(f'{where} must be {{"means": [[x, y], ...], "sigma": s}} to score points')
    try:
        means = torch.tensor(mixture["means"], dtype=torch.float64)
        sigma = float(mixture["sigma"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where} is malformed: {exc}") from None
    if means.ndim != 2 or means.shape[0] < 1 or means.shape[1] != info.shape[0]:
        raise ValueError(f"{where}.means must be a list of {info.shape[0]}-D points, got shape {tuple(means.shape)}")
    if not sigma > 0:
        raise ValueError(f"{where}.sigma must be positive, got {sigma}")
    return means, sigma


@METRIC_SUITES.register("points")
class MixtureEvaluator(Evaluator):
    """Scores need only the mixture's means and sigma; real rows give the real-vs-real floors."""

    def __init__(
        self, info: DataInfo, real: RealRows, num_samples: int, cache_dir: Path | None, device: torch.device,
        features: str = "own", weights: str | None = None,
    ) -> None:
        x = real.reference(num_samples, held_out=False)[0]  # nothing is fitted: every row may be the reference
        super().__init__(info, x, num_samples, device, sample_shape=tuple(info.shape))
        self.means, self.sigma = _mixture_spec(info)
        self.means = self.means.to(self.device)
        self.floors = self.real_vs_real_floors(x)

    def score_chunks(self, chunks: Iterator[Tensor]) -> dict[str, float]:
        return mixture_scores(torch.cat(list(chunks)), self.means, self.sigma)
