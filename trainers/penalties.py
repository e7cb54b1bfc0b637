"""Discriminator regularisers as pure functions: penalty(D, real, fake, generator) -> unweighted scalar.

The trainer multiplies by `train.penalty_weight` (lambda for GP, gamma for R1), or by the penalty's own
default weight (trainers/catalog.py) when the job leaves it null. `none` is registered too, so "no penalty" is a
name like any other.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from trainers.catalog import PENALTY_INFO
from trainers.registry import Registry

Penalty = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]
PENALTIES: Registry[Penalty] = Registry("train.penalty", declared=PENALTY_INFO)  # default weights: the catalog


def penalty(name: str, active: bool = True) -> Callable[[Penalty], Penalty]:
    """Register a penalty; `active=False` marks "no penalty" so the loop skips computing it."""

    def decorator(fn: Penalty) -> Penalty:
        fn.active = active  # type: ignore[attr-defined]
        return PENALTIES.register(name)(fn)

    return decorator


def _grad_norm_at(d: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(d(x).sum(), x, create_graph=True)
    return grad.flatten(1).norm(2, dim=1)


def _interpolate(real: torch.Tensor, fake: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    alpha = torch.rand(shape, generator=rng, device="cpu").to(real.device)
    return alpha * real.detach() + (1 - alpha) * fake.detach()


@penalty("none", active=False)
def no_penalty(d: nn.Module, real: torch.Tensor, fake: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    return torch.zeros((), device=real.device)


@penalty("gp")
def gradient_penalty(d: nn.Module, real: torch.Tensor, fake: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al., 2017): (||grad D(x_hat)|| - 1)^2 on random interpolates."""
    return ((_grad_norm_at(d, _interpolate(real, fake, rng)) - 1) ** 2).mean()


@penalty("gp-one-sided")
def one_sided_gradient_penalty(d: nn.Module, real: torch.Tensor, fake: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Penalise only gradient norms above 1 (Petzka et al., 2018)."""
    return (torch.relu(_grad_norm_at(d, _interpolate(real, fake, rng)) - 1) ** 2).mean()


@penalty("r1")
def r1_penalty(d: nn.Module, real: torch.Tensor, fake: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """R1 (Mescheder et al., 2018): gamma/2 * ||grad D(x_real)||^2; the 1/2 is folded in here."""
    return 0.5 * (_grad_norm_at(d, real) ** 2).mean()
