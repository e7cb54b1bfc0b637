"""Adversarial losses as small pure functions of discriminator logits, picked by name from a registry.

Each loss gives the discriminator's loss from (real, fake) logits and the generator's loss from fake logits.
`d_loss(real, fake, real_target)` takes the real label target for one-sided label smoothing (Salimans et al., 2016);
losses without a label target (Wasserstein, hinge) declare `label_target=False` and ignore it.
A loss may imply a penalty (WGAN-GP is the Wasserstein loss plus a gradient penalty).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from trainers.catalog import LOSS_INFO
from trainers.registry import Registry

Tensor = torch.Tensor


@dataclass(frozen=True)
class AdversarialLoss:
    d_loss: Callable[..., Tensor]  # (real_logits, fake_logits, real_target=1.0) -> scalar
    g_loss: Callable[[Tensor], Tensor]
    # D's decision boundary: "D accuracy" diagnostics count real > threshold and fake < threshold as correct.
    logit_threshold: float = 0.0
    # Whether the loss has a real-label target that label smoothing can soften.
    label_target: bool = True


LOSSES: Registry[AdversarialLoss] = Registry("train.loss", declared=LOSS_INFO)  # implied penalties: the catalog


def _bce_d(real: Tensor, fake: Tensor, real_target: float = 1.0) -> Tensor:
    # BCE with target t on real logits: t*softplus(-r) + (1-t)*softplus(r); t = 1 is the plain GAN loss.
    real_term = F.softplus(-real).mean() if real_target == 1.0 else (
        real_target * F.softplus(-real) + (1 - real_target) * F.softplus(real)
    ).mean()
    return real_term + F.softplus(fake).mean()


def _wasserstein_d(real: Tensor, fake: Tensor, real_target: float = 1.0) -> Tensor:
    return fake.mean() - real.mean()


def _wasserstein_g(fake: Tensor) -> Tensor:
    return -fake.mean()


def _hinge_d(real: Tensor, fake: Tensor, real_target: float = 1.0) -> Tensor:
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def _lsgan_d(real: Tensor, fake: Tensor, real_target: float = 1.0) -> Tensor:
    return 0.5 * ((real - real_target) ** 2).mean() + 0.5 * (fake**2).mean()


# Goodfellow et al.'s minimax objective: G minimises log(1 - D(G(z))) (saturates early in training).
LOSSES.register("minimax")(AdversarialLoss(d_loss=_bce_d, g_loss=lambda fake: -F.softplus(fake).mean()))
# The non-saturating variant: G maximises log D(G(z)).
LOSSES.register("ns")(AdversarialLoss(d_loss=_bce_d, g_loss=lambda fake: F.softplus(-fake).mean()))
LOSSES.register("wgan")(AdversarialLoss(d_loss=_wasserstein_d, g_loss=_wasserstein_g, label_target=False))
LOSSES.register("wgan-gp")(
    AdversarialLoss(d_loss=_wasserstein_d, g_loss=_wasserstein_g, label_target=False)
)
LOSSES.register("hinge")(AdversarialLoss(d_loss=_hinge_d, g_loss=_wasserstein_g, label_target=False))
# Least squares GAN (Mao et al.), a-b-c = 0-1-1 coding; "D accuracy" splits at 0.5.
LOSSES.register("lsgan")(
    AdversarialLoss(d_loss=_lsgan_d, g_loss=lambda f: 0.5 * ((f - 1) ** 2).mean(), logit_threshold=0.5)
)
