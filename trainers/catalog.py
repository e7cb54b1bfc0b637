"""Every component name a job may use, with the facts validation needs, and no torch in sight.

The one list of names: the torch modules register their implementations against it (a `Registry` built with
`declared=` refuses a name this file does not list) and tests/test_spec.py checks that each name listed here is
implemented. `ganforge validate` reads only this module, so it answers without loading torch. A new family is its
module under trainers/families/ plus one `FAMILY_INFO` entry here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from trainers.registry import Registry


@dataclass(frozen=True)
class FamilyInfo:
    data_kinds: frozenset[str]  # which data sets it trains on: "image", "points"
    # Values for spec fields the job leaves null, by dotted path: {"train.loss": "wgan", "model.spectral_norm": True}.
    defaults: Mapping[str, Any] = field(default_factory=dict)
    # What its trials do, and so which trainer runs them (trainers/tasks.py): "generation" (G(z) -> D) or
    # "translation" (G(x_A) -> x_B; pix2pix, CycleGAN).
    task: str = "generation"


@dataclass(frozen=True)
class LossInfo:
    implied_penalty: Optional[str] = None  # the penalty a null `train.penalty` means with this loss


@dataclass(frozen=True)
class PenaltyInfo:
    default_weight: float  # what a null `train.penalty_weight` means with this penalty


BOTH = frozenset({"image", "points"})
FAMILY_INFO: Registry[FamilyInfo] = Registry("model.family")
for _name, _info in {
    "gan": FamilyInfo(BOTH, {"train.loss": "ns"}),
    "dcgan": FamilyInfo(frozenset({"image"}), {"train.loss": "ns"}),
    "cgan": FamilyInfo(BOTH, {"train.loss": "hinge"}),
    "lsgan": FamilyInfo(BOTH, {"train.loss": "lsgan"}),
    "sngan": FamilyInfo(BOTH, {"train.loss": "hinge", "model.spectral_norm": True}),
    "stylegan": FamilyInfo(frozenset({"image"}), {"train.loss": "ns", "train.penalty": "r1",
                                                  "train.penalty_weight": 0.1, "train.penalty_every": 4}),
    "wgan": FamilyInfo(BOTH, {"train.loss": "wgan", "train.optimizer": "rmsprop", "train.weight_clip": 0.01,
                              "train.n_critic": 5}),
    "wgan-gp": FamilyInfo(BOTH, {"train.loss": "wgan-gp", "train.penalty": "gp", "train.n_critic": 5}),
    # Image-to-image translation (trainers/translation/), with the reference implementation's defaults
    # (junyanz/pytorch-CycleGAN-and-pix2pix): lr 2e-4, beta1 0.5, constant lr for half the steps then linear decay.
    "pix2pix": FamilyInfo(frozenset({"paired"}), {"train.loss": "ns", "train.lambda_l1": 100.0,
                                                  "train.lr_decay_start": 0.5, "model.generator": "unet"},
                          task="translation"),
    "cyclegan": FamilyInfo(frozenset({"paired", "unpaired"}), {
        "train.loss": "lsgan", "train.lambda_cycle": 10.0, "train.lambda_identity": 0.5, "train.pool_size": 50,
        "train.lr_decay_start": 0.5, "model.generator": "resnet"}, task="translation"),
}.items():
    FAMILY_INFO.register(_name)(_info)

LOSS_INFO: Registry[LossInfo] = Registry("train.loss")
for _name in ("minimax", "ns", "wgan", "hinge", "lsgan"):
    LOSS_INFO.register(_name)(LossInfo())
LOSS_INFO.register("wgan-gp")(LossInfo(implied_penalty="gp"))

PENALTY_INFO: Registry[PenaltyInfo] = Registry("train.penalty")
for _name, _weight in {"none": 0.0, "gp": 10.0, "gp-one-sided": 10.0, "r1": 1.0}.items():
    PENALTY_INFO.register(_name)(PenaltyInfo(default_weight=_weight))

OPTIMIZER_NAMES: Registry[None] = Registry("train.optimizer")
PRECISION_NAMES: Registry[None] = Registry("train.precision")
AUGMENT_NAMES: Registry[None] = Registry("train.augment")
for _registry, _names in ((OPTIMIZER_NAMES, ("adam", "rmsprop")), (PRECISION_NAMES, ("fp32", "bf16")),
                          (AUGMENT_NAMES, ("color", "translation", "cutout"))):
    for _name in _names:
        _registry.register(_name)(None)

# Metric suites and feature spaces are declared in trainers/metrics/declared.py (also torch-free).

# The kind of each built-in data set, known without materialising it.
BUILTIN_KINDS: dict[str, str] = {"builtin:digits": "image", "builtin:ring8": "points", "builtin:grid25": "points",
                                 "builtin:digits-edges": "paired", "builtin:digits-inverted": "unpaired"}
