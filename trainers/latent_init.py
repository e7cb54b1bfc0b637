"""How a categorical latent's categories start (`train.latent_init`), before the adversarial game moves them.

`random`: where G's weight initialisation puts them, all close together. The game then moves them as a group; on
grid-25 it leaves groups of categories piled on the same modes, and nothing in the GAN objective pulls them apart
again (docs/results.md: 2 of 10 seeds lose 6 and 10 modes).

`data`: before the first training step, G is regressed for ANCHOR_STEPS steps so that each category lands on one real
sample drawn at random (its anchor; the continuous rest of z still varies the output). The categories then start
spread over the data in proportion to its density, as k-means++ seeds its centres from data points: with 200
categories on 25 equally likely modes every mode starts with about 8 (none with probability (24/25)^200 < 0.001),
and the game only has to refine where and how wide each category draws. `data-centres` does the same for each
category's centre only (the continuous rest of z at 0), leaving G's response to the rest as initialised. A warm
start, not extra training: the regression does not count as generator steps, and the optimizers and the EMA start
after it.
"""
from __future__ import annotations

from typing import Callable, Protocol

import torch
from torch import Tensor

from trainers.registry import Registry

ANCHOR_STEPS = 500
ANCHOR_LR = 1e-3  # a fixed Adam of its own: a regression to fixed targets, whatever the GAN's learning rates are
ANCHOR_BATCH = 256


class AnchorSource(Protocol):
    """What a latent initialiser needs from the trainer."""

    def real_samples(self, n: int) -> Tensor: ...
    def latents(self, n: int) -> Tensor: ...


LatentInit = Callable[[torch.nn.Module, Callable[[Tensor], Tensor], AnchorSource], dict[str, float]]
LATENT_INITS: Registry[LatentInit] = Registry("train.latent_init")


@LATENT_INITS.register("random")
def keep_random(generator: torch.nn.Module, forward: Callable[[Tensor], Tensor], source: AnchorSource) -> dict[str, float]:
    return {}


@LATENT_INITS.register("data")
def anchor_categories(generator: torch.nn.Module, forward: Callable[[Tensor], Tensor], source: AnchorSource) -> dict[str, float]:
    """Regress every output of each category onto its own real sample: categories start as points on the data."""
    return _anchor(generator, forward, source, centres_only=False)


@LATENT_INITS.register("data-centres")
def anchor_category_centres(generator: torch.nn.Module, forward: Callable[[Tensor], Tensor], source: AnchorSource) -> dict[str, float]:
    """Regress only each category's centre (the rest of z at 0) onto its real sample: the categories start on the
    data while G keeps its own response to the continuous part, so the game does not first have to undo a regression
    that taught G to ignore it (grid-25, 10 seeds: HQ 96.1 % against `data`'s 94.5 %, docs/results.md)."""
    return _anchor(generator, forward, source, centres_only=True)


def _anchor(generator: torch.nn.Module, forward: Callable[[Tensor], Tensor], source: AnchorSource, *, centres_only: bool) -> dict[str, float]:
    categorical = getattr(generator, "categorical", None)
    if categorical is None:
        raise ValueError("train.latent_init: anchoring needs a categorical latent (model.latent_categories > 0 on an MLP generator)")
    anchors = source.real_samples(categorical.categories).flatten(1)
    optimizer = torch.optim.Adam(generator.parameters(), lr=ANCHOR_LR)
    loss = torch.zeros(())
    for _ in range(ANCHOR_STEPS):
        z = source.latents(ANCHOR_BATCH)
        if centres_only:
            z[:, 1:] = 0  # z0 still picks the category
        loss = (forward(z).flatten(1) - anchors[categorical.category(z)]).pow(2).sum(1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return {"anchor_mse": float(loss.detach())}
