"""Diagnostics at every evaluation, the mode-collapse flag, and divergence: a trial forced to NaN is reported
`diverged` (and not registered) while the rest of its search completes."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.fixtures.jobs import job_yaml
from trainers import distributed
from trainers.config import GANConfig, TrainConfig
from trainers.diagnostics import collapse_report, largest_spectral_norm, sample_diversity
from trainers.families.layers import maybe_sn
from trainers.loop import GANTrainer

ROOT = Path(__file__).resolve().parents[1]


def ring(family="gan", **train):
    return GANConfig.model_validate({
        "data": {"uri": "builtin:ring8", "batch_size": 128, "shuffle_buffer": 1024},
        "model": {"family": family, "latent_dim": 2, "width": 128, "depth": 2},
        "train": {"lr_g": 2e-3, "lr_d": 2e-3, "eval_samples": 1000, "ema_decay": 0.0, "device": "cpu", **train},
    })


def test_each_evaluation_reports_the_diagnostics(cache):
    trainer = GANTrainer(ring(ema_decay=0.9), cache_dir=cache)
    report = {**trainer.train_steps(30), **trainer.evaluate()}
    for key in ("loss_d", "loss_g", "d_real_acc", "d_fake_acc", "grad_norm_d", "grad_norm_g", "sn_max_g", "sn_max_d",
                "collapsed", "diversity_ratio", "coverage_share", "reverse_kl_raw", "reverse_kl_ema", "modes_floor"):
        assert key in report, key
    assert 0 <= report["d_real_acc"] <= 1 and 0 <= report["d_fake_acc"] <= 1
    assert report["grad_norm_d"] > 0 and report["sn_max_d"] > 0
    trainer.close()


def test_largest_spectral_norm():
    layer = nn.Linear(3, 3, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.diag(torch.tensor([0.5, 3.0, -2.0])))
    conv = nn.Conv2d(2, 2, 3)
    with torch.no_grad():
        conv.weight.zero_()
    assert largest_spectral_norm(nn.Sequential(layer, conv)) == pytest.approx(3.0)
    torch.manual_seed(0)
    sn = maybe_sn(nn.Linear(16, 16), True)  # the normalised weight, which is what the network applies
    assert largest_spectral_norm(sn) == pytest.approx(1.0, abs=0.05)


def test_collapse_flag_from_coverage_and_from_diversity():
    train = TrainConfig(collapse_coverage=0.5, collapse_diversity=0.2)
    floors = {"modes_floor": 8.0}
    assert collapse_report({"modes": 8.0}, floors, 1.0, train)["collapsed"] == 0.0
    assert collapse_report({"modes": 3.0}, floors, 1.0, train) == {"collapsed": 1.0, "diversity_ratio": 1.0, "coverage_share": 0.375}
    assert collapse_report({"modes": 8.0}, floors, 0.05, train)["collapsed"] == 1.0  # diverse modes, identical samples
    assert collapse_report({"fid": 3.0}, {}, 0.9, train) == {"collapsed": 0.0, "diversity_ratio": 0.9}
    assert sample_diversity(torch.ones(10, 2)) == 0.0 and sample_diversity(torch.eye(2)) == pytest.approx(2**0.5)


def test_a_generator_stuck_on_one_point_is_flagged_and_a_trained_one_is_not(cache):
    trainer = GANTrainer(ring("cgan"), cache_dir=cache)
    trainer.train_steps(400)
    healthy = trainer.evaluate()
    assert healthy["collapsed"] == 0.0 and healthy["modes"] == 8
    with torch.no_grad():  # every latent now maps to one point: the last layer ignores its input
        trainer.G.base.net[-1].weight.zero_()
    stuck = trainer.evaluate()
    assert stuck["collapsed"] == 1.0 and stuck["diversity_ratio"] < 0.01
    trainer.close()


def test_any_rank_without_a_process_group_is_the_local_flag():
    assert distributed.any_rank(True, torch.device("cpu"), 1) is True
    assert distributed.any_rank(False, torch.device("cpu"), 2) is False  # no group initialised: nothing to ask
    assert not distributed.active(2)


def job_text(tmp) -> str:
    return job_yaml(
        "forced-nan", storage=f"{tmp}/results", tracking_uri=f"sqlite:///{tmp}/mlflow.db",
        data={"batch_size": 128}, model={"width": 64},
        train={"steps": 200, "eval_every": 100, "eval_samples": 500, "ema_decay": 0.0},
        # 1e30 sends the weights to inf within a step: that trial must end as diverged, the other must finish.
        search={"scheduler": "fifo", "num_samples": 1, "space": {"train.lr_g": {"grid": [2.0e-3, 1.0e+30]}}})


def test_a_trial_forced_to_nan_is_diverged_while_its_search_completes(tmp_path, cache):
    (tmp_path / "job.yaml").write_text(job_text(tmp_path))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "GANFORGE_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("RAY_ADDRESS", None)
    res = subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", "job.yaml"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    table = res.stdout
    assert "diverged" in table.lower()
    assert "registered forced-nan version 1" in table

    from mlflow import MlflowClient

    version = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db").get_model_version_by_alias("forced-nan", "champion")
    assert version.tags["hp.train.lr_g"] == "0.002"  # the registered champion is never the diverged trial
