"""Sample-quality metrics on real components: the digits data set, exact mixture constructions, real PNG files."""
from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from trainers.data.info import DataInfo
from trainers.metrics import METRIC_MODES, build_evaluator, save_grid
from trainers.metrics.grid import grid_size
from trainers.metrics.mixture import PERFECT_HQ
from trainers.registry import UnknownComponentError

REPO = Path(__file__).resolve().parents[1]
NUM_SAMPLES = 1000
RING = [[math.cos(2 * math.pi * i / 8), math.sin(2 * math.pi * i / 8)] for i in range(8)]
RING_SIGMA = 0.01
GRID25 = [[float(x), float(y)] for x in (-4, -2, 0, 2, 4) for y in (-4, -2, 0, 2, 4)]
GRID25_SIGMA = 0.05


# ---------------------------------------------------------------------------------------------------- helpers


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 8 - 1  # 0..16 -> [-1, 1], (N, 1, 8, 8)
    return x, torch.tensor(data.target, dtype=torch.int64)


def digits_info(num_classes: int = 10) -> DataInfo:
    return DataInfo(name="digits", kind="image", shape=(8, 8, 1), num_rows=1797, num_classes=num_classes,
                    checksum="0123456789abcdef0123")


def mixture_info(means: list[list[float]], sigma: float, name: str = "ring8") -> DataInfo:
    return DataInfo(name=name, kind="points", shape=(2,), num_rows=10_000, extra={"mixture": {"means": means, "sigma": sigma}})


def mixture_sampler(means: list[list[float]], sigma: float, seed: int, modes: int | None = None):
    centres = torch.tensor(means)[: modes or len(means)]
    gen = torch.Generator().manual_seed(seed)
    return lambda n: centres[torch.randint(len(centres), (n,), generator=gen)] + sigma * torch.randn(n, 2, generator=gen)


def real_sampler(x: torch.Tensor, seed: int):
    gen = torch.Generator().manual_seed(seed)
    return lambda n: x[torch.randint(len(x), (n,), generator=gen)]


def repeat_sampler(image: torch.Tensor):
    return lambda n: image.unsqueeze(0).expand(n, *image.shape).clone()


def noise_sampler(seed: int):
    gen = torch.Generator().manual_seed(seed)
    return lambda n: torch.rand(n, 1, 8, 8, generator=gen) * 2 - 1


def assert_worse(bad: dict[str, float], good: dict[str, float], names, margin: float) -> None:
    """`bad` is worse than `good` on each metric by at least `margin` of the metric's scale."""
    for name in names:
        sign = 1 if METRIC_MODES[name] == "min" else -1
        gap = sign * (bad[name] - good[name])
        assert gap > margin * max(abs(good[name]), abs(bad[name]), 1e-3), (name, bad[name], good[name])


# ---------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("metrics-cache")


@pytest.fixture(scope="module")
def digits_data():
    return digits()


@pytest.fixture(scope="module")
def labelled(digits_data, cache_dir):
    return build_evaluator(digits_info(), digits_data, NUM_SAMPLES, cache_dir)


@pytest.fixture(scope="module")
def unlabelled(digits_data, cache_dir):
    return build_evaluator(digits_info(num_classes=0), (digits_data[0], None), NUM_SAMPLES, cache_dir)


# ---------------------------------------------------------------------------------------------------- mixtures


# E[r^2 / sigma^2 | r < 3 sigma] of a 2-D Gaussian: 2 P(chi2_4 <= 9) / P(chi2_2 <= 9), the width mode_spread divides by
R2_WITHIN_3_SIGMA = 2 * (1 - 5.5 * math.exp(-4.5)) / (1 - math.exp(-4.5))


def test_mixture_exact_constructions():
    ev = build_evaluator(mixture_info(RING, RING_SIGMA), (mixture_sampler(RING, RING_SIGMA, 0)(2500), None), 2500, None)
    one_mean = ev.evaluate(lambda n: torch.tensor([RING[3]]).expand(n, 2))
    assert one_mean == {"modes": 1.0, "hq": 100.0, "reverse_kl": pytest.approx(math.log(8)), "mode_hq": 12.5,
                        "balanced_mode_hq": pytest.approx(12.5), "mode_spread": pytest.approx(0.0, abs=1e-4),
                        "spread_mode_hq": pytest.approx(0.0, abs=1e-3)}

    # exactly on four of the eight means, in equal shares: p = 1/4 each, KL = log(8/4)
    four = torch.tensor(RING[:4])
    assert ev.evaluate(lambda n: four.repeat(n // 4, 1)) == {"modes": 4.0, "hq": 100.0, "reverse_kl": pytest.approx(math.log(2)),
                                                         "mode_hq": 50.0, "balanced_mode_hq": pytest.approx(50.0),
                                                         "mode_spread": pytest.approx(0.0, abs=1e-4),
                                                         "spread_mode_hq": pytest.approx(0.0, abs=1e-3)}

    # half the samples just inside 3 sigma of a mean, half just outside
    near = torch.tensor(RING[0]) + torch.tensor([2.9 * RING_SIGMA, 0.0])
    far = torch.tensor(RING[0]) + torch.tensor([3.1 * RING_SIGMA, 0.0])
    half = ev.evaluate(lambda n: torch.cat([near.expand(n // 2, 2), far.expand(n - n // 2, 2)]))
    # (the HQ half sits 2.9 sigma out: RMS 2.9 sigma against a perfect sampler's sqrt(2 x 0.9494) sigma within 3 sigma)
    assert half == {"modes": 1.0, "hq": 50.0, "reverse_kl": pytest.approx(math.log(8)), "mode_hq": 6.25,
                    "balanced_mode_hq": pytest.approx(6.25),
                    "mode_spread": pytest.approx(2.9 / math.sqrt(R2_WITHIN_3_SIGMA), rel=1e-4),
                    # wider than the data's: no spread factor, the HQ it lost is the penalty
                    "spread_mode_hq": pytest.approx(6.25)}

    # nothing high quality (including NaN samples from a diverged generator): no modes, KL at its collapsed value
    nothing = ev.evaluate(lambda n: torch.full((n, 2), float("nan")))
    assert nothing == {"modes": 0.0, "hq": 0.0, "reverse_kl": pytest.approx(math.log(8)), "mode_hq": 0.0,
                       "balanced_mode_hq": 0.0, "mode_spread": 0.0, "spread_mode_hq": 0.0}

    # every mode covered but unevenly (two means with twice the share of the other six): mode_hq cannot tell it from
    # an even fill; balanced_mode_hq counts exp(H(p)) effective modes instead of 8. Rows cycle in tens: the
    # evaluator asks for 500 at a time.
    uneven = torch.tensor(RING[:2] * 2 + RING[2:])
    scores = ev.evaluate(lambda n: uneven.repeat(n // 10, 1))
    p = torch.tensor([0.2] * 2 + [0.1] * 6, dtype=torch.float64)
    effective_modes = math.exp(-(p * p.log()).sum().item())  # 7.58
    assert scores["modes"] == 8.0 and scores["mode_hq"] == pytest.approx(100.0)
    assert scores["balanced_mode_hq"] == pytest.approx(100.0 * effective_modes / 8) and scores["balanced_mode_hq"] < 95


@pytest.mark.parametrize("means,sigma", [(RING, RING_SIGMA), (GRID25, GRID25_SIGMA)], ids=["ring8", "grid25"])
def test_mixture_perfect_vs_collapsed(means, sigma):
    real = mixture_sampler(means, sigma, seed=0)(10_000)
    ev = build_evaluator(mixture_info(means, sigma), (real, None), 2500, None)
    assert ev.default_metric == "reverse_kl"

    perfect = ev.evaluate(mixture_sampler(means, sigma, seed=1))
    assert perfect["modes"] == len(means)
    assert perfect["hq"] == pytest.approx(100 * (1 - math.exp(-4.5)), abs=1.0)  # P(chi2_2 <= 9) = 98.89 %
    assert perfect["reverse_kl"] < 0.03
    assert ev.floors["modes_floor"] == len(means)
    assert ev.floors["reverse_kl_floor"] < 0.03

    collapsed = ev.evaluate(mixture_sampler(means, sigma, seed=2, modes=1))
    assert collapsed["modes"] == 1
    assert collapsed["reverse_kl"] == pytest.approx(math.log(len(means)))
    assert_worse(collapsed, perfect, ["modes", "reverse_kl"], margin=0.5)


@pytest.mark.parametrize("means,sigma", [(RING, RING_SIGMA), (GRID25, GRID25_SIGMA)], ids=["ring8", "grid25"])
def test_mode_spread_sees_collapse_within_modes_that_hq_and_kl_reward(means, sigma):
    """A sampler at half the modes' width scores *better* HQ and KL than a perfect one; mode_spread shows it."""
    real = mixture_sampler(means, sigma, seed=0)(10_000)
    ev = build_evaluator(mixture_info(means, sigma), (real, None), 20_000, None)
    perfect = ev.evaluate(mixture_sampler(means, sigma, seed=1))
    narrow = ev.evaluate(mixture_sampler(means, sigma / 2, seed=1))
    assert narrow["hq"] > perfect["hq"] and narrow["modes"] == perfect["modes"] == len(means)
    assert perfect["mode_spread"] == pytest.approx(1.0, abs=0.02)
    assert narrow["mode_spread"] == pytest.approx(0.5 * math.sqrt(2 / R2_WITHIN_3_SIGMA), abs=0.02)
    assert ev.floors["mode_spread_floor"] == pytest.approx(1.0, abs=0.05)
    # the narrow sampler outscores the perfect one on every HQ-based selection score, but not on spread_mode_hq
    assert narrow["balanced_mode_hq"] > perfect["balanced_mode_hq"] and narrow["mode_hq"] > perfect["mode_hq"]
    assert narrow["spread_mode_hq"] < 0.6 * perfect["spread_mode_hq"]
    assert perfect["spread_mode_hq"] == pytest.approx(PERFECT_HQ, abs=1.5)  # the best score a generator can reach


@pytest.mark.parametrize("means,sigma", [(RING, RING_SIGMA), (GRID25, GRID25_SIGMA)], ids=["ring8", "grid25"])
def test_mixture_mode_hq_is_modes_share_times_hq(means, sigma):
    """mode_hq = modes / K x HQ %: 100 on the means, hq / K collapsed onto one mode, and it ranks a blurry
    generator that touches every mode below a sharp one, which reverse KL alone does not."""
    k = len(means)
    real = mixture_sampler(means, sigma, seed=0)(10_000)
    ev = build_evaluator(mixture_info(means, sigma), (real, None), 2500, None)
    assert "mode_hq" in ev.metric_names and METRIC_MODES["mode_hq"] == "max"

    centres = torch.tensor(means)
    on_means = ev.evaluate(lambda n: centres.repeat(n // k + 1, 1)[:n])
    assert on_means["modes"] == k and on_means["hq"] == 100.0 and on_means["mode_hq"] == pytest.approx(100.0)

    perfect = ev.evaluate(mixture_sampler(means, sigma, seed=1))
    assert perfect["mode_hq"] == pytest.approx(perfect["hq"])  # every mode covered: the HQ share itself, ~98.9
    assert ev.floors["mode_hq_floor"] == pytest.approx(ev.floors["hq_floor"])

    collapsed = ev.evaluate(mixture_sampler(means, sigma, seed=2, modes=1))
    assert collapsed["modes"] == 1
    assert collapsed["mode_hq"] == pytest.approx(collapsed["hq"] / k)
    assert collapsed["mode_hq"] < perfect["mode_hq"] / (k - 1)

    # blur: 5 % of the samples sharp on the means (every mode covered), the rest 20 sigma off; uniform histogram,
    # so reverse KL is as good as the perfect sampler's while mode_hq is ~5
    gen = torch.Generator().manual_seed(3)

    def blurry(n: int) -> torch.Tensor:
        x = centres[torch.arange(n) % k] + 20 * sigma * torch.randn(n, 2, generator=gen).sign()
        sharp = torch.arange(n) % 20 == 0
        x[sharp] = centres[torch.arange(int(sharp.sum())) % k]
        return x

    blur = ev.evaluate(blurry)
    assert blur["modes"] == k and blur["reverse_kl"] < 0.03
    assert blur["mode_hq"] == pytest.approx(blur["hq"]) and blur["mode_hq"] < 10 < perfect["mode_hq"]
    for name, scores in {"on_means": on_means, "perfect": perfect, "collapsed": collapsed, "blur": blur}.items():
        assert scores["mode_hq"] == pytest.approx(scores["modes"] / k * scores["hq"]), name
        assert scores["balanced_mode_hq"] == pytest.approx(scores["hq"] * math.exp(-scores["reverse_kl"])), name


def test_mixture_needs_its_means():
    info = DataInfo(name="ring8", kind="points", shape=(2,), num_rows=10)
    with pytest.raises(ValueError, match=r"ring8.*mixture"):
        build_evaluator(info, (torch.zeros(10, 2), None), 100, None)
    bad_sigma = mixture_info(RING, -1.0)
    with pytest.raises(ValueError, match="sigma must be positive"):
        build_evaluator(bad_sigma, (torch.zeros(10, 2), None), 100, None)


# ---------------------------------------------------------------------------------------------------- images


def test_image_perfect_vs_collapsed(labelled, digits_data):
    x, y = digits_data
    assert labelled.default_metric == "fd_own"
    perfect = labelled.evaluate(real_sampler(x, seed=7))
    assert set(perfect) == set(labelled.metric_names)
    assert set(labelled.floors) == {f"{name}_floor" for name in labelled.metric_names}

    diversity = ["fd_own", "kd_own", "recall", "coverage", "class_coverage", "class_kl"]
    repeated = labelled.evaluate(repeat_sampler(x[0]))
    one_class = labelled.evaluate(real_sampler(x[y == 3], seed=7))
    for collapsed in (repeated, one_class):
        assert_worse(collapsed, perfect, diversity, margin=0.5)
        assert collapsed["class_coverage"] == pytest.approx(0.1)
        assert collapsed["class_kl"] > 2.0  # ~log 10

    # Precision and density measure fidelity: real images, however few, score as well as a perfect sampler, while
    # samples that look like nothing in the data (uniform noise) are worse on every image-space metric.
    assert min(repeated["precision"], one_class["precision"], perfect["precision"]) > 0.95
    noise = labelled.evaluate(noise_sampler(seed=0))
    assert_worse(noise, perfect, ["fd_own", "kd_own", "precision", "recall", "density", "coverage"], margin=0.5)

    # real vs real lands near the recorded floor, far from any collapse
    assert abs(perfect["fd_own"] - labelled.floors["fd_own_floor"]) < 0.01 * repeated["fd_own"]
    assert abs(perfect["kd_own"] - labelled.floors["kd_own_floor"]) < 0.01 * repeated["kd_own"]
    assert labelled.floors["class_coverage_floor"] == 1.0


def test_unlabelled_images_use_an_autoencoder(unlabelled, digits_data):
    x, _ = digits_data
    perfect = unlabelled.evaluate(real_sampler(x, seed=7))
    assert set(perfect) == {"fd_own", "kd_own", "precision", "recall", "density", "coverage"}  # no classifier, no classes
    repeated = unlabelled.evaluate(repeat_sampler(x[0]))
    assert_worse(repeated, perfect, ["fd_own", "kd_own", "recall", "coverage"], margin=0.5)
    assert abs(perfect["fd_own"] - unlabelled.floors["fd_own_floor"]) < 0.01 * repeated["fd_own"]


def test_feature_net_and_real_statistics_are_cached(labelled, digits_data, cache_dir):
    files = sorted((cache_dir / "features").glob("digits-0123456789ab*.safetensors"))
    net_file = labelled.feature_net_path
    assert net_file.parent == cache_dir / "features" and net_file.name.startswith("digits-0123456789ab-classifier-")
    assert net_file in files
    assert labelled.reference_path in files
    stamps = {f: f.stat().st_mtime_ns for f in (net_file, labelled.reference_path)}

    again = build_evaluator(digits_info(), digits_data, NUM_SAMPLES, cache_dir)
    assert again.feature_net_loaded and again.reference_loaded
    assert {f: f.stat().st_mtime_ns for f in stamps} == stamps  # read, not rewritten
    assert again.floors == labelled.floors
    x = digits_data[0]
    assert again.evaluate(real_sampler(x, seed=3)) == labelled.evaluate(real_sampler(x, seed=3))

    # another sample count reuses the network but has its own real statistics (floors depend on the count)
    other = build_evaluator(digits_info(), digits_data, 500, cache_dir)
    assert other.feature_net_loaded and not other.reference_loaded
    assert other.reference_path != labelled.reference_path


def test_a_trainer_without_cache_dir_caches_its_metrics_beside_the_data(tmp_path, monkeypatch):
    """Trials get no cache_dir: the second trial of an image job must load the feature net, not train it again."""
    from trainers.config import GANConfig
    from trainers.loop import GANTrainer

    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path))
    cfg = GANConfig.model_validate({"data": {"uri": "builtin:digits", "batch_size": 32},
                                    "model": {"family": "dcgan", "latent_dim": 16, "width": 8},
                                    "train": {"eval_samples": 300, "device": "cpu"}})
    first, second = GANTrainer(cfg), GANTrainer(cfg)
    try:
        assert not first.evaluator.feature_net_loaded
        assert first.evaluator.feature_net_path.parent == tmp_path / "features"
        assert second.evaluator.feature_net_loaded and second.evaluator.reference_loaded
    finally:
        first.close()
        second.close()


def test_feature_net_training_is_deterministic(unlabelled, digits_data):
    rebuilt = build_evaluator(digits_info(num_classes=0), (digits_data[0], None), NUM_SAMPLES, None)  # trains again
    assert not rebuilt.feature_net_loaded
    for (name, a), b in zip(unlabelled.net.state_dict().items(), rebuilt.net.state_dict().values()):
        assert torch.equal(a, b), name
    assert rebuilt.floors == unlabelled.floors


def test_scores_are_deterministic_and_leave_the_global_rng_alone(labelled, digits_data):
    x = digits_data[0]
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = labelled.evaluate(real_sampler(x, seed=5))
    second = labelled.evaluate(real_sampler(x, seed=5))
    assert first == second
    assert torch.equal(torch.get_rng_state(), before)  # training after an evaluation is unchanged by it


def test_evaluate_uses_exactly_num_samples(labelled, digits_data):
    x = digits_data[0]
    requested: list[int] = []

    def counting(n: int) -> torch.Tensor:
        requested.append(n)
        return x[:n] if n <= len(x) else x[torch.arange(n) % len(x)]

    labelled.evaluate(counting)
    assert sum(requested) == NUM_SAMPLES

    points = build_evaluator(mixture_info(RING, RING_SIGMA), (mixture_sampler(RING, RING_SIGMA, 0)(100), None), 2500, None)
    requested.clear()
    sampler = mixture_sampler(RING, RING_SIGMA, 1)
    points.evaluate(lambda n: requested.append(n) or sampler(n))
    assert sum(requested) == 2500


def test_small_sample_counts_work(digits_data, cache_dir):
    # KID's subset size must not exceed the sample count; 64 samples is far below torchmetrics' default of 1000
    ev = build_evaluator(digits_info(), digits_data, 64, cache_dir)
    scores = ev.evaluate(real_sampler(digits_data[0], seed=1))
    assert all(math.isfinite(v) for v in scores.values())


def test_bad_samples_and_bad_input_get_clear_errors(labelled, digits_data):
    x, y = digits_data
    with pytest.raises(ValueError, match=r"sample_fn\(\d+\) returned \(\d+, 64\); expected .*\(\d+, 1, 8, 8\)"):
        labelled.evaluate(lambda n: torch.zeros(n, 64))
    with pytest.raises(ValueError, match=r"real samples of data set 'digits' have shape \(1, 4, 4\); expected \(1, 8, 8\)"):
        build_evaluator(digits_info(), (x[:, :, :4, :4], y), 100, None)
    with pytest.raises(ValueError, match=r"real labels .* 0\.\.9"):
        build_evaluator(digits_info(), (x, y + 5), 100, None)
    with pytest.raises(UnknownComponentError, match="did you mean 'image'"):
        build_evaluator(DataInfo(name="d", kind="imagee", shape=(8, 8, 1), num_rows=2), (x, y), 100, None)


def test_diverged_generator_images_still_score(labelled):
    scores = labelled.evaluate(lambda n: torch.full((n, 1, 8, 8), float("nan")))
    assert all(math.isfinite(v) for v in scores.values())
    assert scores["fd_own"] > 10 * labelled.floors["fd_own_floor"]


def test_concurrent_trials_train_the_feature_net_once(tmp_path):
    # Two trial processes start together on an empty cache: one trains and writes, the other waits and loads.
    script = textwrap.dedent(
        f"""
        import sys, torch
        sys.path.insert(0, {str(REPO)!r})
        from tests.test_metrics import digits, digits_info
        from trainers.metrics import build_evaluator
        x, y = digits()
        ev = build_evaluator(digits_info(), (x[:400], y[:400]), 200, {str(tmp_path)!r})
        print("loaded" if ev.feature_net_loaded else "trained", ev.floors["fd_own_floor"])
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0].split() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert sorted(o[0] for o in outputs) == ["loaded", "trained"]
    assert outputs[0][1] == outputs[1][1]  # same floors from the same files
    assert not list(tmp_path.rglob("*.tmp"))  # no half-written leftovers


def test_metric_modes_cover_every_suite():
    from trainers.metrics.declared import FEATURE_SPACES, METRIC_SUITE_INFO

    for kind in METRIC_SUITE_INFO:
        suite = METRIC_SUITE_INFO.get(kind)
        for space in FEATURE_SPACES if suite.uses_features else ["own"]:
            assert suite.default_metric(space) in suite.metric_modes(space)
            assert set(suite.metric_modes(space)) <= set(METRIC_MODES)
    assert set(METRIC_MODES.values()) == {"min", "max"}
    # a feature space's distances carry its name: Inception's alone are fid/kid
    image = METRIC_SUITE_INFO.get("image")
    assert image.default_metric("own") == "fd_own" and image.default_metric("inception") == "fid"


# ---------------------------------------------------------------------------------------------------- grids


def test_image_grid_png(tmp_path, digits_data):
    x = digits_data[0][:64]
    path = save_grid(x, "image", tmp_path / "out" / "grid.png")
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "L"
        # 8 x 8 tiles of 8x8 digits upscaled x4 to 32 px, 2 px apart and around
        assert im.size == grid_size(64, 8, 8) == (8 * 34 + 2, 8 * 34 + 2)
        tile = torch.tensor(np.asarray(im.crop((2, 2, 34, 34))), dtype=torch.float32)
    first = ((x[0, 0] + 1) * 127.5).round().repeat_interleave(4, 0).repeat_interleave(4, 1)
    assert torch.equal(tile, first)  # nearest-neighbour upscale of the first sample

    wide = save_grid(x[:10], "image", tmp_path / "wide.png", nrow=5)
    with Image.open(wide) as im:
        assert im.size == (5 * 34 + 2, 2 * 34 + 2)
    rgb = save_grid(torch.rand(6, 3, 16, 16) * 2 - 1, "image", tmp_path / "rgb.png")
    with Image.open(rgb) as im:
        assert im.mode == "RGB" and im.size == (3 * 34 + 2, 2 * 34 + 2)


def test_points_scatter_png(tmp_path):
    samples = mixture_sampler(GRID25, GRID25_SIGMA, 0)(2500)
    path = save_grid(samples, "points", tmp_path / "scatter.png", means=GRID25)
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.size == (512, 512)
        colours = {c for _, c in im.getcolors(maxcolors=1 << 16)}
    assert (255, 255, 255) in colours and (220, 0, 0) in colours  # background and mean markers
    assert any(r == g == b < 128 for r, g, b in colours)  # dark where samples pile up
    with pytest.raises(UnknownComponentError, match="did you mean 'points'"):
        save_grid(samples, "point", tmp_path / "x.png")
