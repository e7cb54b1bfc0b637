"""Adversarial losses as small pure functions of discriminator logits, picked by name from a registry.

Each loss gives the discriminator's loss from (real, fake) logits and the generator's loss from fake logits.
A loss may imply a penalty (WGAN-GP is the Wasserstein loss plus a gradient penalty).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from trainers.registry import Registry

Tensor = torch.Tensor


@dataclass(frozen=True)
class AdversarialLoss:
    d_loss: Callable[[Tensor, Tensor], Tensor]
    g_loss: Callable[[Tensor], Tensor]
    implied_penalty: Optional[str] = None
    # Whether D's output is a probability logit, so "D accuracy" diagnostics mean logit > 0 for real.
    logit_threshold: float = 0.0


LOSSES: Registry[AdversarialLoss] = Registry("train.loss")


def _bce_d(real: Tensor, fake: Tensor) -> Tensor:
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def _wasserstein_d(real: Tensor, fake: Tensor) -> Tensor:
    return fake.mean() - real.mean()


def _wasserstein_g(fake: Tensor) -> Tensor:
    return -fake.mean()


# Goodfellow et al.'s minimax objective: G minimises log(1 - D(G(z))) (saturates early in training).
LOSSES.register("minimax")(AdversarialLoss(d_loss=_bce_d, g_loss=lambda fake: -F.softplus(fake).mean()))
# The non-saturating variant: G maximises log D(G(z)).
LOSSES.register("ns")(AdversarialLoss(d_loss=_bce_d, g_loss=lambda fake: F.softplus(-fake).mean()))
LOSSES.register("wgan")(AdversarialLoss(d_loss=_wasserstein_d, g_loss=_wasserstein_g))
LOSSES.register("wgan-gp")(AdversarialLoss(d_loss=_wasserstein_d, g_loss=_wasserstein_g, implied_penalty="gp"))
LOSSES.register("hinge")(
    AdversarialLoss(d_loss=lambda r, f: F.relu(1 - r).mean() + F.relu(1 + f).mean(), g_loss=_wasserstein_g)
)
# Least squares GAN (Mao et al.), a-b-c = 0-1-1 coding; "D accuracy" splits at 0.5.
LOSSES.register("lsgan")(
    AdversarialLoss(
        d_loss=lambda r, f: 0.5 * ((r - 1) ** 2).mean() + 0.5 * (f**2).mean(),
        g_loss=lambda f: 0.5 * ((f - 1) ** 2).mean(),
        logit_threshold=0.5,
    )
)
