"""What a job's null fields mean: the family's defaults first, then global ones.

`model.family: wgan` stands for the Wasserstein loss, weight clipping, RMSprop and five critic steps; a job that
sets any of those fields explicitly overrides just that field. The penalty's weight falls back to the penalty's
own default (GP lambda 10, R1 gamma 1) when neither the job nor the family gives one. Every default comes from
trainers/catalog.py, so resolving a job needs no torch.

    effective = resolve(cfg)   # a GANConfig with no null stabiliser field left
"""
from __future__ import annotations

from typing import Any

from trainers.catalog import FAMILY_INFO, LOSS_INFO, PENALTY_INFO
from trainers.config import GANConfig, ModelConfig, TrainConfig

# What a null model field means when the family has no default for it.
MODEL_FALLBACKS: dict[str, Any] = {"spectral_norm": False, "generator": None, "d_layers": None}

# What a null train field means when the family has no default for it.
TRAIN_FALLBACKS: dict[str, Any] = {
    "loss": "ns",
    "optimizer": "adam",
    "n_critic": 1,
    "penalty_every": 1,
    "weight_clip": 0.0,
    "lambda_l1": 0.0,
    "lambda_cycle": 0.0,
    "lambda_identity": 0.0,
    "pool_size": 0,
    "lr_decay_start": 1.0,
}


def resolve_model(cfg: ModelConfig) -> ModelConfig:
    """`cfg` with null fields filled from the family's `model.*` defaults, then MODEL_FALLBACKS."""
    defaults = FAMILY_INFO.get(cfg.family).defaults
    filled = {
        key: defaults.get(f"model.{key}", fallback)
        for key, fallback in MODEL_FALLBACKS.items()
        if getattr(cfg, key) is None
    }
    return cfg.model_copy(update=filled) if filled else cfg


def resolve_train(family: str, train: TrainConfig) -> TrainConfig:
    defaults = FAMILY_INFO.get(family).defaults
    filled: dict[str, Any] = {}
    for key in (*TRAIN_FALLBACKS, "penalty", "penalty_weight"):
        if getattr(train, key) is None and f"train.{key}" in defaults:
            filled[key] = defaults[f"train.{key}"]
    for key, fallback in TRAIN_FALLBACKS.items():
        if getattr(train, key) is None and key not in filled:
            filled[key] = fallback
    if train.penalty is None and "penalty" not in filled:
        filled["penalty"] = LOSS_INFO.get(filled.get("loss", train.loss)).implied_penalty or "none"
    if train.penalty_weight is None and "penalty_weight" not in filled:
        filled["penalty_weight"] = PENALTY_INFO.get(filled.get("penalty", train.penalty)).default_weight
    return train.model_copy(update=filled)


def resolve(cfg: GANConfig) -> GANConfig:
    """`cfg` with every null model/train field filled in (raises UnknownComponentError for unknown names)."""
    return cfg.model_copy(update={"model": resolve_model(cfg.model), "train": resolve_train(cfg.model.family, cfg.train)})
