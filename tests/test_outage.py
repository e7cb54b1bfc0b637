"""An MLflow outage in the middle of a job: trials keep training, buffer their logging, and nothing is lost.

The job runs against a real `mlflow server` (SQLite backend, S3 artifacts on moto). The server is stopped once the
job's parent run exists and started again only after trials have reported through the outage.
"""
import glob
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from mlflow import MlflowClient

from tests.fixtures.jobs import job_yaml

def job_text(tmp, uri: str) -> str:
    return job_yaml("outage", storage=f"{tmp}/results", tracking_uri=uri, model_name="outage-gan",
                    train={"steps": 240, "eval_every": 40, "eval_samples": 500, "ema_decay": 0.0},
                    search={"scheduler": "fifo", "num_samples": 2,
                            "space": {"train.lr_g": {"choice": [1.0e-3, 2.0e-3]}}})


def _wait(predicate, timeout_s: float, what: str, proc, output: list[str]):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            time.sleep(0.5)
            raise AssertionError(f"job exited early while waiting for {what}: {''.join(output)[-3000:]}")
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _reported(tmp: Path) -> int:
    """Evaluations trials have reported (read from Tune's result files, not from MLflow)."""
    return sum(len(Path(p).read_text().splitlines()) for p in glob.glob(f"{tmp}/results/run-*/trial_*/result.json"))


def test_tracking_outage_mid_job_loses_nothing(tmp_path, mlflow_server, s3_env_vars):
    uri = mlflow_server.tracking_uri
    (tmp_path / "job.yaml").write_text(job_text(tmp_path, uri))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "GANFORGE_CACHE": str(tmp_path / "cache"), **s3_env_vars,
           "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    env.pop("MLFLOW_TRACKING_URI", None)
    client = MlflowClient(tracking_uri=uri)
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", "job.yaml"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        # The job prints where its results go once its MLflow parent run is fully set up: then pull the plug.
        _wait(lambda: "results in" in "".join(output), 180, "the job to start", proc, output)
        mlflow_server.stop()
        _wait(lambda: _reported(tmp_path) >= 4, 240, "trial reports during the outage", proc, output)
        outage_reports = _reported(tmp_path)
        mlflow_server.start()
        proc.wait(timeout=400)
        reader.join(timeout=10)
        out = "".join(output)
    finally:
        if proc.poll() is None:
            proc.kill()
        mlflow_server.start()
    assert proc.returncode == 0, out[-3000:]
    assert outage_reports >= 4
    assert "registered outage-gan version" in out

    exp = client.get_experiment_by_name("ganforge/outage")
    children = [r for r in client.search_runs([exp.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 2
    for child in children:
        # 240 steps / eval_every 40 = 6 evaluations, every one logged despite the outage.
        history = client.get_metric_history(child.info.run_id, "reverse_kl")
        assert sorted(m.step for m in history) == [40, 80, 120, 160, 200, 240]

    # The best stored checkpoint can be registered again later from storage alone.
    res = subprocess.run([sys.executable, "-m", "orchestrator.cli", "register", "job.yaml"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "registered outage-gan version 2" in res.stdout
