"""Image-to-image translation: two-domain importers and built-ins, pix2pix/CycleGAN networks and losses, the image
pool, the translation metrics on known cases, real training that beats the identity baseline, exact resume and the
no-pickle export."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainers.catalog import FAMILY_INFO
from trainers.metrics.declared import METRIC_MODES
from trainers.config import GANConfig
from trainers.data import DataError, import_dataset, open_dataset
from trainers.export import load_generator_dir
from trainers.metrics.translation import frechet_distance, l1_error, psnr, ssim
from trainers.settings import resolve
from trainers.tasks import trainer_class
from trainers.translation.losses import ImagePool, linear_decay
from trainers.translation.networks import PatchDiscriminator, ResnetGenerator, Translator, UnetGenerator
from trainers.translation.trainer import TranslationTrainer

JOBS = Path(__file__).resolve().parents[1] / "jobs"


def job(family, steps=150, generator="unet", **train):
    uri = {"pix2pix": "builtin:digits-edges", "cyclegan": "builtin:digits-inverted"}[family]
    return GANConfig.model_validate({
        "data": {"uri": uri, "batch_size": 32, "shuffle_buffer": 512},
        "model": {"family": family, "width": 16, "generator": generator},
        "train": {"steps": steps, "eval_every": steps, "eval_samples": 300, "ema_decay": 0.0, "device": "cpu", **train},
    })


def _png(path, array):
    Image.fromarray(array.astype(np.uint8)).save(path)


# ------------------------------------------------------------------------------------------------ data
def test_pix2pix_folder_imports_aligned_pairs_and_its_test_split(tmp_path):
    rng = np.random.default_rng(0)
    source = tmp_path / "edges2things"
    rows = {}
    for split, n in (("train", 5), ("test", 3)):
        (source / split).mkdir(parents=True)
        rows[split] = rng.integers(0, 256, size=(n, 8, 16), dtype=np.uint8)
        for i, row in enumerate(rows[split]):
            _png(source / split / f"{i:03d}.png", row)
    manifest = import_dataset(str(source), str(tmp_path / "ds"), fmt="pix2pix")
    assert (manifest.kind, manifest.shape, manifest.num_rows) == ("paired", (8, 16, 1), 5)
    assert manifest.extra["translation"]["heldout"] == "heldout"
    ds = open_dataset(str(tmp_path / "ds"))
    held = open_dataset(ds.location.uri_of("heldout"))
    assert (held.info.kind, held.info.num_rows) == ("paired", 3)
    x, _ = ds.real_samples(5, seed=0)
    stored = np.round((x.numpy()[:, 0] + 1) * 127.5).astype(np.uint8)
    assert sorted(map(bytes, stored)) == sorted(map(bytes, rows["train"]))  # A|B kept side by side, exactly


def test_cyclegan_folders_import_unpaired_rows_covering_both_domains(tmp_path):
    source = tmp_path / "horse2zebra"
    for folder, n, value in (("trainA", 4, 10), ("trainB", 7, 200), ("testA", 2, 20), ("testB", 2, 220)):
        (source / folder).mkdir(parents=True)
        for i in range(n):
            _png(source / folder / f"{i}.png", np.full((8, 8), value + i))
    manifest = import_dataset(str(source), str(tmp_path / "ds"), fmt="cyclegan")
    assert (manifest.kind, manifest.num_rows, manifest.shape) == ("unpaired", 7, (8, 16, 1))
    x, _ = open_dataset(str(tmp_path / "ds")).real_samples(7, seed=0)
    pixels = np.round((x.numpy()[:, 0] + 1) * 127.5).astype(int)
    assert set(pixels[:, 0, 0]) == {10, 11, 12, 13}  # every A image, cycled
    assert sorted(pixels[:, 0, 8]) == list(range(200, 207))  # every B image once, in a seeded pairing
    assert open_dataset(str(tmp_path / "ds" / "heldout")).info.kind == "unpaired"


def test_two_domain_importers_refuse_bad_folders_in_one_line(tmp_path):
    (tmp_path / "c" / "trainA").mkdir(parents=True)
    with pytest.raises(DataError, match=r"needs sub-folders trainA/ and trainB/ \(missing trainB/\)"):
        import_dataset(str(tmp_path / "c"), str(tmp_path / "out"), fmt="cyclegan")
    (tmp_path / "p").mkdir()
    _png(tmp_path / "p" / "0.png", np.zeros((8, 15)))
    with pytest.raises(DataError, match="even width"):
        import_dataset(str(tmp_path / "p"), str(tmp_path / "out"), fmt="pix2pix")
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_builtin_translation_sets_hold_the_known_mappings(cache):
    edges = open_dataset("builtin:digits-edges", cache_dir=cache)
    assert (edges.info.kind, edges.info.num_rows, edges.info.num_classes) == ("paired", 1500, 10)
    inverted = open_dataset("builtin:digits-inverted", cache_dir=cache)
    assert (inverted.info.kind, inverted.info.num_rows) == ("unpaired", 750)
    held = open_dataset(inverted.location.uri_of("heldout"))
    x, _ = held.real_samples(held.info.num_rows, seed=0)
    a, b = x[..., :8], x[..., 8:]
    assert held.info.kind == "paired" and torch.allclose(b, -a, atol=1e-6)  # B = 255 - A, aligned: the truth


def test_translation_sets_import_to_s3_with_their_held_out_rows_and_resume_exactly(s3_prefix, cache):
    assert import_dataset("builtin:digits-inverted", s3_prefix).kind == "unpaired"
    remote, local = open_dataset(s3_prefix), open_dataset("builtin:digits-inverted", cache_dir=cache)
    held = open_dataset(remote.location.uri_of("heldout"))
    assert held.info.checksum == open_dataset(local.location.uri_of("heldout")).info.checksum
    stream = remote.stream(batch_size=64, seed=3, shuffle_buffer=128, rank=1, world_size=2)
    stream.next_batch()
    state = stream.state_dict()
    expected = stream.next_batch()[0]
    stream.close()
    resumed = remote.stream(batch_size=64, seed=3, shuffle_buffer=128, rank=1, world_size=2)
    resumed.load_state_dict(state)
    assert torch.equal(resumed.next_batch()[0], expected)
    resumed.close()


# ------------------------------------------------------------------------------------------------ networks, losses
@pytest.mark.parametrize("size", [8, 16])
def test_generators_keep_the_image_shape_in_model_range(size):
    x = torch.randn(3, 3, size, size)
    for net in (UnetGenerator(3, 3, size, 8), ResnetGenerator(3, 3, size, 8, blocks=2)):
        y = net(x)
        assert y.shape == x.shape and y.abs().max() <= 1


def test_patchgan_receptive_field_sets_the_logit_map_and_refuses_too_deep():
    assert PatchDiscriminator(2, 8, 1, 8)(torch.randn(2, 2, 8, 8)).shape == (2, 1, 2, 2)
    assert PatchDiscriminator(1, 8, 2, 16)(torch.randn(2, 1, 16, 16)).shape == (2, 1, 2, 2)
    assert PatchDiscriminator(1, 8, 0, 8)(torch.randn(2, 1, 8, 8)).shape == (2, 1, 8, 8)  # PixelGAN
    with pytest.raises(ValueError, match=r"model.d_layers=2 is too deep for 8 px images \(at most 1"):
        PatchDiscriminator(1, 8, 2, 8)


def test_family_defaults_are_the_papers():
    pix = resolve(job("pix2pix"))
    assert (pix.train.loss, pix.train.lambda_l1, pix.train.pool_size, pix.train.lr_decay_start) == ("ns", 100.0, 0, 0.5)
    cyc = resolve(job("cyclegan", generator=None))
    assert (cyc.train.loss, cyc.train.lambda_cycle, cyc.train.lambda_identity, cyc.train.pool_size) == ("lsgan", 10.0, 0.5, 50)
    assert cyc.model.generator == "resnet"
    assert resolve(GANConfig()).train.lr_decay_start == 1.0  # no decay for the generation families
    assert trainer_class("cyclegan") is TranslationTrainer and FAMILY_INFO.get("dcgan").task == "generation"


def test_image_pool_fills_then_swaps_half_the_images():
    rng = torch.Generator().manual_seed(0)
    pool = ImagePool(4)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first, rng), first)  # filling: returned as given
    later = torch.full((400, 1, 1, 1), 100.0)
    out = pool.query(later, rng)
    # Each stored image is returned at most once (it is replaced by the image that took its place).
    old = out[out != 100.0]
    assert 1 <= len(old) <= 4 and len(set(old.tolist())) == len(old) and set(old.tolist()) <= {0.0, 1.0, 2.0, 3.0}
    assert 4 - len(old) == int((torch.stack(pool.images) != 100.0).sum())  # the history still holds the rest
    restored = ImagePool(4)
    restored.load_state_dict(pool.state_dict(), torch.device("cpu"))
    assert all(torch.equal(a, b) for a, b in zip(pool.images, restored.images))
    assert torch.equal(ImagePool(0).query(later, rng), later)


def test_linear_decay_keeps_then_falls_to_zero():
    assert linear_decay(0, 100, 0.5) == 1.0 and linear_decay(50, 100, 0.5) == 1.0
    assert linear_decay(100, 100, 0.5) == pytest.approx(1 / 51)
    assert linear_decay(75, 100, 0.5) == pytest.approx(1 - 25 / 51)
    assert linear_decay(100, 100, 1.0) == 1.0


# ------------------------------------------------------------------------------------------------ metrics
def test_translation_metrics_on_known_cases():
    x = torch.rand(16, 1, 8, 8) * 2 - 1
    assert l1_error(x, x) == 0 and psnr(x, x) == math.inf and ssim(x, x) == pytest.approx(1.0)
    black, grey = torch.full((4, 1, 8, 8), -1.0), torch.full((4, 1, 8, 8), -0.8)  # 0.1 of the range apart
    assert l1_error(black, grey) == pytest.approx(0.1) and psnr(black, grey) == pytest.approx(20.0, abs=1e-4)
    assert ssim(x, -x) < 0.2
    f = torch.randn(2000, 4, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(f, f) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(f, f + torch.tensor([3.0, 0, 0, 0])) == pytest.approx(9.0, rel=1e-6)
    for metric, mode in {"l1": "min", "psnr": "max", "ssim": "max", "fd_own": "min", "fd_own_ab": "min",
                         "fd_own_ba": "min", "cycle_error": "min",
                         "truth_l1": "min"}.items():
        assert METRIC_MODES[metric] == mode


# ------------------------------------------------------------------------------------------------ training
def test_pix2pix_learns_edges_to_digits_beyond_the_identity_baseline(cache):
    trainer = TranslationTrainer(job("pix2pix"), cache_dir=cache)
    before = trainer.evaluate()
    trainer.train_steps(150)
    after = trainer.evaluate()
    trainer.close()
    assert after["l1"] < 0.7 * after["l1_identity"] and after["l1"] < before["l1"]
    assert after["ssim"] > after["ssim_identity"] and after["fd_own"] < after["fd_own_identity"]
    assert after["l1_floor"] == 0.0 and 0 < after["fd_own_floor"] < after["fd_own"]


def test_cyclegan_learns_inversion_from_unpaired_digits(cache):
    trainer = TranslationTrainer(job("cyclegan", lambda_identity=0.0), cache_dir=cache)
    before = trainer.evaluate()
    stats = trainer.train_steps(150)
    after = trainer.evaluate()
    trainer.close()
    assert {"loss_adv_a", "loss_adv_b", "loss_cycle"} <= set(stats)
    assert after["truth_l1"] < 0.6 * after["truth_l1_identity"] and after["truth_l1"] < before["truth_l1"]
    assert after["fd_own"] < before["fd_own"] and after["cycle_error"] < before["cycle_error"]


def test_resume_is_exact_and_the_export_loads_without_pickle(cache, tmp_path):
    cfg = job("cyclegan", steps=12, pool_size=4)
    straight = TranslationTrainer(cfg, cache_dir=cache)
    straight.train_steps(6)
    straight.save_checkpoint(tmp_path / "ckpt", export=False)
    straight.train_steps(6)
    resumed = TranslationTrainer(cfg, cache_dir=cache)
    resumed.load_checkpoint(tmp_path / "ckpt")
    resumed.train_steps(6)
    for (name, p), q in zip(straight.G.state_dict().items(), resumed.G.state_dict().values()):
        assert torch.equal(p, q), name
    resumed.save_checkpoint(tmp_path / "export")
    straight.close()
    resumed.close()
    record = json.loads((tmp_path / "export" / "generator.json").read_text())
    assert record["meta"]["task"] == "translation" and record["meta"]["directions"] == ["AtoB", "BtoA"]
    loaded = load_generator_dir(tmp_path / "export")
    assert isinstance(loaded, Translator) and loaded.data_info.kind == "unpaired"
    x = torch.rand(5, 1, 8, 8) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(x, "BtoA"), resumed.G.eval()(x, "BtoA"))
    assert (tmp_path / "export" / "grid.png").is_file()


# ------------------------------------------------------------------------------------------------ translate CLI
@pytest.fixture(scope="module")
def exported(cache, tmp_path_factory):
    """A briefly trained CycleGAN translator, exported as a checkpoint writes it (safetensors + JSON)."""
    trainer = TranslationTrainer(job("cyclegan", steps=10), cache_dir=cache)
    trainer.train_steps(10)
    out = trainer.save_checkpoint(tmp_path_factory.mktemp("translator"))
    trainer.close()
    return out


def test_translate_cli_round_trips_png_npy_and_folders(exported, tmp_path, capsys):
    from orchestrator.cli import main

    translator = load_generator_dir(exported)
    digits = np.stack([np.full((8, 8), v, dtype=np.uint8) for v in (0, 60, 255)])
    np.save(tmp_path / "in.npy", digits)
    (tmp_path / "in").mkdir()
    for i, d in enumerate(digits):
        _png(tmp_path / "in" / f"d{i}.png", d)
    assert main(["translate", str(exported), str(tmp_path / "in.npy"), "--direction", "BtoA",
                 "--out", str(tmp_path / "out.npy")]) == 0
    out = np.load(tmp_path / "out.npy", allow_pickle=False)
    x = torch.from_numpy(digits[:, None].astype(np.float32) / 127.5 - 1)
    with torch.no_grad():
        expected = np.clip(np.rint((translator(x, "BtoA").numpy() + 1) * 127.5), 0, 255).astype(np.uint8)
    assert out.shape == (3, 8, 8, 1) and np.array_equal(out[..., 0], expected[:, 0])
    assert main(["translate", str(exported), str(tmp_path / "in"), "--out", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["d0.png", "d1.png", "d2.png"]
    assert main(["translate", str(exported), str(tmp_path / "in" / "d1.png"), "--out", str(tmp_path / "one.png")]) == 0
    assert Image.open(tmp_path / "one.png").size == (8, 8)
    assert "translated 1 image(s) AtoB" in capsys.readouterr().out


def test_translate_cli_refuses_bad_inputs_and_sample_refuses_translators(exported, tmp_path, capsys):
    from orchestrator.cli import main

    _png(tmp_path / "big.png", np.zeros((10, 10)))
    assert main(["translate", str(exported), str(tmp_path / "big.png"), "--out", str(tmp_path / "o.png")]) == 2
    assert "the model translates 8x8 images" in capsys.readouterr().err
    assert main(["translate", str(exported), str(tmp_path / "missing.png"), "--out", str(tmp_path / "o.png")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["sample", str(exported), "-n", "4", "--out", str(tmp_path / "s.png")]) == 2
    assert "image-to-image translator" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "s.png").exists()


def test_jobs_validate_and_translation_needs_fitting_data():
    from orchestrator.cli import main

    assert main(["validate", str(JOBS / "digits-edges-pix2pix.yaml")]) == 0
    assert main(["validate", str(JOBS / "digits-cyclegan.yaml")]) == 0
    assert main(["validate", str(JOBS / "quickstart.yaml"), "--set", "model.family=pix2pix"]) == 2
    assert main(["validate", str(JOBS / "digits-cyclegan.yaml"), "--set", "resources.workers_per_trial=2"]) == 2


@pytest.mark.parametrize("family", ["pix2pix", "cyclegan"])
def test_every_stabiliser_and_optimizer_knob_applies(cache, family):
    cfg = GANConfig.model_validate({**job(family, steps=3).model_dump(), "model": {
        **job(family).model_dump()["model"], "spectral_norm": True, "pack": 2, "width": 8}})
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={
        "augment": ["translation", "color", "cutout"], "instance_noise": 0.1, "penalty": "gp", "n_critic": 2,
        "optimizer": "rmsprop", "weight_clip": 0.05, "max_grad_norm": 5.0, "label_smoothing": 0.1, "loss": "ns",
        "ema_decay": 0.9})})
    trainer = TranslationTrainer(cfg, cache_dir=cache)
    stats = trainer.train_steps(3)
    assert isinstance(trainer.opt_d, torch.optim.RMSprop) and math.isfinite(stats["loss_d"])
    assert any("parametrizations" in name for name, _ in trainer.D.named_parameters())
    clipped = [p for name, p in trainer.D.named_parameters() if "original" not in name]
    assert max(p.abs().max().item() for p in clipped) <= 0.05 + 1e-7
    trainer.close()


def test_a_restore_applies_the_recipients_loss_weights_and_rates(cache, tmp_path):
    donor = TranslationTrainer(job("pix2pix", steps=4), cache_dir=cache)
    donor.train_steps(2)
    donor.save_checkpoint(tmp_path, export=False)
    donor.close()
    mutated = job("pix2pix", steps=4, lambda_l1=7.0, lr_g=1e-3)
    recipient = TranslationTrainer(mutated, cache_dir=cache)
    recipient.load_checkpoint(tmp_path)
    assert recipient.settings.train.lambda_l1 == 7.0
    stats = recipient.train_steps(1)
    assert recipient.opt_g.param_groups[0]["lr"] == pytest.approx(1e-3 * linear_decay(2, 4, 0.5))
    assert stats["loss_l1"] < 7.0  # lambda_l1 * L1 with L1 < 1: the recipient's weight, not the donor's 100
    recipient.close()
