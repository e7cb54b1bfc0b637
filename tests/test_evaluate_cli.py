"""`ganforge evaluate`: a generator folder scored against a data set with the search's suites, beside the floors."""
from __future__ import annotations

import json

import pytest

from orchestrator.cli import main
from trainers.config import GANConfig
from trainers.export import save_generator
from trainers.loop import GANTrainer
from trainers.metrics.inception import INCEPTION_WEIGHTS


def _generator_dir(tmp_path, uri: str, family: str):
    cfg = GANConfig.model_validate({"data": {"uri": uri, "batch_size": 32},
                                    "model": {"family": family, "latent_dim": 8, "width": 8},
                                    "train": {"steps": 20, "eval_samples": 200, "device": "cpu"}})
    trainer = GANTrainer(cfg)
    try:
        trainer.train_steps(20)
        return save_generator(trainer.G, trainer.arch, trainer.info, tmp_path / f"gen-{family}"), trainer
    except BaseException:
        trainer.close()
        raise


@pytest.fixture(scope="module")
def digits_generator(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("GANFORGE_CACHE", str(tmp_path_factory.mktemp("cache")))
    folder, trainer = _generator_dir(tmp_path_factory.mktemp("model"), "builtin:digits", "dcgan")
    trainer.close()
    yield folder
    mp.undo()


def test_evaluate_prints_scores_beside_floors(digits_generator, capsys, monkeypatch):
    assert main(["evaluate", str(digits_generator), "--data", "builtin:digits", "-n", "200", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["default_metric"] == "fd_own"
    assert set(out["scores"]) >= {"fd_own", "kd_own", "precision", "recall", "class_coverage"}
    assert set(out["floors"]) == {f"{name}_floor" for name in out["scores"]}
    assert out["scores"]["fd_own"] > out["floors"]["fd_own_floor"]  # 20 steps of training are far from the data
    p = out["provenance"]
    assert p["features"] == "own" and p["n_fake"] == 200 and p["n_real"] == 200 and p["fit_rows"] == 1797 // 2

    # the same samples (seeded latents) and the cached network: the same numbers in the table
    assert main(["evaluate", str(digits_generator), "--data", "builtin:digits", "-n", "200"]) == 0
    table = capsys.readouterr().out
    assert f"{out['scores']['fd_own']:.4g}" in table and f"{out['floors']['fd_own_floor']:.4g}" in table
    assert "* fd_own" in table


def test_evaluate_refuses_what_it_cannot_score(digits_generator, capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("GANFORGE_WEIGHTS", raising=False)
    code = main(["evaluate", str(digits_generator), "--data", "builtin:digits", "-n", "50", "--features", "inception",
                 "--weights", str(tmp_path)])
    assert code == 2 and INCEPTION_WEIGHTS in capsys.readouterr().err
    assert main(["evaluate", str(digits_generator), "--data", "builtin:ring8", "-n", "50"]) == 2
    assert "makes image samples of shape (8, 8, 1); --data builtin:ring8 holds points" in capsys.readouterr().err
    assert main(["evaluate", str(digits_generator), "--data", "builtin:digits", "--features", "incepton"]) == 2
    assert "did you mean 'inception'" in capsys.readouterr().err
