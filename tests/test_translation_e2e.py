"""End to end for translation: `ganforge run jobs/digits-cyclegan.yaml` (shortened) through embedded Ray and MLflow to
a registered translator, then `ganforge translate` and `models describe` on it, with pickle loading disabled."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def ganforge(*args, cwd, cache, env=None, timeout=600):
    full_env = {**os.environ, "RAY_AUTH_MODE": "disabled", "GANFORGE_CACHE": str(cache),
                "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/mlflow.db", "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false",
                **(env or {})}
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def test_cyclegan_job_registers_a_translator_that_translate_applies(tmp_path, cache):
    run = ganforge("run", str(ROOT / "jobs" / "digits-cyclegan.yaml"), "--set", "search.num_samples=1",
                   "--set", "train.steps=20", "--set", "train.eval_every=10", "--set", "report.enabled=false",
                   "--set", f"storage.uri={tmp_path}/results", cwd=tmp_path, cache=cache)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "registered digits-cyclegan version 1" in run.stdout and "fd_own" in run.stdout

    digits = np.stack([np.eye(8, dtype=np.uint8) * 255, np.zeros((8, 8), np.uint8)])
    np.save(tmp_path / "in.npy", digits)
    res = ganforge("translate", "digits-cyclegan@champion", "in.npy", "--direction", "BtoA", "--out", "out.npy",
                   cwd=tmp_path, cache=cache)
    assert res.returncode == 0, res.stderr
    out = np.load(tmp_path / "out.npy", allow_pickle=False)
    assert out.shape == (2, 8, 8, 1) and out.dtype == np.uint8

    described = ganforge("models", "describe", "digits-cyclegan", "--json", cwd=tmp_path, cache=cache)
    assert described.returncode == 0, described.stderr
    lineage = json.loads(described.stdout)["lineage"]
    assert lineage["model_kind"].startswith("translator (cyclegan: AtoB, BtoA")
    assert lineage["data"]["kind"] == "unpaired"

    import mlflow  # the registered MLflow model serves translations too (models-from-code, no pickle)

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    served = mlflow.pyfunc.load_model("models:/digits-cyclegan@champion").predict(digits[..., None],
                                                                                   params={"direction": "BtoA"})
    assert np.array_equal(np.clip(np.rint((served[:, 0] + 1) * 127.5), 0, 255).astype(np.uint8), out[..., 0])

    # `ganforge evaluate` scores noise samplers; a translator's scores are its trial's (one line, exit 2)
    refused = ganforge("evaluate", "digits-cyclegan@champion", "--data", "builtin:digits-inverted", "-n", "10",
                       cwd=tmp_path, cache=cache)
    assert refused.returncode == 2 and "is a translator" in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
