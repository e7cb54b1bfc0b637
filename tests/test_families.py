"""Every GAN family trains on tiny data and beats its initial score; family defaults, exports, StyleGAN's parts,
the projection discriminator, determinism and DDP with two gloo ranks."""
import math
import os

import pytest
import torch
import torch.multiprocessing as mp

from orchestrator.stack import free_port
from trainers.config import GANConfig
from trainers.export import generate, load_generator_dir, save_generator
from trainers.catalog import FAMILY_INFO
from trainers.families import FAMILIES
from trainers.families.cgan import ProjectionDiscriminator
from trainers.families.layers import CategoricalLatent
from trainers.families.stylegan import ModulatedConv, StyleGANGenerator
from trainers.loop import GANTrainer
from trainers.registry import UnknownComponentError
from trainers.settings import resolve
from trainers.validate import check_components


def digits(family, steps=200, **train):
    return GANConfig.model_validate({
        "data": {"uri": "builtin:digits", "batch_size": 32, "shuffle_buffer": 512},
        "model": {"family": family, "latent_dim": 16, "width": 16, "depth": 2},
        "train": {"steps": steps, "lr_g": 1e-3, "lr_d": 1e-3, "eval_samples": 500, "ema_decay": 0.0, "device": "cpu", **train},
    })


def ring(family="gan", pack=1, **train):
    return GANConfig.model_validate({
        "data": {"uri": "builtin:ring8", "batch_size": 128, "shuffle_buffer": 1024},
        "model": {"family": family, "latent_dim": 2, "width": 128, "depth": 2, "pack": pack},
        "train": {"lr_g": 2e-3, "lr_d": 2e-3, "eval_samples": 1000, "ema_decay": 0.0, "device": "cpu", **train},
    })


def with_model(cfg: GANConfig, **model) -> GANConfig:
    """`cfg` with some model fields changed, validated like a job's."""
    return GANConfig.model_validate({**cfg.model_dump(), "model": {**cfg.model.model_dump(), **model}})


# Families that sample G(z); the translation families have their own tests (tests/test_translation.py).
GENERATION_FAMILIES = [f for f in FAMILIES.names() if FAMILY_INFO.get(f).task == "generation"]

# Critic-heavy families (five critic steps per generator step) get fewer generator steps.
STEPS = {"wgan": 100, "wgan-gp": 100}


def test_every_registered_family_is_covered():
    assert set(GENERATION_FAMILIES) == {"gan", "dcgan", "wgan", "wgan-gp", "cgan", "stylegan", "sngan", "lsgan"}
    assert set(FAMILIES.names()) - set(GENERATION_FAMILIES) == {"pix2pix", "cyclegan"}  # tests/test_translation.py


@pytest.mark.parametrize("family", GENERATION_FAMILIES)
def test_family_trains_on_digits_and_beats_its_initial_fid(cache, tmp_path, family):
    trainer = GANTrainer(digits(family), cache_dir=cache)
    before = trainer.evaluate()
    trainer.train_steps(STEPS.get(family, 200))
    after = trainer.evaluate()
    assert trainer.metric == "fd_own"
    assert after["fd_own"] < 0.6 * before["fd_own"], (before["fd_own"], after["fd_own"])
    assert math.isfinite(after["kd_own"]) and "fd_own_floor" in after and after["fd_own"] > after["fd_own_floor"]

    # The exported generator rebuilds from JSON alone and samples exactly what the trained one does.
    save_generator(trainer.G, trainer.arch, trainer.info, tmp_path)
    loaded = load_generator_dir(tmp_path)
    trainer.G.eval()
    z = torch.randn(6, loaded.latent_dim, generator=torch.Generator().manual_seed(1))
    y = torch.arange(6) % 10 if loaded.num_classes else None
    with torch.no_grad():
        assert torch.allclose(loaded(z, y), trainer.G(z, y), atol=1e-6)
    assert generate(loaded, 12, seed=3).shape == (12, 1, 8, 8)
    assert torch.equal(generate(loaded, 12, seed=3), generate(loaded, 12, seed=3))
    trainer.close()


@pytest.mark.parametrize("loss,pack", [("minimax", 1), ("ns", 2)], ids=["minimax", "pacgan2"])
def test_mlp_gan_on_ring8_beats_its_initial_reverse_kl(cache, loss, pack):
    trainer = GANTrainer(ring(loss=loss, pack=pack), cache_dir=cache)
    before = trainer.evaluate()
    trainer.train_steps(600)
    after = trainer.evaluate()
    assert before["modes"] <= 1 and after["modes"] >= 3
    assert after["reverse_kl"] < before["reverse_kl"] - 0.5
    trainer.close()


def test_maxout_discriminator_units_are_the_max_of_their_linear_pieces():
    from trainers.families.gan import MLPDiscriminator
    from trainers.families.layers import Maxout

    d = MLPDiscriminator(4, 8, 2, spectral_norm=False, maxout=5)
    first = d.body[1]
    assert isinstance(first, Maxout) and not any(isinstance(m, torch.nn.LeakyReLU) for m in d.body)
    x = torch.randn(6, 4)
    pieces = (x @ first.linear.weight.T + first.linear.bias).view(6, 8, 5)
    assert torch.equal(first(x), pieces.max(dim=-1).values)
    assert d(x).shape == (6,)


@pytest.mark.parametrize("family", ["gan", "dcgan", "stylegan"])
def test_d_width_sizes_only_the_discriminator(cache, family):
    base = ring() if family == "gan" else digits(family)
    same, wider = (GANTrainer(cfg, cache_dir=cache) for cfg in (base, with_model(base, d_width=2 * base.model.width)))
    for trainer in (same, wider):
        trainer.close()

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    assert count(wider.G) == count(same.G)
    assert count(wider.D) > count(same.D)


def test_a_one_piece_maxout_is_refused_naming_the_field():
    with pytest.raises(ValueError) as err:
        GANConfig.model_validate({"model": {"family": "gan", "d_maxout": 1}})
    assert "d_maxout" in str(err.value) and "at least 2 pieces" in str(err.value)


def test_maxout_gan_on_ring8_beats_its_initial_reverse_kl(cache):
    trainer = GANTrainer(with_model(ring(pack=2, lr_g=1e-3, lr_d=1e-3), d_maxout=5, width=64), cache_dir=cache)
    before = trainer.evaluate()
    trainer.train_steps(600)
    after = trainer.evaluate()
    assert before["modes"] <= 1 and after["modes"] >= 5, (before, after)
    assert after["reverse_kl"] < before["reverse_kl"] - 1.0
    trainer.close()


def test_categorical_latent_draws_equally_likely_categories_from_z0():
    layer = CategoricalLatent(latent_dim=3, categories=10)
    z = torch.randn(200_000, 3, generator=torch.Generator().manual_seed(0))
    share = torch.bincount(layer.category(z), minlength=10).double() / len(z)
    assert torch.allclose(share, torch.full((10,), 0.1, dtype=torch.float64), atol=0.004)
    out = layer(z[:4])
    assert out.shape == (4, layer.out_features) == (4, 2 + 10)
    assert torch.equal(out[:, :2], CategoricalLatent.NOISE_SCALE * z[:4, 1:])  # z0 is spent on the category
    assert torch.equal(out[:, 2:].sum(1), torch.ones(4)) and torch.equal(out[:, 2:].argmax(1), layer.category(z[:4]))


def test_categorical_latent_gan_learns_ring8_and_round_trips(cache, tmp_path):
    """G's output depends on z0 only through its category; the export rebuilds the same generator from JSON."""
    trainer = GANTrainer(with_model(ring(lr_g=1e-3, lr_d=1e-3), latent_categories=16), cache_dir=cache)
    before = trainer.evaluate()
    trainer.train_steps(1200)
    after = trainer.evaluate()
    assert before["modes"] <= 2 and after["modes"] >= 6, (before, after)
    assert after["reverse_kl"] < before["reverse_kl"] - 1.0

    g = trainer.G.eval()
    z = torch.zeros(2, 2)
    z[:, 0] = torch.tensor([0.01, 0.05])  # Phi: 0.504 and 0.520, one category of 16 (0.5 to 0.5625)
    with torch.no_grad():
        assert torch.equal(g(z)[0], g(z)[1])
    save_generator(g, trainer.arch, trainer.info, tmp_path)
    loaded = load_generator_dir(tmp_path)
    assert torch.equal(generate(loaded, 50, seed=2), generate(g, 50, seed=2))
    trainer.close()


def category_centres(generator, k: int) -> torch.Tensor:
    """G's output for each of its k categories with the continuous rest of z at 0 (z0 at the category's middle quantile)."""
    u = (torch.arange(k, dtype=torch.float64) + 0.5) / k
    z = torch.zeros(k, generator.latent_dim)
    z[:, 0] = (2**0.5 * torch.erfinv(2 * u - 1)).float()
    with torch.no_grad():
        return generator(z)


def initialised_ring_trainer(init: str, cache, ema_decay: float = 0.0) -> GANTrainer:
    """A ring-8 GAN with 16 latent categories, `train.latent_init: init` applied (train_steps(0): no step taken).
    The first train_steps reports what the initialisation left (the anchors' mean squared error), later ones do not."""
    base = ring(ema_decay=ema_decay)
    cfg = GANConfig.model_validate({**base.model_dump(), "model": {**base.model.model_dump(), "latent_categories": 16},
                                    "train": {**base.train.model_dump(), "latent_init": init}})
    trainer = GANTrainer(cfg, cache_dir=cache)
    first = trainer.train_steps(0)
    assert ("anchor_mse" in first) == (init != "random") and "anchor_mse" not in trainer.train_steps(0)
    return trainer


def on_the_modes(trainer: GANTrainer, centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each centre's distance to its nearest ring mean in sigmas, and which mean that is."""
    mixture = trainer.info.extra["mixture"]
    distance, mode = torch.cdist(centres.double(), torch.tensor(mixture["means"], dtype=torch.float64)).min(dim=1)
    return distance / mixture["sigma"], mode


def test_latent_init_data_starts_every_category_on_a_real_sample(cache):
    """train.latent_init: data regresses each category onto a real sample before step 0: the categories start on
    the ring's modes and spread over them, where G's weight init leaves them bunched between two; the EMA starts
    from the anchored G, no training step is counted, and a restored trainer is not anchored again."""
    centres, placement = {}, {}
    for init in ("random", "data"):
        trainer = initialised_ring_trainer(init, cache, ema_decay=0.99)
        centres[init] = category_centres(trainer.G, 16)
        placement[init] = on_the_modes(trainer, centres[init])
        assert trainer.step == 0
        assert all(torch.equal(a, b) for a, b in zip(trainer.ema.model.parameters(), trainer.G.parameters()))
        if init == "data":
            assert trainer.latent_init_metrics["anchor_mse"] < 1e-3
            state = trainer.state_dict()
            restored = GANTrainer(trainer.cfg, cache_dir=cache)
            restored.load_state_dict(state)
            restored.train_steps(0)
            assert restored.latent_init_metrics == {} and torch.equal(category_centres(restored.G, 16), centres["data"])
            restored.close()
        trainer.close()
    sigmas, mode = placement["data"]
    assert sigmas.max() < 5 and mode.unique().numel() >= 6  # on the modes, most of them
    sigmas, mode = placement["random"]
    assert sigmas.min() > 5 and mode.unique().numel() <= 2
    assert (centres["data"].std(0) > 10 * centres["random"].std(0)).all()


def test_latent_init_data_centres_anchors_the_centres_and_keeps_the_spread(cache):
    """data-centres anchors each category's centre like data, but leaves G's response to the continuous rest of z:
    within one category, data's regression flattens the outputs to a point; data-centres' keep their spread."""
    spreads = {}
    for init in ("data", "data-centres"):
        trainer = initialised_ring_trainer(init, cache)
        sigmas, mode = on_the_modes(trainer, category_centres(trainer.G, 16))
        assert sigmas.max() < 5 and mode.unique().numel() >= 6, init
        z = torch.randn(500, 2, generator=torch.Generator().manual_seed(1))
        z[:, 0] = 0.01  # one category (Phi(0.01) = 0.504), the continuous part varying
        with torch.no_grad():
            spreads[init] = trainer.G(z).std(0).norm().item()
        trainer.close()
    assert spreads["data-centres"] > 3 * spreads["data"], spreads


def test_latent_init_data_needs_categories():
    for init in ("data", "data-centres"):
        with pytest.raises(ValueError, match=f"train.latent_init: {init} anchors the categories.*set model.latent_categories"):
            GANConfig.model_validate({"model": {"family": "gan", "latent_dim": 2}, "train": {"latent_init": init}})


def test_categorical_latent_needs_a_continuous_coordinate():
    with pytest.raises(ValueError, match="latent_categories needs model.latent_dim >= 2"):
        GANConfig.model_validate({"model": {"family": "gan", "latent_dim": 1, "latent_categories": 8}})


def test_family_defaults_fill_only_null_fields():
    wgan = resolve(digits("wgan")).train
    assert (wgan.loss, wgan.optimizer, wgan.weight_clip, wgan.n_critic, wgan.penalty) == ("wgan", "rmsprop", 0.01, 5, "none")
    gp = resolve(digits("wgan-gp")).train
    assert (gp.loss, gp.penalty, gp.penalty_weight, gp.n_critic, gp.optimizer) == ("wgan-gp", "gp", 10.0, 5, "adam")
    sn = resolve(digits("sngan"))
    assert sn.model.spectral_norm is True and sn.train.loss == "hinge"
    style = resolve(digits("stylegan")).train
    assert (style.penalty, style.penalty_every) == ("r1", 4)
    # Anything the job sets wins over the family's default.
    mine = resolve(digits("wgan", optimizer="adam", weight_clip=0.0, n_critic=2)).train
    assert (mine.optimizer, mine.weight_clip, mine.n_critic) == ("adam", 0.0, 2)
    assert resolve(digits("dcgan", loss="wgan-gp")).train.penalty == "gp"  # a loss still implies its penalty


def test_families_build_what_their_defaults_promise(cache):
    sn = GANTrainer(digits("sngan"), cache_dir=cache)
    assert any("parametrizations" in name for name, _ in sn.D.named_parameters())
    sn.close()
    wgan = GANTrainer(digits("wgan"), cache_dir=cache)
    assert isinstance(wgan.opt_d, torch.optim.RMSprop)
    wgan.train_steps(3)
    assert max(p.abs().max().item() for p in wgan.D.parameters()) <= 0.01 + 1e-7
    wgan.close()


@pytest.mark.parametrize("section,key,value,kind", [
    ("model", "family", "stylgan", "model.family"),
    ("train", "optimizer", "adamw", "train.optimizer"),
    ("train", "augment", ["translation", "colour"], "train.augment"),
    ("train", "penalty", "gp-onesided", "train.penalty"),
])
def test_unknown_components_fail_validation_with_the_spec_path(section, key, value, kind):
    data = digits("dcgan").model_dump()
    data[section][key] = value
    with pytest.raises(UnknownComponentError) as err:
        check_components(GANConfig.model_validate(data))
    assert err.value.kind == kind
    assert "did you mean" in str(err.value)


def test_cgan_needs_labels_and_its_generator_follows_the_label(cache):
    trainer = GANTrainer(digits("cgan"), cache_dir=cache)
    g = trainer.G.eval()
    z = torch.randn(4, g.latent_dim)
    with torch.no_grad():
        assert not torch.allclose(g(z, torch.zeros(4, dtype=torch.long)), g(z, torch.ones(4, dtype=torch.long)))
    trainer.close()


def test_projection_discriminator_adds_the_label_inner_product():
    from trainers.families.gan import MLPDiscriminator

    d = ProjectionDiscriminator(MLPDiscriminator(2, 8, 2, spectral_norm=False), num_classes=3, spectral_norm=False)
    x, y = torch.randn(5, 2), torch.tensor([0, 1, 2, 1, 0])
    phi = d.base.features(x)
    expected = d.base.head(phi).squeeze(1) + (d.embed.weight[y] * phi).sum(1)
    assert torch.allclose(d(x, y), expected)


def test_modulated_conv_equals_per_sample_weight_demodulation():
    torch.manual_seed(0)
    conv = ModulatedConv(3, 4, 3, w_dim=5)
    x, w = torch.randn(2, 3, 6, 6), torch.randn(2, 5)
    got = conv(x, w)
    style = conv.affine(w)
    outs = []
    for i in range(2):  # StyleGAN2 eq. 1-3, sample by sample
        weight = conv.weight * conv.scale * style[i][None, :, None, None]
        weight = weight / weight.square().sum(dim=[1, 2, 3], keepdim=True).add(1e-8).sqrt()
        outs.append(torch.nn.functional.conv2d(x[i : i + 1], weight, padding=1))
    assert torch.allclose(got, torch.cat(outs), atol=1e-5)


def test_stylegan_noise_mixing_and_truncation():
    torch.manual_seed(0)
    g = StyleGANGenerator(latent_dim=8, channels=1, image_size=16, width=8, mapping_layers=2, style_mixing=1.0)
    with torch.no_grad():
        for layer in g.layers:
            layer.noise_strength.fill_(0.5)
    z = torch.randn(3, 8)
    g.eval()
    with torch.no_grad():
        assert torch.equal(g(z), g(z))  # eval: fixed noise buffers, deterministic
        g.w_avg.normal_()
        collapsed = g(z, truncation=0.0)  # psi = 0: every latent maps to the average w
        assert torch.allclose(collapsed[0], collapsed[1], atol=1e-5)
    g.train()
    g.noise_rng = torch.Generator().manual_seed(5)
    a = g(z)
    g.noise_rng = torch.Generator().manual_seed(5)
    b = g(z)
    g.noise_rng = torch.Generator().manual_seed(6)
    c = g(z)
    assert torch.equal(a, b) and not torch.equal(a, c)  # noise and mixing come from the trainer's generator
    assert g.num_ws == 5 and a.shape == (3, 1, 16, 16)  # 4x4 layer + two per octave (8, 16 px)


def test_stylegan_trains_and_samples_under_bf16_autocast():
    # train.precision: bf16 autocasts G's forward on GPU; the running average of w must stay fp32 (an H100 run
    # failed here: lerp_ of the fp32 buffer with a bf16 mean). CPU autocast reproduces the dtype mix.
    g = StyleGANGenerator(latent_dim=8, channels=1, image_size=8, width=8, mapping_layers=2, style_mixing=0.9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        g.train()
        assert g(torch.randn(4, 8)).shape == (4, 1, 8, 8)
        g.eval()
        assert g(torch.randn(4, 8), truncation=0.7).shape == (4, 1, 8, 8)
    assert g.w_avg.dtype == torch.float32


@pytest.mark.parametrize("family", ["stylegan", "cgan"])
def test_same_seed_same_weights_and_exact_resume(cache, tmp_path, family):
    cfg = digits(family, ema_decay=0.9)

    def weights(t):
        return {**{f"G.{k}": v.clone() for k, v in t.G.state_dict().items()},
                **{f"D.{k}": v.clone() for k, v in t.D.state_dict().items()},
                **{f"E.{k}": v.clone() for k, v in t.ema.model.state_dict().items()}}

    straight = GANTrainer(cfg, cache_dir=cache)
    straight.train_steps(12)
    expected = weights(straight)
    again = GANTrainer(cfg, cache_dir=cache)
    again.train_steps(5)
    again.save_checkpoint(tmp_path / "ckpt", export=False)
    again.train_steps(7)
    assert all(torch.equal(v, weights(again)[k]) for k, v in expected.items())
    resumed = GANTrainer(cfg, cache_dir=cache)
    resumed.load_checkpoint(tmp_path / "ckpt")
    resumed.train_steps(7)
    got = weights(resumed)
    assert all(torch.equal(v, got[k]) for k, v in expected.items())


def _ddp_rank(rank: int, world_size: int, port: int, cache: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        # R1 differentiates D twice: the penalty path must work under DDP too.
        cfg = ring(penalty="r1", penalty_weight=1.0, ema_decay=0.9, eval_samples=500)
        trainer = GANTrainer(cfg, cache_dir=cache, rank=rank, world_size=world_size)
        initial = [p.detach().clone() for p in trainer.G.parameters()]
        stats = trainer.train_steps(20)
        scores = trainer.evaluate()
        torch.save({
            "G": trainer.G.state_dict(), "D": trainer.D.state_dict(), "E": trainer.ema.model.state_dict(),
            "moved": any(not torch.equal(a, b) for a, b in zip(initial, trainer.G.parameters())),
            "wrapped": type(trainer._d).__name__, "scores": scores, "finite": math.isfinite(stats["loss_d"]),
        }, os.path.join(out, f"rank{rank}.pt"))
        trainer.close()
    finally:
        dist.destroy_process_group()


def test_ddp_two_gloo_ranks_train_in_lockstep(cache, tmp_path):
    GANTrainer(ring(), cache_dir=cache).close()  # materialise the data set once, before the ranks race for it
    mp.spawn(_ddp_rank, args=(2, free_port(), str(cache), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2))
    assert r0["wrapped"] == r1["wrapped"] == "DistributedDataParallel"
    assert r0["moved"] and r0["finite"] and r1["finite"]
    for part in ("G", "D", "E"):  # gradients averaged across ranks: the replicas never drift apart
        assert r0[part].keys() == r1[part].keys()
        assert all(torch.equal(r0[part][k], r1[part][k]) for k in r0[part]), part
    assert "reverse_kl" in r0["scores"] and r1["scores"] == {}  # only rank 0 evaluates
