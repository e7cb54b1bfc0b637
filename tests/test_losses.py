"""Losses and penalties against their definitions, computed directly."""
import math

import pytest
import torch
from torch import nn

from trainers.catalog import LOSS_INFO
from trainers.ema import GeneratorEMA
from trainers.losses import LOSSES
from trainers.penalties import PENALTIES


def test_loss_values_at_known_logits():
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([-1.0, 1.0])
    sig = torch.sigmoid
    ns = LOSSES.get("ns")
    expected_d = -(torch.log(sig(real)).mean() + torch.log(1 - sig(fake)).mean())
    assert torch.allclose(ns.d_loss(real, fake), expected_d)
    assert torch.allclose(ns.g_loss(fake), -torch.log(sig(fake)).mean())
    assert torch.allclose(LOSSES.get("minimax").g_loss(fake), torch.log(1 - sig(fake)).mean())
    assert torch.allclose(LOSSES.get("wgan").d_loss(real, fake), fake.mean() - real.mean())
    assert torch.allclose(LOSSES.get("hinge").d_loss(real, fake), (torch.relu(1 - real) + torch.relu(1 + fake)).mean())
    assert LOSS_INFO.get("wgan-gp").implied_penalty == "gp"


def test_unknown_loss_suggests_a_name():
    with pytest.raises(KeyError, match="did you mean 'hinge'"):
        LOSSES.get("hinj")


def critic():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1), nn.Flatten(0))


def test_gradient_penalty_matches_direct_autograd():
    d = critic()
    real, fake = torch.randn(8, 2), torch.randn(8, 2)
    rng = torch.Generator().manual_seed(3)
    got = PENALTIES.get("gp")(d, real, fake, rng)
    alpha = torch.rand((8, 1), generator=torch.Generator().manual_seed(3))
    x = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (g,) = torch.autograd.grad(d(x).sum(), x)
    assert torch.allclose(got, ((g.norm(dim=1) - 1) ** 2).mean(), atol=1e-6)
    one_sided = PENALTIES.get("gp-one-sided")(d, real, fake, torch.Generator().manual_seed(3))
    assert torch.allclose(one_sided, (torch.relu(g.norm(dim=1) - 1) ** 2).mean(), atol=1e-6)


def test_r1_matches_direct_autograd_and_is_differentiable():
    d = critic()
    real = torch.randn(8, 2)
    got = PENALTIES.get("r1")(d, real, real, torch.Generator())
    x = real.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(d(x).sum(), x)
    assert torch.allclose(got, 0.5 * (g.pow(2).sum(dim=1)).mean(), atol=1e-6)
    got.backward()  # create_graph=True: the penalty trains D
    assert d[0].weight.grad is not None and d[0].weight.grad.abs().sum() > 0


def test_ema_update_is_exact_and_waits_for_start():
    g = nn.Linear(3, 3)
    ema = GeneratorEMA(g, decay=0.75, start=2)
    with torch.no_grad():
        g.weight.add_(1.0)
    ema.update(g, step=1)  # before start: plain copy
    assert torch.equal(ema.model.weight, g.weight)
    old = ema.model.weight.clone()
    with torch.no_grad():
        g.weight.add_(4.0)
    ema.update(g, step=2)
    assert torch.allclose(ema.model.weight, 0.75 * old + 0.25 * g.weight)
    assert not any(p.requires_grad for p in ema.model.parameters())
    assert math.isclose(ema.decay, 0.75)
