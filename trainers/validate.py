"""Checks that a GANConfig names declared components, so typos fail at validation, not mid-search.

It reads trainers/catalog.py and trainers/metrics/declared.py only (no torch), so `ganforge validate` stays fast.
"""
from __future__ import annotations

from trainers.catalog import AUGMENT_NAMES, FAMILY_INFO, LOSS_INFO, OPTIMIZER_NAMES, PENALTY_INFO, PRECISION_NAMES
from trainers.config import GANConfig
from trainers.metrics.declared import FEATURE_SPACES
from trainers.settings import resolve


def check_components(cfg: GANConfig) -> None:
    """Raise UnknownComponentError (a KeyError; `.kind` is the spec path, e.g. "model.family") when the family,
    loss, penalty, optimizer, precision, an augmentation or the metrics' feature space is unknown, whether set in the
    job or by the family."""
    FAMILY_INFO.get(cfg.model.family)
    FEATURE_SPACES.get(cfg.metrics.features)
    for name in cfg.train.augment:
        AUGMENT_NAMES.get(name)
    effective = resolve(cfg).train
    LOSS_INFO.get(effective.loss)
    PENALTY_INFO.get(effective.penalty)
    OPTIMIZER_NAMES.get(effective.optimizer)
    PRECISION_NAMES.get(effective.precision)
