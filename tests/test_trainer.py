"""The training loop without Ray: determinism, exact resume, hyperparameter re-application, divergence, learning."""
import math

import pytest
import torch

from trainers.config import GANConfig
from trainers.loop import GANTrainer, TrainingDiverged, train


def ring_cfg(**train):
    return GANConfig.model_validate({
        "data": {"uri": "builtin:ring8", "batch_size": 64, "shuffle_buffer": 256},
        "model": {"family": "gan", "latent_dim": 2, "width": 32, "depth": 2},
        "train": {"steps": 60, "eval_every": 30, "eval_samples": 500, "ema_decay": 0.9, "n_critic": 2, **train},
    })


def digits_cfg(**train):
    return GANConfig.model_validate({
        "data": {"uri": "builtin:digits", "batch_size": 32},
        "model": {"family": "dcgan", "latent_dim": 16, "width": 8},
        "train": {"steps": 20, "eval_every": 10, "eval_samples": 200, "ema_decay": 0.9, **train},
    })


def weights(trainer: GANTrainer) -> dict[str, torch.Tensor]:
    out = {f"G.{k}": v.clone() for k, v in trainer.G.state_dict().items()}
    out.update({f"D.{k}": v.clone() for k, v in trainer.D.state_dict().items()})
    out.update({f"E.{k}": v.clone() for k, v in trainer.ema.model.state_dict().items()})
    return out


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


@pytest.mark.parametrize("make_cfg", [ring_cfg, digits_cfg], ids=["gan", "dcgan"])
def test_same_seed_same_weights(tmp_path, make_cfg):
    runs = []
    for _ in range(2):
        t = GANTrainer(make_cfg(), cache_dir=tmp_path)
        t.train_steps(15)
        runs.append(weights(t))
        t.close()
    assert_same(*runs)
    other = GANTrainer(make_cfg(seed=1), cache_dir=tmp_path)
    other.train_steps(15)
    assert not torch.equal(weights(other)["G.net.0.weight" if "G.net.0.weight" in runs[0] else "G.project.0.weight"],
                           runs[0]["G.net.0.weight" if "G.net.0.weight" in runs[0] else "G.project.0.weight"])


@pytest.mark.parametrize("loss", ["ns", "wgan-gp"])
def test_restore_and_continue_equals_uninterrupted(tmp_path, loss):
    cfg = ring_cfg(loss=loss)
    straight = GANTrainer(cfg, cache_dir=tmp_path)
    straight.train_steps(40)
    expected = weights(straight)

    first = GANTrainer(cfg, cache_dir=tmp_path)
    first.train_steps(17)
    first.save_checkpoint(tmp_path / "ckpt", export=False)
    first.close()
    resumed = GANTrainer(cfg, cache_dir=tmp_path)
    resumed.load_checkpoint(tmp_path / "ckpt")
    assert resumed.step == 17
    resumed.train_steps(23)
    assert_same(weights(resumed), expected)


def test_restore_reapplies_the_trials_own_hyperparameters(tmp_path):
    donor = GANTrainer(ring_cfg(lr_g=1e-3, lr_d=1e-3, beta1=0.5), cache_dir=tmp_path)
    donor.train_steps(5)
    donor.save_checkpoint(tmp_path / "donor", export=False)
    recipient = GANTrainer(ring_cfg(lr_g=3e-4, lr_d=7e-4, beta1=0.0), cache_dir=tmp_path)
    recipient.load_checkpoint(tmp_path / "donor")
    assert_same({k: v for k, v in weights(recipient).items() if k.startswith("G.")},
                {k: v for k, v in weights(donor).items() if k.startswith("G.")})
    assert [g["lr"] for g in recipient.opt_g.param_groups] == [3e-4]
    assert [g["lr"] for g in recipient.opt_d.param_groups] == [7e-4]
    assert recipient.opt_g.param_groups[0]["betas"][0] == 0.0


def test_resume_refuses_another_architecture(tmp_path):
    t = GANTrainer(ring_cfg(), cache_dir=tmp_path)
    t.save_checkpoint(tmp_path / "c", export=False)
    other = GANTrainer(GANConfig.model_validate({**ring_cfg().model_dump(), "model": {"family": "gan", "width": 16}}),
                       cache_dir=tmp_path)
    with pytest.raises(ValueError, match="refusing to resume across architectures"):
        other.load_checkpoint(tmp_path / "c")


def test_nan_ends_training_as_diverged(tmp_path):
    t = GANTrainer(ring_cfg(), cache_dir=tmp_path)
    with torch.no_grad():
        for p in t.D.parameters():
            p.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="loss_d is nan"):
        t.train_steps(20)


def test_exploding_loss_ends_training_as_diverged(tmp_path):
    # An absurd learning rate with the unbounded Wasserstein loss and no penalty blows the critic up.
    t = GANTrainer(ring_cfg(loss="wgan", lr_d=50.0, lr_g=50.0, divergence_loss=100.0), cache_dir=tmp_path)
    with pytest.raises(TrainingDiverged):
        t.train_steps(200)


def test_ema_and_checkpoint_export(tmp_path):
    t = GANTrainer(ring_cfg(), cache_dir=tmp_path)
    t.train_steps(3)
    before = {k: v.clone() for k, v in t.ema.model.state_dict().items()}
    t.train_steps(1)
    for (k, e0), p in zip(before.items(), t.G.parameters()):
        expected = 0.9 * e0 + 0.1 * p.detach()
        assert torch.allclose(t.ema.model.state_dict()[k], expected, atol=1e-7)
    out = t.save_checkpoint(tmp_path / "export")
    assert {"state.pt", "generator.safetensors", "generator.json", "grid.png"} <= {p.name for p in out.iterdir()}


def test_training_measurably_improves_ring(tmp_path):
    cfg = ring_cfg(steps=1000, eval_every=1000, eval_samples=2500, lr_g=2e-3, lr_d=2e-3, ema_decay=0.0, n_critic=1)
    cfg = GANConfig.model_validate({**cfg.model_dump(), "data": {"uri": "builtin:ring8", "batch_size": 128},
                                    "model": {"family": "gan", "latent_dim": 2, "width": 128, "depth": 2}})
    untrained = GANTrainer(cfg, cache_dir=tmp_path).evaluate()
    trained = train(cfg, cache_dir=tmp_path)
    assert untrained["modes"] <= 2 and untrained["hq"] < 1
    assert trained["modes"] >= 6 and trained["hq"] > 5
    assert trained["reverse_kl"] < untrained["reverse_kl"] - 0.5
    assert math.isfinite(trained["loss_d"]) and math.isfinite(trained["loss_g"])
