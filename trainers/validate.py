"""Checks that a GANConfig names registered components, so typos fail at validation, not mid-search."""
from __future__ import annotations

from trainers.config import GANConfig
from trainers.families import FAMILIES
from trainers.losses import LOSSES
from trainers.penalties import PENALTIES


def check_components(cfg: GANConfig) -> None:
    """Raise UnknownComponentError (a KeyError; `.kind` is the spec path) when a family, loss or penalty is unknown."""
    FAMILIES.get(cfg.model.family)
    LOSSES.get(cfg.train.loss)
    if cfg.train.penalty:
        PENALTIES.get(cfg.train.penalty)
