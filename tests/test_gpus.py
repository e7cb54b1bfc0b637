"""Issue 19, GPUs through Ray: `resources.gpus_per_trial` on the session head, which declares two logical GPUs.

Ray places trials by the GPUs they ask for and gives each its own device (CUDA_VISIBLE_DEVICES); this machine has no
CUDA, so every trial must also say, in one line, that it trains on the CPU instead (`train.device: auto`). The jobs
run in this process as a driver joined to the head (`cluster.address`), as `ganforge run` on a cluster node does.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.spec import load_job_text
from tests.fixtures.jobs import job_yaml
from tests.fixtures.ray_head import LOGICAL_GPUS

pytestmark = pytest.mark.timeout(300)

# Each trial trains long enough to still be running when the last one that fits beside it has started: the trial
# processes start one to two seconds apart (their imports share 2 cores), and with 400 steps (~1 s) the first had
# once finished before the fourth began. A quarter CPU each leaves the GPUs as the only limit on how many run at once.
STEPS = 2000


def job_text(name: str, trials: int, gpus: float, tmp, tracking_uri: str, address: str) -> str:
    return job_yaml(name, storage=f"{tmp}/results", tracking_uri=tracking_uri, register=False, cluster=address,
                    train={"steps": STEPS, "eval_every": STEPS // 2, "eval_samples": 200, "ema_decay": 0.0},
                    search={"scheduler": "fifo", "num_samples": trials,
                            "space": {"train.lr_g": {"loguniform": [1.0e-4, 1.0e-3]}}},
                    resources={"cpus_per_trial": 0.25, "gpus_per_trial": gpus})
NO_CUDA = "finds no usable CUDA device; training on CPU"


@dataclass
class GpuJob:
    gpus_per_trial: float
    trials: int
    run_path: str
    spans: dict[str, tuple[float, float]]  # trial id -> (started_at, last report) as the trial recorded them
    runs: dict  # trial id -> its MLflow run


def most_at_once(spans) -> int:
    """The largest number of trials running at one moment (an end before a start at the same instant)."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans], key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


@pytest.fixture(scope="module")
def gpu_jobs(ray_cluster, mlflow_sqlite_uri, tmp_path_factory) -> dict[float, GpuJob]:
    """Two jobs on the 2 logical GPUs: half a GPU per trial (4 fit, 5 asked) and a whole one (2 fit, 3 asked)."""
    import ray
    from mlflow import MlflowClient

    from orchestrator.runner import run_job

    jobs = {}
    try:
        for gpus, trials in ((0.5, 5), (1, 3)):
            tmp = tmp_path_factory.mktemp(f"gpus-{gpus}")
            name = f"gf19-gpus-{str(gpus).replace('.', '-')}"
            job = load_job_text(job_text(name, trials, gpus, tmp, mlflow_sqlite_uri, ray_cluster.gcs_address))
            outcome = run_job(job, stream=io.StringIO(), cache_dir=str(tmp / "cache"))
            records = {t.trial_id: [json.loads(line) for line in Path(outcome.run_path, f"trial_{t.trial_id}",
                                                                         "result.json").read_text().splitlines()]
                       for t in outcome.ranking}
            client = MlflowClient(tracking_uri=mlflow_sqlite_uri)
            experiment = client.get_experiment_by_name(f"ganforge/{name}")
            runs = {r.data.tags["ganforge.trial_id"]: r for r in client.search_runs([experiment.experiment_id])
                    if "ganforge.trial_id" in r.data.tags}
            jobs[gpus] = GpuJob(gpus, trials, outcome.run_path,
                                {t: (r[0]["started_at"], r[-1]["reported_at"]) for t, r in records.items()}, runs)
    finally:
        ray.shutdown()  # this process joined the head; the next module may start its own Ray
    return jobs


@pytest.mark.parametrize("gpus", [0.5, 1])
def test_ray_runs_as_many_trials_at_once_as_the_gpus_allow(gpu_jobs, gpus):
    job = gpu_jobs[gpus]
    fit = int(LOGICAL_GPUS / gpus)
    assert len(job.spans) == job.trials == fit + 1
    # Never more than fit: the one trial too many waited for a GPU share to come free ...
    assert most_at_once(job.spans.values()) == fit
    last_start = max(start for start, _ in job.spans.values())
    assert sum(end <= last_start for _, end in job.spans.values()) >= 1


@pytest.mark.parametrize("gpus", [0.5, 1])
def test_each_trial_records_the_gpu_ray_assigned_it(gpu_jobs, gpus):
    job = gpu_jobs[gpus]
    assigned = []
    for trial_id, run in job.runs.items():
        params = run.data.params
        gpu_ids = params["ganforge.gpu_ids"].split(",")
        assert len(gpu_ids) == 1 and gpu_ids[0] in {str(i) for i in range(LOGICAL_GPUS)}, params
        # Ray hides every other GPU from the trial's process.
        assert params["ganforge.cuda_visible_devices"] == gpu_ids[0]
        assigned.append(gpu_ids[0])
    assert len(set(assigned)) == LOGICAL_GPUS, "the trials did not spread over both GPUs"


def test_a_trial_without_usable_cuda_says_so_once_and_trains_on_cpu(gpu_jobs, ray_cluster):
    job = gpu_jobs[0.5]
    for run in job.runs.values():
        assert run.data.params["ganforge.device"] == "cpu"
        assert run.info.status == "FINISHED" and run.data.metrics["step"] == STEPS
    # The trials' own output (what Ray forwards to the driver's console), in the head's worker logs: one line each
    # (a reused trial process may have its output in more than one of Ray's files, never twice in one).
    logs = [[line for line in path.read_text(errors="replace").splitlines() if NO_CUDA in line]
            for path in Path(ray_cluster.workdir, "ray").glob("session_*/logs/worker-*")]
    for trial_id in job.runs:
        said = [[line for line in lines if f"trial {trial_id}:" in line] for lines in logs]
        assert any(said) and all(len(lines) <= 1 for lines in said), said
        line = next(lines[0] for lines in said if lines)
        assert "Ray assigned GPU" in line and "CUDA_VISIBLE_DEVICES=" in line


def test_device_auto_keeps_a_trial_without_a_gpu_share_off_the_gpus():
    """On a GPU node Ray leaves a no-GPU trial every device visible: `auto` must not take one Ray gave to others."""
    from orchestrator.devices import choose_device
    from orchestrator.errors import ClusterError

    assert choose_device("auto", 0, (), cuda_available=True).device.type == "cpu"
    assert choose_device("auto", 0.5, ("1",), cuda_available=True).device.type == "cuda"
    fallback = choose_device("auto", 0.5, ("1",), cuda_available=False)
    assert fallback.device.type == "cpu" and NO_CUDA in fallback.warning
    with pytest.raises(ClusterError, match="train.device: auto"):
        choose_device("cuda", 1, ("0",), cuda_available=False)
