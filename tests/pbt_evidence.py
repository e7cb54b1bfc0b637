"""What a PBT donor's checkpoints on disk say about its weights, for tests that check a recipient copied them.

A trial's reports are no full history under PBT: Tune's result.json of a restarted trial loses the report that
triggered the restart, and a trial process that PBT pauses may end before its MLflow batch is flushed. The donor's
checkpoints stay (PBT keeps them all), so the digest of the weights each one holds is read from there.
"""
from __future__ import annotations

from pathlib import Path

import pytest


def checkpointed_fingerprints(run_path: str, trial_id: str) -> dict[float, float]:
    """{step: fingerprint} of the generator in every checkpoint Tune kept for the trial (runs without EMA only:
    the exported generator must be the raw one the trial's `fingerprint` digests)."""
    from trainers.checkpoint import fingerprint
    from trainers.export import load_generator_dir

    out = {}
    for checkpoint in Path(run_path, f"trial_{trial_id}").glob("checkpoint_*"):
        generator = load_generator_dir(checkpoint)
        assert generator.meta["weights"] == "raw", f"{checkpoint} exports its EMA weights, not the trained ones"
        out[float(generator.meta["step"])] = fingerprint(generator)
    return out


def donor_fingerprints(run_path: str, trial_id: str, reports: list[dict]) -> dict[float, float]:
    """{step: fingerprint} of the donor's weights, from its reports and its checkpoints, which must agree."""
    checkpointed = checkpointed_fingerprints(run_path, trial_id)
    reported = {float(r["step"]): r["fingerprint"] for r in reports if "fingerprint" in r}
    for step in reported.keys() & checkpointed.keys():
        assert reported[step] == pytest.approx(checkpointed[step], rel=1e-12), \
            f"trial {trial_id} reported other weights at step {step} than it checkpointed"
    return reported | checkpointed
