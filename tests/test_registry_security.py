"""Registry security: pulls work with pickle forbidden, versions hold no pickle, secrets never reach MLflow,
artifact paths cannot escape."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from orchestrator.errors import RegistryError
from orchestrator.tracking.client import client_for
from orchestrator.tracking.job_run import JobTracker
from orchestrator.tracking.register import register_champion
from orchestrator.tracking.trial_run import TrialTracker
from tests.test_registry import all_artifacts, candidate, make_checkpoint, unique_name, version_repo
from trainers.export import generate

REPO_ROOT = Path(__file__).resolve().parents[1]

# Run in a fresh interpreter: pickle is forbidden to MLflow by its own switch and booby-trapped for everyone else.
PULL_SCRIPT = textwrap.dedent(
    """
    import json, pickle, sys

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle was used on the model-pull path")

    pickle.load = pickle.loads = pickle.Unpickler = forbidden
    import torch
    torch.load = forbidden

    import mlflow.pyfunc
    import numpy as np
    import pandas as pd
    from orchestrator.tracking.pull import load_generator
    from trainers.export import generate

    name, uri = sys.argv[1], sys.argv[2]
    generator = load_generator(f"{name}@champion", tracking_uri=uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    by_seed = model.predict(pd.DataFrame({"seed": [0, 5]}))
    latents = np.linspace(-1, 1, 2 * generator.latent_dim).reshape(2, -1)
    by_latent = model.predict(pd.DataFrame({"latent": list(latents)}))
    truncated = model.predict(pd.DataFrame({"seed": [0, 5]}), params={"truncation": 0.5})
    print(json.dumps({
        "training": generator.training,
        "kind": generator.data_info.kind,
        "module": generate(generator, 3, seed=2).tolist(),
        "by_seed": by_seed.tolist(),
        "by_latent": by_latent.tolist(),
        "latent_dim": generator.latent_dim,
        "truncated": generate(generator, 1, seed=5, truncation=0.5).tolist(),
        "truncated_pyfunc": truncated[1:].tolist(),
    }))
    """
)


def test_fresh_process_pulls_and_samples_with_pickle_forbidden(mlflow_tracking_uri, tmp_path):
    name = unique_name("nopickle")
    checkpoint, generator = make_checkpoint(tmp_path / "ckpt")
    register_champion(mlflow_tracking_uri, name, "champion", candidate(checkpoint, 2.0), "name: x\n", {})

    files = all_artifacts(version_repo(mlflow_tracking_uri, name, "1"))
    assert files and not [f for f in files if f.endswith((".pkl", ".pickle"))]

    env = {**os.environ, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false", "GANFORGE_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run([sys.executable, "-c", PULL_SCRIPT, name, mlflow_tracking_uri], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])

    assert out["training"] is False and out["kind"] == "image"
    np.testing.assert_allclose(out["module"], generate(generator, 3, seed=2).numpy(), atol=1e-6)
    # The pyfunc draws each row's sample from that row's seed: row "5" is what `sample --seed 5 -n 1` gives.
    assert np.asarray(out["by_seed"]).shape == (2, 1, 8, 8)
    np.testing.assert_allclose(out["by_seed"][1], generate(generator, 1, seed=5).numpy()[0], atol=1e-6)
    np.testing.assert_allclose(out["truncated_pyfunc"], out["truncated"], atol=1e-6)  # params reach the sampler
    latents = np.linspace(-1, 1, 2 * out["latent_dim"]).reshape(2, -1)
    import torch

    with torch.no_grad():
        expected = generator(torch.tensor(latents, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(out["by_latent"], expected, atol=1e-6)


def test_a_secret_the_yaml_refers_to_never_reaches_mlflow(mlflow_tracking_uri, s3_endpoint, s3_bucket, s3_env_vars,
                                                          tmp_path, monkeypatch, caplog):
    import boto3

    secret = "s3cr3t-Value-9f8e7d6c"
    monkeypatch.setenv("GANFORGE_TEST_STORAGE_CREDENTIAL", secret)  # non-secret-looking name: found via the YAML
    job_yaml = "name: leaky\nstorage:\n  uri: s3://bucket/x\n  options: {key: ${GANFORGE_TEST_STORAGE_CREDENTIAL}}\n"
    # What a careless caller might pass after expanding the reference: every channel carries the value.
    resolved = {"name": "leaky", "storage": {"uri": "s3://bucket/x", "options": {"key": secret}}}
    caplog.set_level(logging.DEBUG)

    job = JobTracker(mlflow_tracking_uri, "secrets")
    parent = job.start("leaky", job_yaml, resolved, tags={"note": secret})
    trial = TrialTracker(mlflow_tracking_uri, "secrets", parent, "t1", {"train.lr_g": 1e-3, "storage.key": secret})
    trial.log_metrics({"fid": 1.0}, step=1)
    trial.finish()
    job.log_summary([{"trial_id": "t1", "fid": 1.0, "config": {"storage.key": secret}}], {"best_fid": 1.0})
    job.end()
    name = unique_name("secrets")
    checkpoint, _ = make_checkpoint(tmp_path / "ckpt")
    cand = candidate(checkpoint, 1.0, "t1", trial.run_id, **{"storage.key": secret})
    register_champion(mlflow_tracking_uri, name, "champion", cand, job_yaml, {"resolved_spec": resolved, "job": "leaky"})

    client = client_for(mlflow_tracking_uri)
    seen: list[str] = []
    for run_id in (parent, trial.run_id):
        run = client.get_run(run_id)
        seen += [json.dumps(run.data.params), json.dumps(run.data.tags)]
        local = client.download_artifacts(run_id, "", str(tmp_path / f"run-{run_id}"))
        seen += [p.read_text(errors="replace") for p in Path(local).rglob("*") if p.is_file()]
    mv = client.get_model_version(name, "1")
    seen += [json.dumps(mv.tags), mv.description or ""]
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id=s3_env_vars["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=s3_env_vars["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=s3_bucket, Prefix="mlartifacts/"):
        for obj in page.get("Contents", []):
            seen.append(s3.get_object(Bucket=s3_bucket, Key=obj["Key"])["Body"].read().decode("latin-1"))
    seen += [record.getMessage() for record in caplog.records]

    assert len(seen) > 10
    assert not [text[:200] for text in seen if secret in text]
    assert any("***" in text for text in seen), "the redacted placeholder is recorded in place of the secret"
    assert "GANFORGE_TEST_STORAGE_CREDENTIAL" in client.get_run(parent).data.tags["ganforge.redact_env"]


def test_artifact_paths_cannot_escape(mlflow_tracking_uri, tmp_path):
    job = JobTracker(mlflow_tracking_uri, "paths")
    parent = job.start("paths", "name: paths\n", {})
    trial = TrialTracker(mlflow_tracking_uri, "paths", parent, "t1", {})
    grid = tmp_path / "grid.png"
    grid.write_bytes(b"png")
    for bad in ("../escape", "/abs/path", "a/../../b", "C:\\x"):
        with pytest.raises(RegistryError, match="is not a plain relative path"):
            trial.log_artifact(grid, artifact_path=bad)
    trial.log_artifact(grid, artifact_path="grids/step_0000010")
    trial.finish()
    assert [f.path for f in client_for(mlflow_tracking_uri).list_artifacts(trial.run_id, "grids/step_0000010")] == ["grids/step_0000010/grid.png"]


@pytest.mark.parametrize("bad", ["../etc", "a b", "-x", ""])
def test_bad_model_names_and_aliases_are_refused_before_any_request(bad, tmp_path):
    from orchestrator.errors import RegistryUsageError

    checkpoint, _ = make_checkpoint(tmp_path / "ckpt", grid=False)
    with pytest.raises(RegistryUsageError):
        register_champion("http://127.0.0.1:9", bad or "", "champion", candidate(checkpoint, 1.0), "", {})
    with pytest.raises(RegistryUsageError):
        register_champion("http://127.0.0.1:9", "fine", bad or "v1", candidate(checkpoint, 1.0), "", {})

