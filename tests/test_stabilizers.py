"""Stabilisers against their definitions: GP and R1 vs direct autograd, the exact EMA recurrence, DiffAugment,
instance noise, label smoothing, weight and gradient clipping, TTUR/optimizers, GPU knobs on CPU, and all of them
composed from YAML."""
import pytest
import torch
import torch.nn.functional as F

from trainers.augment import AUGMENTATIONS
from trainers.config import GANConfig
from trainers.families.dcgan import DCGANDiscriminator
from trainers.losses import LOSSES
from trainers.loop import GANTrainer
from trainers.penalties import PENALTIES
from trainers.stabilizers import InstanceNoise


def digits(family="dcgan", **train):
    return GANConfig.model_validate({
        "data": {"uri": "builtin:digits", "batch_size": 16, "shuffle_buffer": 256},
        "model": {"family": family, "latent_dim": 8, "width": 8},
        "train": {"eval_samples": 200, "ema_decay": 0.0, "device": "cpu", **train},
    })


def ring(**train):
    return GANConfig.model_validate({
        "data": {"uri": "builtin:ring8", "batch_size": 32, "shuffle_buffer": 256},
        "model": {"family": "gan", "latent_dim": 2, "width": 16, "depth": 2},
        "train": {"eval_samples": 200, "ema_decay": 0.0, "device": "cpu", **train},
    })


def image_critic():
    torch.manual_seed(0)
    return DCGANDiscriminator(channels=2, image_size=8, width=4, spectral_norm=False)


def test_gradient_penalties_match_direct_autograd_on_packed_images():
    d = image_critic()
    real, fake = torch.randn(6, 2, 8, 8), torch.randn(6, 2, 8, 8)  # 2 channels: PacGAN pairs of 1-channel images
    alpha = torch.rand((6, 1, 1, 1), generator=torch.Generator().manual_seed(4))
    x = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (g,) = torch.autograd.grad(d(x).sum(), x)
    norms = g.flatten(1).norm(dim=1)  # per sample, over every pixel of the pack
    for name, expected in (("gp", ((norms - 1) ** 2).mean()), ("gp-one-sided", (F.relu(norms - 1) ** 2).mean())):
        got = PENALTIES.get(name)(d, real, fake, torch.Generator().manual_seed(4))
        assert torch.allclose(got, expected, atol=1e-6), name

    r = real.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(d(r).sum(), r)
    r1 = PENALTIES.get("r1")(d, real, fake, torch.Generator())
    assert torch.allclose(r1, 0.5 * g.pow(2).flatten(1).sum(1).mean(), atol=1e-6)
    r1.backward()  # the penalty is differentiable w.r.t. D's weights (it regularises D)
    # (the output bias does not move the input gradient, so it alone gets none)
    assert all(p.grad is not None for name, p in d.named_parameters() if name != "head.bias")
    assert PENALTIES.get("none").active is False


def test_ema_inside_training_follows_the_exact_recurrence(cache):
    trainer = GANTrainer(ring(ema_decay=0.8, ema_start=3), cache_dir=cache)
    ema = [p.detach().clone() for p in trainer.ema.model.parameters()]
    for step in range(1, 7):
        trainer.train_steps(1)
        decay = 0.8 if step >= 3 else 0.0  # before ema_start the average is a plain copy
        ema = [decay * e + (1 - decay) * p.detach() for e, p in zip(ema, trainer.G.parameters())]
        for got, want in zip(trainer.ema.model.parameters(), ema):
            assert torch.allclose(got, want, atol=1e-6, rtol=0)
    trainer.close()


def test_ema_copies_generator_buffers(cache):
    trainer = GANTrainer(digits(ema_decay=0.99), cache_dir=cache)
    trainer.train_steps(2)
    for got, want in zip(trainer.ema.model.buffers(), trainer.G.buffers()):  # BatchNorm running statistics
        assert torch.equal(got, want)
    trainer.close()


@pytest.mark.parametrize("name", ["translation", "color", "cutout"])
def test_diffaugment_policies_are_seeded_shape_preserving_and_differentiable(name):
    policy = AUGMENTATIONS.get(name)
    x = torch.rand(4, 1, 8, 8, requires_grad=True)
    a = policy(x, torch.Generator().manual_seed(0))
    b = policy(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # G learns through the augmentation


def test_translation_moves_content_and_cutout_erases_a_square():
    x = torch.zeros(64, 1, 8, 8)
    x[:, :, 3, 3] = 1.0
    moved = AUGMENTATIONS.get("translation")(x, torch.Generator().manual_seed(0))
    assert (moved[:, 0, 3, 3] == 0).any()  # some impulses left (3, 3)
    assert torch.equal(moved.flatten(1).sum(1), torch.ones(64))  # a shift of at most 1 px keeps the pixel inside
    ones = torch.ones(16, 1, 8, 8)
    cut = AUGMENTATIONS.get("cutout")(ones, torch.Generator().manual_seed(0))
    zeros = (cut == 0).flatten(1).sum(1)
    assert (zeros >= 4).all() and (zeros <= 16).all()  # a 4x4 square, clipped at the borders


def test_augmentation_needs_image_data(cache):
    with pytest.raises(ValueError, match="train.augment .* needs image data"):
        GANTrainer(ring(augment=["translation"]), cache_dir=cache)


def test_instance_noise_has_its_std_and_anneals():
    noise = InstanceNoise(0.5, anneal_steps=100)
    assert noise.std_at(0) == 0.5 and noise.std_at(50) == 0.25 and noise.std_at(100) == 0.0
    x = torch.zeros(20000, 2)
    assert abs(noise.d_input(x, 0, torch.Generator().manual_seed(0)).std().item() - 0.5) < 0.01
    assert torch.equal(noise.d_input(x, 150, torch.Generator()), x)


def test_label_smoothing_softens_only_the_real_target(cache):
    real, fake = torch.tensor([2.0, -0.5]), torch.tensor([0.3, -1.0])
    sig = torch.sigmoid
    expected = -(0.9 * torch.log(sig(real)) + 0.1 * torch.log(1 - sig(real))).mean() - torch.log(1 - sig(fake)).mean()
    assert torch.allclose(LOSSES.get("ns").d_loss(real, fake, 0.9), expected)
    assert torch.allclose(LOSSES.get("lsgan").d_loss(real, fake, 0.9), 0.5 * ((real - 0.9) ** 2).mean() + 0.5 * (fake**2).mean())
    with pytest.raises(ValueError, match="label_smoothing=0.1 needs a loss with a real-label target"):
        GANTrainer(ring(loss="wgan", label_smoothing=0.1), cache_dir=cache)


def test_gradient_norm_clipping_bounds_the_applied_gradients(cache):
    trainer = GANTrainer(ring(max_grad_norm=1e-3), cache_dir=cache)
    stats = trainer.train_steps(10)
    assert stats["grad_norm_d"] > 1e-3 and stats["grad_norm_g"] > 1e-3  # reported before clipping
    for net in (trainer.D, trainer.G):
        norm = torch.nn.utils.get_total_norm([p.grad for p in net.parameters() if p.grad is not None])
        assert norm <= 1e-3 * 1.001
    trainer.close()


def test_ttur_optimizers_and_hparams_after_restore(cache, tmp_path):
    wgan = GANTrainer(digits("wgan", lr_g=1e-4, lr_d=4e-4), cache_dir=cache)
    assert isinstance(wgan.opt_g, torch.optim.RMSprop)
    assert wgan.opt_g.param_groups[0]["lr"] == 1e-4 and wgan.opt_d.param_groups[0]["lr"] == 4e-4
    wgan.train_steps(2)
    wgan.save_checkpoint(tmp_path / "c", export=False)
    other = GANTrainer(digits("wgan", lr_g=3e-5, lr_d=6e-5), cache_dir=cache)
    other.load_checkpoint(tmp_path / "c")
    assert other.opt_g.param_groups[0]["lr"] == 3e-5 and other.opt_d.param_groups[0]["lr"] == 6e-5
    wgan.close()
    other.close()


def test_bf16_and_channels_last_are_no_ops_on_cpu(cache):
    def trained(**knobs):
        t = GANTrainer(digits(**knobs), cache_dir=cache)
        t.train_steps(5)
        w = {k: v.clone() for k, v in t.G.state_dict().items()}
        t.close()
        return w

    plain, fast = trained(), trained(precision="bf16", channels_last=True)
    assert all(torch.equal(plain[k], fast[k]) for k in plain)


def test_every_stabiliser_composes_from_yaml_and_is_searchable(cache):
    from orchestrator.spec import load_job_text

    job = load_job_text("""
name: stable-digits
data: {uri: "builtin:digits", batch_size: 16}
model: {family: dcgan, latent_dim: 8, width: 8, spectral_norm: true, pack: 2}
train:
  steps: 30
  lr_g: 1.0e-4
  lr_d: 4.0e-4
  penalty: r1
  penalty_weight: 0.5
  penalty_every: 4
  label_smoothing: 0.1
  instance_noise: 0.1
  instance_noise_steps: 20
  augment: [translation, color, cutout]
  ema_decay: 0.9
  ema_start: 5
  max_grad_norm: 10.0
  precision: bf16
  channels_last: true
  eval_samples: 200
  device: cpu
search:
  space:
    train.augment: {choice: [[], [translation, cutout]]}
    train.instance_noise: {uniform: [0.0, 0.2]}
    train.penalty,train.penalty_weight: {choice: [[r1, 1.0], [gp, 1.0], [none, 0.0]]}
    model.family: {choice: [dcgan, sngan, lsgan]}
""")
    cfg = job.spec.gan_config()
    runs = []
    for _ in range(2):
        t = GANTrainer(cfg, cache_dir=cache)
        stats = t.train_steps(10)
        runs.append({k: v.clone() for k, v in t.G.state_dict().items()})
        assert "penalty" in stats and stats["loss_d"] == stats["loss_d"]
        t.close()
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])  # augment + noise draw from the seeded stream

    from orchestrator.errors import SpecError

    with pytest.raises(SpecError, match="unknown train.augment 'cutuot'; did you mean 'cutout'"):
        load_job_text("model: {family: dcgan}\ntrain: {augment: [cutuot]}\n")
