"""MLflow tracking from the driver and from trial processes: one run per trial across restores, no lost records
across a server outage, concurrent trial processes on one SQLite file."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from orchestrator.tracking.client import client_for
from orchestrator.tracking.job_run import JobTracker
from orchestrator.tracking.trial_run import TrialTracker

REPO_ROOT = Path(__file__).resolve().parents[1]


def metric_steps(client, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_job_tracker_records_spec_yaml_and_ranking(mlflow_sqlite_uri, tmp_path):
    uri = mlflow_sqlite_uri
    job = JobTracker(uri, "jobs")
    spec = {"name": "tiny", "train": {"steps": 5, "lr_g": 2e-4}, "search": {"space": {"train.loss,train.n_critic": {"choice": [["ns", 1]]}}}}
    parent = job.start("tiny", "name: tiny\ntrain: {steps: 5}\n", spec)
    trial = TrialTracker(uri, "jobs", parent, "trial_0001", {"train.lr_g": 2e-4})
    trial.finish()
    job.log_summary([{"trial_id": "trial_0001", "fid": 3.5, "status": "done"}], {"best_fid": 3.5, "trials_done": 1})
    job.end()

    client = client_for(uri)
    run = client.get_run(parent)
    assert run.info.status == "FINISHED" and run.data.tags["ganforge.job"] == "tiny"
    assert run.data.params == {"name": "tiny", "train.steps": "5", "train.lr_g": "0.0002",
                               "search.space.train.loss_train.n_critic.choice": '[["ns", 1]]'}  # "," is not a key character
    assert run.data.metrics == {"best_fid": 3.5, "trials_done": 1.0}
    assert sorted(f.path for f in client.list_artifacts(parent)) == ["job.yaml", "resolved_spec.json", "trials.csv", "trials.json"]
    local = Path(client.download_artifacts(parent, "trials.json", str(tmp_path)))
    assert json.loads(local.read_text())[0]["trial_id"] == "trial_0001"
    assert job.trial_run_id("trial_0001") == trial.run_id and job.trial_run_id("nope") is None

    resumed = JobTracker(uri, "jobs")
    assert resumed.start("tiny", "name: tiny\n", {}, run_id=parent) == parent
    assert client.get_run(parent).info.status == "RUNNING"


def test_a_restored_trial_continues_its_own_run(mlflow_tracking_uri):
    job = JobTracker(mlflow_tracking_uri, "restore")
    parent = job.start("restore", "name: restore\n", {})
    first = TrialTracker(mlflow_tracking_uri, "restore", parent, "trial_7", {"train.lr_g": 1e-4, "train.beta1": 0.5})
    first.log_metrics({"fid": 9.0}, step=100)
    first.finish("FAILED")  # the worker died; Tune restores the trial in a new process

    again = TrialTracker(mlflow_tracking_uri, "restore", parent, "trial_7", {"train.lr_g": 3e-4, "train.beta1": 0.5})
    again.log_metrics({"fid": 7.0}, step=200)
    again.finish()
    other = TrialTracker(mlflow_tracking_uri, "restore", parent, "trial_8", {})
    other.finish()

    client = client_for(mlflow_tracking_uri)
    assert again.run_id == first.run_id != other.run_id
    run = client.get_run(again.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == parent
    assert metric_steps(client, again.run_id, "fid") == [100, 200]
    # params are write-once in MLflow: the first value stays, the latest (a PBT exploit, say) is a tag
    assert run.data.params["train.lr_g"] == "0.0001" and run.data.tags["ganforge.param.train.lr_g"] == "0.0003"


def test_metrics_and_artifacts_survive_a_server_outage(mlflow_server, tmp_path, caplog):
    uri = mlflow_server.tracking_uri
    job = JobTracker(uri, "outage")
    parent = job.start("outage", "name: outage\n", {})
    trial = TrialTracker(uri, "outage", parent, "t1", {"train.lr_g": 1e-4}, retry_interval_s=0.2, flush_timeout_s=120)
    doomed = TrialTracker(uri, "outage", parent, "t2", {}, flush_timeout_s=0.5)  # ends while the server is down
    grid = tmp_path / "grid.png"
    trial.log_metrics({"fid": 10.0, "loss_d": 0.5}, step=1)
    assert trial.flush(timeout_s=60) and trial.pending == 0  # delivered by the sender thread

    mlflow_server.stop()
    try:
        for step in (2, 3, 4):
            trial.log_metrics({"fid": 10.0 - step, "loss_d": 0.5}, step=step)
        grid.write_bytes(b"grid at step 4")
        trial.log_artifact(grid, artifact_path="grids/step_4")
        grid.write_bytes(b"overwritten by the next evaluation")  # the buffered copy must be the step-4 file
        assert trial.pending == 7  # 3 steps x 2 metrics + 1 artifact, held while the server is down
        doomed.log_metrics({"fid": 1.0}, step=1)
        doomed.finish()  # gives up after its flush timeout instead of hanging the trial
        assert doomed.pending == 1 and "still unreachable" in caplog.text
    finally:
        mlflow_server.start()

    trial.log_metrics({"fid": 5.0, "loss_d": 0.5}, step=5)
    trial.finish()
    assert trial.pending == 0

    client = client_for(uri)
    assert metric_steps(client, trial.run_id, "fid") == [1, 2, 3, 4, 5]
    assert metric_steps(client, trial.run_id, "loss_d") == [1, 2, 3, 4, 5]
    local = Path(client.download_artifacts(trial.run_id, "grids/step_4/grid.png", str(tmp_path / "dl")))
    assert local.read_bytes() == b"grid at step 4"
    assert client.get_run(trial.run_id).info.status == "FINISHED"


TRIAL_PROCESS = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from orchestrator.tracking.trial_run import TrialTracker

    uri, parent, trial_id = sys.argv[1:4]
    tracker = TrialTracker(uri, "concurrent", parent, trial_id, {"trial": trial_id})
    for step in range(20):
        tracker.log_metrics({"fid": float(step), "loss_g": 1.0}, step=step)
    Path("grid.png").write_bytes(trial_id.encode())
    tracker.log_artifact("grid.png", artifact_path="grids")
    tracker.finish()
    print(tracker.run_id)
    """
)


def test_concurrent_trial_processes_share_one_sqlite_file(mlflow_sqlite_uri, tmp_path):
    uri = mlflow_sqlite_uri
    db_dir = Path(uri[len("sqlite:///"):]).parent
    parent = JobTracker(uri, "concurrent").start("concurrent", "name: concurrent\n", {})
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    procs = []
    for i in range(3):
        workdir = tmp_path / f"worker{i}"  # Ray runs each trial in its own directory
        workdir.mkdir()
        procs.append(subprocess.Popen([sys.executable, "-c", TRIAL_PROCESS, uri, parent, f"trial_{i}"], cwd=workdir, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]
    assert all(code == 0 for code, _, _ in results), [err[-2000:] for _, _, err in results]

    client = client_for(uri)
    run_ids = [out.strip().splitlines()[-1] for _, out, _ in results]
    assert len(set(run_ids)) == 3
    for i, run_id in enumerate(run_ids):
        assert metric_steps(client, run_id, "fid") == list(range(20))
        assert metric_steps(client, run_id, "loss_g") == list(range(20))
        local = Path(client.download_artifacts(run_id, "grids/grid.png", str(tmp_path / f"dl{i}")))
        assert local.read_bytes() == f"trial_{i}".encode()
    # artifacts of a SQLite store sit beside the database, not in each worker's working directory
    assert (db_dir / "mlruns").is_dir() and not list(tmp_path.glob("worker*/mlruns"))


def test_http_policy_reaches_mlflow_without_touching_the_process_environment(monkeypatch):
    """setenv/unsetenv while native code in another thread calls getenv can crash the process (glibc), so the policy
    is held in-process: MLflow reads it, os.environ never changes, a user's own setting wins."""
    import threading

    from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR, MLFLOW_HTTP_REQUEST_MAX_RETRIES

    from orchestrator.tracking.client import DRIVER_HTTP_POLICY, TRIAL_HTTP_POLICY, http_policy

    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"):
        monkeypatch.delenv(name, raising=False)
    default = MLFLOW_HTTP_REQUEST_MAX_RETRIES.get()
    before = dict(os.environ)
    seen_in_thread = []
    with http_policy(TRIAL_HTTP_POLICY):
        assert MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 0 and MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.get() is False
        assert dict(os.environ) == before
        with http_policy(DRIVER_HTTP_POLICY):  # overlapping blocks: the first one's value holds until both end
            thread = threading.Thread(target=lambda: seen_in_thread.append(MLFLOW_HTTP_REQUEST_MAX_RETRIES.get()))
            thread.start()
            thread.join()
        assert MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 0
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
        assert MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 3
        monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    assert seen_in_thread == [0]
    assert MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == default and MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.get() is True
