"""The own feature space has one scale per data set: whatever ran before on the machine, and held out from its fit."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.test_metrics import digits, digits_info, real_sampler
from trainers.metrics import build_evaluator
from trainers.metrics.split import FIT_ROWS_MAX, RealRows

N = 300


@pytest.fixture(scope="module")
def data():
    return digits()


@pytest.fixture(scope="module")
def fresh(data, tmp_path_factory):
    """An evaluator built on a machine whose cache is empty."""
    return build_evaluator(digits_info(), data, N, tmp_path_factory.mktemp("fresh-cache"))


def test_split_is_fixed_disjoint_and_independent_of_the_sample_count(data):
    x, y = data
    rows = RealRows.of(x, y)
    fit, held = set(rows.fit_rows()), set(rows.held_out_rows(len(x)))
    assert not fit & held and len(fit) + len(held) == len(x)
    assert len(fit) == min(FIT_ROWS_MAX, len(x) // 2)
    assert set(rows.held_out_rows(100)) <= set(rows.held_out_rows(300))  # a larger count extends, never reshuffles
    assert np.array_equal(RealRows.of(x, y).fit_rows(), rows.fit_rows())  # seeded: the same split every time


def test_same_generator_same_score_whatever_filled_the_cache(data, fresh, tmp_path):
    x, y = data
    # A machine whose cache an earlier job with another eval_samples filled ...
    earlier = build_evaluator(digits_info(), (x, y), 500, tmp_path / "used")
    assert not earlier.feature_net_loaded
    after = build_evaluator(digits_info(), (x, y), N, tmp_path / "used")
    # ... and a fresh machine
    assert after.feature_net_loaded and not fresh.feature_net_loaded  # one network for both sample counts
    assert after.floors == fresh.floors
    assert after.evaluate(real_sampler(x, seed=3)) == fresh.evaluate(real_sampler(x, seed=3))
    assert after.provenance == fresh.provenance
    assert after.provenance["fit_rows"] == len(x) // 2 and after.provenance["n_real"] == N


def test_copying_the_networks_training_rows_does_not_reach_the_floor(data, fresh):
    x, y = data
    rows = RealRows.of(x, y)
    ev = fresh
    fit_x = rows.fit()[0]
    held_x = rows.held_out(N)[0]
    copier = ev.evaluate(real_sampler(fit_x, seed=1))  # a generator that memorised the rows the network saw
    floor = ev.floors["fd_own_floor"]
    print(f"copying the fit rows: fd_own {copier['fd_own']:.3g}, floor {floor:.3g}")  # the README's figure (-s)
    assert ev.evaluate(real_sampler(held_x, seed=1234))["fd_own"] == pytest.approx(floor)  # the floor's own draw
    assert copier["fd_own"] > 1.2 * floor, (copier["fd_own"], floor)
    assert copier["kd_own"] > ev.floors["kd_own_floor"]


def test_report_and_run_record_say_how_scores_were_made():
    from orchestrator.report.data import ReportData
    from orchestrator.report.sections import provenance
    from trainers.metrics.declared import scoring_plan

    assert scoring_plan("image", "own", None, 1000, 1797) == {
        "suite": "image", "n_fake": 1000, "n_real": 1797 - 1797 // 2, "features": "own",
        "resize": "none (native resolution)", "fit_rows": 1797 // 2,
        "description": scoring_plan("image", "own", None, 1, 1797)["description"]}
    inception = scoring_plan("image", "inception", "/w", 50_000, 50_000)
    assert inception["n_real"] == 50_000  # nothing fitted on the data: the whole set is the reference, as in papers and inception["weights_file"] == "pt_inception-2015-12-05-6726825d.pth"
    assert "fit_rows" not in inception and "legacy_pytorch" in inception["resize"]

    data = ReportData(name="j", metric="fid", mode="min", trials=[], eval_samples=1000,
                      dataset={"kind": "image", "rows": 50_000}, resolved_spec={"metrics": {"features": "inception"}})
    page = provenance.render(data)
    assert "Comparable with published FIDs" in page and "legacy_pytorch" in page and "1,000 real samples" in page
    own = provenance.render(ReportData(name="j", metric="fd_own", mode="min", trials=[], eval_samples=1000,
                                       dataset={"kind": "image", "rows": 1797}))
    assert "not with papers" in own and "fitted on 898 rows" in own and "899 held-out real" in own
