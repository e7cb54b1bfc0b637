"""End to end: `ganforge run` of a tiny job through embedded Ray, then the MLflow state and the pulled samples."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

JOB = """\
name: tiny-ring
data: {{uri: "builtin:ring8", batch_size: 128}}
model: {{family: gan, latent_dim: 2, width: 128, depth: 2}}
train: {{steps: 800, eval_every: 400, eval_samples: 1000, ema_decay: 0.0, lr_g: 2.0e-3, lr_d: 2.0e-3}}
search:
  scheduler: fifo
  num_samples: 3
  space:
    train.seed: {{randint: [0, 1000]}}
    train.loss,train.n_critic: {{choice: [[ns, 1], [hinge, 1]]}}
resources: {{cpus_per_trial: 1}}
storage: {{uri: "{tmp}/results"}}
registry: {{model_name: tiny-ring-gan, tracking_uri: "sqlite:///{tmp}/mlflow.db"}}
"""


def ganforge(*args, cwd, env=None, timeout=600):
    full_env = {**os.environ, "RAY_AUTH_MODE": "disabled", "GANFORGE_CACHE": str(cwd / "cache"), **(env or {})}
    full_env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def finished_job(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    (tmp / "job.yaml").write_text(JOB.format(tmp=tmp))
    res = ganforge("run", "job.yaml", cwd=tmp)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return tmp, res


def test_run_reports_ranked_trials_and_registers(finished_job):
    tmp, res = finished_job
    out = res.stdout
    assert "rank" in out and "reverse_kl" in out
    assert "registered tiny-ring-gan version 1" in out and "@champion" in out
    assert (tmp / "results").is_dir()


def test_mlflow_holds_parent_child_runs_and_version(finished_job):
    tmp, _ = finished_job
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp}/mlflow.db")
    exp = client.get_experiment_by_name("ganforge/tiny-ring")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 3
    for child in children:
        assert "train.seed" in child.data.params
        # how its scores were made: suite and sample counts beside each trial's scores
        assert child.data.params["metrics.suite"] == "points" and child.data.params["metrics.n_fake"] == "1000"
        history = client.get_metric_history(child.info.run_id, "reverse_kl")
        assert len(history) >= 1
    version = client.get_model_version_by_alias("tiny-ring-gan", "champion")
    assert str(version.version) == "1"
    assert version.tags.get("ganforge.metric") == "reverse_kl" or "reverse_kl" in json.dumps(version.tags)


def test_pull_and_sample_without_pickle(finished_job):
    tmp, _ = finished_job
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db", "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false"}
    pulled = ganforge("models", "pull", "tiny-ring-gan@champion", "--out", str(tmp / "model"), cwd=tmp, env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert (tmp / "model" / "generator.safetensors").is_file()
    res = ganforge("sample", "tiny-ring-gan@champion", "-n", "500", "--seed", "3", "--out", str(tmp / "s.npy"), cwd=tmp, env=env)
    assert res.returncode == 0, res.stderr
    samples = np.load(tmp / "s.npy")
    assert samples.shape == (500, 2) and samples.dtype == np.float32
    # A trained ring generator puts its mass near the unit circle.
    radius = np.linalg.norm(samples, axis=1)
    assert np.median(np.abs(radius - 1.0)) < 0.3
    listed = ganforge("models", "list", cwd=tmp, env=env)
    assert "tiny-ring-gan" in listed.stdout


def test_rerun_moves_alias_only_if_better(finished_job):
    tmp, _ = finished_job
    # A crippled rerun (few steps) must not take the alias from version 1.
    res = ganforge("run", "job.yaml", "--set", "train.steps=2", "--set", "train.eval_every=2",
                   "--set", "search.num_samples=1", cwd=tmp)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "version 2" in res.stdout and "challenger" in res.stdout
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp}/mlflow.db")
    assert str(client.get_model_version_by_alias("tiny-ring-gan", "champion").version) == "1"
