"""`metrics.features: inception`: the weights file is found, loaded without unpickling, and scores under fid/kid.

The real TTUR/pytorch-fid weights cannot be downloaded here, so the test writes a file of the same format (a torch
state dict with the same keys and shapes) holding random values. Scores from it mean nothing; the path is what is
tested: finding, loading, resizing, scoring, recording.
"""
from __future__ import annotations

import math
import pickle

import pytest
import torch

from tests.test_metrics import digits, digits_info, real_sampler
from trainers.metrics import build_evaluator
from trainers.metrics.inception import (
    INCEPTION_WEIGHTS,
    FIDInceptionV3,
    InceptionWeightsMissing,
    legacy_pytorch_resize,
    load_inception,
    sha256_of,
)

N = 8  # Inception at 299x299 on one CPU thread: a handful of samples keeps this to seconds


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    torch.save(FIDInceptionV3().state_dict(), folder / INCEPTION_WEIGHTS)  # the format, random values
    return folder


def test_inception_scores_under_its_own_names_and_records_its_weights(weights_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_WEIGHTS", str(weights_dir))  # a folder holding the file
    x, y = digits()
    with pytest.warns(UserWarning, match="not comparable with published numbers"):
        ev = build_evaluator(digits_info(), (x, y), N, tmp_path, features="inception")
    assert ev.default_metric == "fid"
    scores = ev.evaluate(real_sampler(x, seed=1))
    assert {"fid", "kid", "precision", "recall", "density", "coverage"} == set(scores)  # no classifier: no classes
    assert "fd_own" not in scores and set(ev.floors) == {f"{k}_floor" for k in scores}
    assert all(math.isfinite(v) for v in scores.values())
    p = ev.provenance
    assert p["features"] == "inception" and p["weights_file"] == INCEPTION_WEIGHTS
    assert p["weights_sha256"] == sha256_of(weights_dir / INCEPTION_WEIGHTS) and p["weights_match_ttur"] is False
    assert p["n_fake"] == N and p["n_real"] == N and "legacy_pytorch" in p["resize"] and "fit_rows" not in p


def test_missing_weights_name_the_expected_file(tmp_path, monkeypatch):
    monkeypatch.delenv("GANFORGE_WEIGHTS", raising=False)
    x, y = digits()
    with pytest.raises(InceptionWeightsMissing, match=f"{INCEPTION_WEIGHTS}.*not found at metrics.weights"):
        build_evaluator(digits_info(), (x, y), N, tmp_path, features="inception", weights=str(tmp_path / "none"))


def test_weights_never_unpickle_objects(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("unpickled!",))

    bad = tmp_path / INCEPTION_WEIGHTS
    with open(bad, "wb") as f:
        pickle.dump({"Conv2d_1a_3x3.conv.weight": Payload()}, f)
    with pytest.raises(ValueError, match="not a readable Inception state dict"):
        load_inception(bad)
    torch.save({"fc.weight": torch.zeros(3)}, bad)  # tensors, but not this network's
    with pytest.raises(ValueError, match=f"not {INCEPTION_WEIGHTS}'s layout"):
        load_inception(bad)


def test_resize_is_clean_fids_legacy_pytorch():
    x = torch.linspace(-1, 1, 64).reshape(1, 1, 8, 8)
    out = legacy_pytorch_resize(x)
    assert out.shape == (1, 3, 299, 299)
    assert torch.equal(out[:, 0], out[:, 2])  # grey replicated to RGB
    expected = torch.nn.functional.interpolate((x + 1) * 127.5, size=(299, 299), mode="bilinear", align_corners=False)
    assert torch.allclose(out[:, :1], expected / 255 * 2 - 1, atol=1e-6)
