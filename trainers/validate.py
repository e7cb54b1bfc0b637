"""Checks that a GANConfig names registered components, so typos fail at validation, not mid-search."""
from __future__ import annotations

from trainers.accel import PRECISIONS
from trainers.augment import AUGMENTATIONS
from trainers.config import GANConfig
from trainers.families import FAMILIES
from trainers.losses import LOSSES
from trainers.optim import OPTIMIZERS
from trainers.penalties import PENALTIES
from trainers.settings import resolve


def check_components(cfg: GANConfig) -> None:
    """Raise UnknownComponentError (a KeyError; `.kind` is the spec path, e.g. "model.family") when the family,
    loss, penalty, optimizer, precision or an augmentation is unknown, whether set in the job or by the family."""
    FAMILIES.get(cfg.model.family)
    for name in cfg.train.augment:
        AUGMENTATIONS.get(name)
    effective = resolve(cfg).train
    LOSSES.get(effective.loss)
    PENALTIES.get(effective.penalty)
    OPTIMIZERS.get(effective.optimizer)
    PRECISIONS.get(effective.precision)
