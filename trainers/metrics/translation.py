"""Translation metric suites: score a translator on a data set's held-out rows.

- "paired" data: L1 (mean absolute error, in units of the pixel range), PSNR (dB) and SSIM of G(A) against the
  aligned B, and `fd_own`, the Frechet distance between G(A) and the real B in B's feature space.
- "unpaired" data: the Frechet distance in the target domain's feature space both ways (`fd_own_ab`, `fd_own_ba`,
  their mean `fd_own`), the cycle-consistency error |G_BA(G_AB(a)) - a|, |G_AB(G_BA(b)) - b|, and, when the held-out
  rows are aligned (the built-ins know the true mapping), `truth_l1`, the L1 error against it both ways.

Every suite also reports its ideal or floor (`<metric>_floor`: 0 for errors, 1 for SSIM, the real-vs-real FD of
training against held-out targets) and the identity mapping's scores (`<metric>_identity`), the trivial baseline.
Feature spaces are the image suite's own networks (feature_net.py: autoencoders here, one per domain) fitted on that
domain's training rows only, while scores use the separate held-out data set: so FD carries the `_own` of
declared.py's naming (never `fid`, which names Inception features). Names and directions are declared there.
"""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from trainers.data.info import DataInfo
from trainers.metrics import feature_net as fn
from trainers.metrics.base import METRIC_SUITES, Evaluator
from trainers.metrics.threads import one_thread

Translate = Callable[[Tensor, str], Tensor]  # (N x C x H x W in model range, "AtoB" | "BtoA") -> translated
CHUNK = 256
SSIM_WINDOW, SSIM_SIGMA = 7, 1.5  # 7 px: the 11 px window of Wang et al. does not fit 8 px images
SSIM_C1, SSIM_C2 = 0.01**2, 0.03**2


def halves(rows: Tensor) -> tuple[Tensor, Tensor]:
    """Side-by-side rows N x C x H x 2W -> (A, B)."""
    width = rows.shape[-1] // 2
    return rows[..., :width], rows[..., width:]


def _unit(x: Tensor) -> Tensor:
    return ((x.float().clamp(-1, 1) + 1) / 2).nan_to_num(0.5)


def l1_error(x: Tensor, target: Tensor) -> float:
    """Mean absolute error in units of the pixel range (0 = identical, 1 = black vs white everywhere)."""
    return float((_unit(x) - _unit(target)).abs().mean())


def psnr(x: Tensor, target: Tensor) -> float:
    """Peak signal-to-noise ratio in dB over the whole set (pixel range 1); inf for identical images."""
    mse = float((_unit(x) - _unit(target)).square().mean())
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def ssim(x: Tensor, target: Tensor) -> float:
    """Mean structural similarity (Wang et al. 2004), Gaussian window, per channel; 1 for identical images."""
    x, y = _unit(x), _unit(target)
    channels = x.shape[1]
    size = min(SSIM_WINDOW, x.shape[-1], x.shape[-2])
    g = torch.exp(-((torch.arange(size) - (size - 1) / 2) ** 2) / (2 * SSIM_SIGMA**2))
    window = (g[:, None] * g[None, :] / g.sum() ** 2).expand(channels, 1, size, size).contiguous()

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, window, groups=channels)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    s = ((2 * mx * my + SSIM_C1) * (2 * cxy + SSIM_C2)) / ((mx**2 + my**2 + SSIM_C1) * (vx + vy + SSIM_C2))
    return float(s.mean())


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2) between two feature sets (rows = samples)."""
    from scipy import linalg

    a64, b64 = a.double().cpu().numpy(), b.double().cpu().numpy()
    mu_a, mu_b = a64.mean(0), b64.mean(0)
    cov_a, cov_b = np.cov(a64, rowvar=False), np.cov(b64, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b)
    root = root.real if np.iscomplexobj(root) else root
    return float(max(0.0, np.square(mu_a - mu_b).sum() + np.trace(cov_a + cov_b - 2 * root)))


def _identity(x: Tensor, direction: str) -> Tensor:
    return x


class TranslationSuite(Evaluator):
    """Built once per trial from the held-out rows (and training rows for the feature nets); `evaluate(translate)`
    scores a translator at every evaluation on the same rows, so scores compare across evaluations and trials.

    The Evaluator contract with a translator in place of a sampler: `num_samples` is the held-out row count (each
    translated once per direction), `real_x` those rows, and `floors` / `provenance` are filled as every suite's.
    """

    kind: ClassVar[str]

    feature_domains: ClassVar[tuple[str, ...]]  # the target domains whose feature spaces FD is measured in

    def __init__(self, info: DataInfo, heldout: Tensor, heldout_aligned: bool, train_rows: Tensor,
                 cache_dir: Path | None = None, device: torch.device | str = "cpu") -> None:
        if heldout.ndim != 4 or heldout.shape[-1] != 2 * heldout.shape[-2] or len(heldout) < 2:
            raise ValueError(f"held-out rows of {info.name!r} must be N >= 2 side-by-side A|B images, got {tuple(heldout.shape)}")
        super().__init__(info, heldout, len(heldout), torch.device(device), sample_shape=tuple(heldout.shape[1:]))
        self.a, self.b = (t.float().to(self.device) for t in halves(heldout))
        self.aligned = heldout_aligned
        train_a, train_b = halves(train_rows.float())
        train = {"A": train_a, "B": train_b}
        held = {"A": self.a, "B": self.b}
        with one_thread():
            # Cached per data set and domain under cache_dir/features: trials of a search train each net once.
            found = {d: fn.load_or_train(replace(info, name=f"{info.name}-{d}"), train[d].contiguous(), None, cache_dir)
                     for d in self.feature_domains}
            self.nets = {d: net.to(self.device) for d, (net, _, _) in found.items()}
            self.reference = {d: self._embed(d, held[d]) for d in self.feature_domains}
            real_vs_real = {d: frechet_distance(self._embed(d, train[d][: len(self.a)].to(self.device)), self.reference[d])
                            for d in self.feature_domains}
            self.floors = self.ideal(real_vs_real)
            self.baselines = {f"{k}_identity": v for k, v in self.evaluate(_identity).items()}
        self.provenance.update(self._provenance(len(train_rows)))

    def _provenance(self, fit_rows: int) -> dict[str, Any]:
        return {"features": "own", "resize": "none (native resolution)", "fit_rows": fit_rows,
                "network": ",".join(f"{d}:{fn.kind_of(net)}" for d, net in self.nets.items()),
                "weights_sha256": ",".join(f"{d}:{fn.weights_digest(net)}" for d, net in self.nets.items()),
                "heldout_aligned": self.aligned}

    def _embed(self, domain: str, x: Tensor) -> Tensor:
        return torch.cat([self.nets[domain].embed(c) for c in x.split(CHUNK)])

    def _translate(self, translate: Translate, x: Tensor, direction: str) -> Tensor:
        return torch.cat([translate(c, direction).float() for c in x.split(CHUNK)])

    def evaluate(self, translate: Translate) -> dict[str, float]:  # type: ignore[override]  (a translator, not a sampler)
        with torch.no_grad(), one_thread():
            return self.score(translate)

    def score(self, translate: Translate) -> dict[str, float]:
        raise NotImplementedError

    def ideal(self, real_vs_real: dict[str, float]) -> dict[str, float]:
        raise NotImplementedError


@METRIC_SUITES.register("paired")
class PairedSuite(TranslationSuite):
    kind = "paired"
    feature_domains = ("B",)

    def score(self, translate: Translate) -> dict[str, float]:
        out = self._translate(translate, self.a, "AtoB")
        return {"l1": l1_error(out, self.b), "psnr": psnr(out, self.b), "ssim": ssim(out, self.b),
                "fd_own": frechet_distance(self._embed("B", out.clamp(-1, 1)), self.reference["B"])}

    def ideal(self, real_vs_real: dict[str, float]) -> dict[str, float]:
        return {"l1_floor": 0.0, "ssim_floor": 1.0, "fd_own_floor": real_vs_real["B"]}


@METRIC_SUITES.register("unpaired")
class UnpairedSuite(TranslationSuite):
    kind = "unpaired"
    feature_domains = ("A", "B")

    def score(self, translate: Translate) -> dict[str, float]:
        fake_b, fake_a = self._translate(translate, self.a, "AtoB"), self._translate(translate, self.b, "BtoA")
        rec_a, rec_b = self._translate(translate, fake_b, "BtoA"), self._translate(translate, fake_a, "AtoB")
        scores = {
            "fd_own_ab": frechet_distance(self._embed("B", fake_b.clamp(-1, 1)), self.reference["B"]),
            "fd_own_ba": frechet_distance(self._embed("A", fake_a.clamp(-1, 1)), self.reference["A"]),
            "cycle_error": (l1_error(rec_a, self.a) + l1_error(rec_b, self.b)) / 2,
        }
        scores["fd_own"] = (scores["fd_own_ab"] + scores["fd_own_ba"]) / 2
        if self.aligned:
            scores["truth_l1"] = (l1_error(fake_b, self.b) + l1_error(fake_a, self.a)) / 2
        return scores

    def ideal(self, real_vs_real: dict[str, float]) -> dict[str, float]:
        floors = {"fd_own_ab_floor": real_vs_real["B"], "fd_own_ba_floor": real_vs_real["A"], "cycle_error_floor": 0.0,
                  "fd_own_floor": (real_vs_real["A"] + real_vs_real["B"]) / 2}
        if self.aligned:
            floors["truth_l1_floor"] = 0.0
        return floors
