"""Issue 5, multi-worker trials: `resources.workers_per_trial: 2` runs a Ray TorchTrainer (DDP over gloo on CPU)
inside the Tune trial, on a cluster with exactly the CPUs its workers ask for, and registers the result.

One tiny ring-8 job through `run_job` on an embedded 2-CPU Ray: 2 workers x 1 CPU leaves nothing for the Tune
function, which must therefore hold no CPU of its own.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from orchestrator.spec import load_job_text

pytestmark = pytest.mark.timeout(240)

STEPS, EVAL_EVERY, BATCH = 60, 30, 64
JOB = """\
name: gf5-ddp
data: {{uri: "builtin:ring8", batch_size: {batch}}}
model: {{family: gan, latent_dim: 2, width: 32, depth: 2}}
train: {{steps: {steps}, eval_every: {eval_every}, eval_samples: 500, ema_decay: 0.0}}
search: {{scheduler: fifo, num_samples: 1}}
resources: {{cpus_per_trial: 1, workers_per_trial: 2}}
storage: {{uri: "{tmp}/results"}}
registry: {{model_name: gf5-ddp, tracking_uri: "{tracking_uri}"}}
"""


@pytest.fixture(scope="module")
def ddp_job(tmp_path_factory, mlflow_sqlite_uri):
    import ray

    from orchestrator.runner import run_job

    assert not ray.is_initialized(), "another test left Ray initialised in this process"
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING",
             runtime_env={"env_vars": {"RAY_AUTH_MODE": "disabled"}})
    tmp = tmp_path_factory.mktemp("ddp")
    try:
        job = load_job_text(JOB.format(batch=BATCH, steps=STEPS, eval_every=EVAL_EVERY, tmp=tmp,
                                       tracking_uri=mlflow_sqlite_uri))
        stream = io.StringIO()
        outcome = run_job(job, stream=stream, cache_dir=str(tmp / "cache"))
    finally:
        ray.shutdown()
    return tmp, outcome, stream.getvalue()


def reports(run_path: str) -> list[dict]:
    (path,) = Path(run_path).glob("trial_*/result.json")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_two_worker_trial_trains_and_registers(ddp_job):
    _, outcome, out = ddp_job
    (trial,) = outcome.ranking
    assert trial.status == "done" and trial.step == STEPS and trial.value is not None
    assert outcome.registered is not None and outcome.registered.promoted
    assert "registered gf5-ddp version 1" in out
    records = reports(outcome.run_path)
    assert [r["step"] for r in records] == [EVAL_EVERY, STEPS]
    assert all(r["workers"] == 2.0 for r in records), "rank 0 did not see a world of 2"


def test_each_rank_trains_on_its_own_half_of_the_data(ddp_job):
    tmp, outcome, _ = ddp_job
    from trainers.data import open_dataset

    rows = open_dataset("builtin:ring8", cache_dir=str(tmp / "cache")).info.num_rows
    for r in reports(outcome.run_path):
        # Rank 0 has consumed step x batch rows of its shard: with 2 ranks the shard is half the data set, so the
        # same rows make twice the epoch fraction a single worker would report.
        assert r["data_epoch"] == pytest.approx(r["step"] * BATCH / (rows // 2))


def test_checkpoints_come_from_rank_0_and_reach_tune(ddp_job):
    _, outcome, _ = ddp_job
    (trial,) = outcome.ranking
    train_runs = list(Path(outcome.run_path, "train").glob(f"ddp-*{trial.trial_id}"))
    assert len(train_runs) == 1
    # One checkpoint per evaluation: rank 0 writes it, the other rank reports without one.
    written = sorted(p for p in train_runs[0].glob("checkpoint_*") if p.is_dir())
    assert len(written) == STEPS // EVAL_EVERY
    for checkpoint in written:
        assert (checkpoint / "generator.safetensors").is_file() and (checkpoint / "grid.png").is_file()
    # Each is handed to Tune as the trial's own checkpoint, so PBT, retries and registration find it.
    best = trial.result.get_best_checkpoint("reverse_kl", "min")
    assert best is not None and Path(best.path).parent.name == f"trial_{trial.trial_id}"
    assert {p.name for p in Path(best.path).iterdir()} >= {"generator.safetensors", "generator.json", "state.pt"}


def test_the_trial_is_tracked_in_mlflow(ddp_job, mlflow_sqlite_uri):
    from mlflow import MlflowClient

    _, outcome, _ = ddp_job
    client = MlflowClient(tracking_uri=mlflow_sqlite_uri)
    experiment = client.get_experiment_by_name("ganforge/gf5-ddp")
    (child,) = [r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    assert child.info.status == "FINISHED"
    assert child.data.metrics["workers"] == 2.0 and child.data.metrics["step"] == STEPS
    version = client.get_model_version("gf5-ddp", outcome.registered.version)
    assert version.tags["trial_id"] == outcome.ranking[0].trial_id
