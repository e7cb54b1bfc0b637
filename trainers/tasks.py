"""Which trainer runs a family's trials, by the family's task (trainers/catalog.py `FamilyInfo.task`).

Every trainer offers the methods a trial drives: `train_steps(n)`, `evaluate()`, `save_checkpoint(dir)`,
`load_checkpoint(dir)`, `apply_hparams(train)`, `best_samples(n, seed)`, `close()`, plus `step`, `G`, `opt_g`,
`opt_d` and `info`. Trainers are imported when asked for, so naming one loads only its own modules.
"""
from __future__ import annotations

import importlib
from typing import Any

from trainers.catalog import FAMILY_INFO
from trainers.registry import Registry

TRAINERS: Registry[str] = Registry("trainer for task")  # task -> "module:Class"
TRAINERS.register("generation")("trainers.loop:GANTrainer")
TRAINERS.register("translation")("trainers.translation.trainer:TranslationTrainer")


def trainer_class(family: str) -> Any:
    """The trainer class for `model.family` (raises UnknownComponentError for an unknown family)."""
    module, name = TRAINERS.get(FAMILY_INFO.get(family).task).split(":")
    return getattr(importlib.import_module(module), name)
