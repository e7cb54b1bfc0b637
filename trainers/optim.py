"""Optimizers by name (`train.optimizer`), each knowing how to (re-)apply the trial's hyperparameters.

`apply` runs at construction and after every checkpoint restore: a restored optimizer state carries whoever saved
it's lr/betas (with PBT, the donor's), which would silently undo the search's mutation (ray-project/ray#62173).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch

from trainers.config import TrainConfig
from trainers.catalog import OPTIMIZER_NAMES
from trainers.registry import Registry


@dataclass(frozen=True)
class OptimizerKind:
    build: Callable[[Iterable[torch.nn.Parameter], float, TrainConfig], torch.optim.Optimizer]
    apply: Callable[[dict, float, TrainConfig], None]  # (param_group, lr, train) -> None


OPTIMIZERS: Registry[OptimizerKind] = Registry("train.optimizer", declared=OPTIMIZER_NAMES)


def _fused(params: list[torch.nn.Parameter]) -> dict:
    # The fused kernel updates every tensor in one call: per-tensor ops cost more than the update itself for small
    # GANs (on CPU; on CUDA it is one launch instead of torch's default foreach launches). Other devices: torch's pick.
    kinds = {p.device.type for p in params}
    return {"fused": True} if len(kinds) == 1 and kinds <= {"cpu", "cuda"} else {}


def _adam(params, lr: float, train: TrainConfig) -> torch.optim.Optimizer:
    params = list(params)
    return torch.optim.Adam(params, lr=lr, betas=(train.beta1, train.beta2), **_fused(params))


def _adam_apply(group: dict, lr: float, train: TrainConfig) -> None:
    group["lr"] = lr
    group["betas"] = (train.beta1, train.beta2)


def _rmsprop(params, lr: float, train: TrainConfig) -> torch.optim.Optimizer:
    params = list(params)
    # torch has no fused CPU RMSprop; foreach batches the per-tensor ops instead.
    return torch.optim.RMSprop(params, lr=lr, foreach=True)


def _lr_only(group: dict, lr: float, train: TrainConfig) -> None:
    group["lr"] = lr


OPTIMIZERS.register("adam")(OptimizerKind(build=_adam, apply=_adam_apply))
# WGAN (Arjovsky et al., 2017) uses RMSprop: momentum-based optimizers destabilised its clipped critic.
OPTIMIZERS.register("rmsprop")(OptimizerKind(build=_rmsprop, apply=_lr_only))


def apply_hparams(optimizer: torch.optim.Optimizer, kind: OptimizerKind, lr: float, train: TrainConfig) -> None:
    for group in optimizer.param_groups:
        kind.apply(group, lr, train)


def applied_hparams(opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer) -> dict[str, float]:
    """What the optimizers actually hold (after a PBT exploit: the recipient's values, not the donor's)."""
    g, d = opt_g.param_groups[0], opt_d.param_groups[0]
    applied = {"applied_lr_g": float(g["lr"]), "applied_lr_d": float(d["lr"])}
    if "betas" in g:  # Adam-family optimizers; RMSprop (WGAN) has none
        applied["applied_beta1"] = float(g["betas"][0])
    return applied
