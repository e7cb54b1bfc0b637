"""Issue 5, multi-worker trials: `resources.workers_per_trial: 2` runs a Ray TorchTrainer (DDP over gloo on CPU)
inside the Tune trial, on a cluster with exactly the CPUs its workers ask for, and registers the result; PBT exploits
across such trials.

One tiny ring-8 PBT job through `run_job` on an embedded 2-CPU Ray shared by the module: 2 trials x 2 workers x
0.5 CPU leave nothing for the Tune functions, which must therefore hold no CPU of their own.
"""
from __future__ import annotations

import contextlib
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestrator.spec import load_job_text
from tests.fixtures.jobs import job_yaml
from tests.pbt_evidence import donor_fingerprints

pytestmark = pytest.mark.timeout(240)

# What Ray Train's controller and workers print at INFO for every start and every report, unless quietened; and
# the traceback of Ray Train's placement-group cleaner, which cannot reach the State API of an embedded cluster.
TRAIN_NOISE = ("Requesting resources", "Started training worker group", "Reporting training result",
               "Checkpoint successfully created", "Setting up process group", "(PlacementGroupCleaner pid=")


class _Tee(io.TextIOBase):
    """Keeps a copy of what is written (Ray prints worker output through the driver's sys.stdout/sys.stderr)."""

    def __init__(self, target, copy: io.StringIO) -> None:
        self.target, self.copy = target, copy

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.target.write(text)

    def flush(self) -> None:
        self.target.flush()


class TrainController:
    """Stands in for Ray Train's controller actor (the sweep recognises it by this class name)."""

    def reserve(self) -> str:
        import ray
        from ray.util.placement_group import placement_group

        group = placement_group([{"CPU": 1}])
        ray.get(group.ready())
        return group.id.hex()


def test_a_dead_controllers_worker_group_is_released(ray_local):
    """Tune stops a DDP trial by ending its process: the Train controller dies with it, but Ray keeps the placement
    group the controller reserved for its workers until the job ends. The next trial must not wait for it forever."""
    import time

    import ray
    from ray.util.placement_group import placement_group, placement_group_table

    from orchestrator.ddp_trial import release_orphaned_worker_groups

    kept = placement_group([{"CPU": 0.5}])  # the driver's own (as Tune's trial groups are): never touched
    ray.get(kept.ready())
    controller = ray.remote(num_cpus=0)(TrainController).remote()
    orphan = ray.get(controller.reserve.remote())
    ray.kill(controller)
    deadline = time.monotonic() + 30
    while not release_orphaned_worker_groups():
        assert time.monotonic() < deadline, "the dead controller's placement group was never released"
        time.sleep(0.5)
    assert placement_group_table()[orphan]["state"] == "REMOVED"
    assert placement_group_table()[kept.id.hex()]["state"] == "CREATED"
    ray.util.remove_placement_group(kept)


# ------------------------------------------------------------------ one PBT job of two multi-worker trials
# A DDP trial holds no resources in Tune (its TorchTrainer reserves the workers'), so PBT only sees a population that
# runs at once: two trials of 2 workers x 0.5 CPU fill the 2 CPUs. They are ranked by the learning rate they apply,
# a stand-in score that orders them the same at every evaluation (a few GAN steps rank by chance). Synchronous PBT
# holds each trial at evaluation 2 until both are there, so the lower-lr trial copies the other whatever the two
# worker groups' start-up times (asynchronous, a trial that started 30 s late could find the other finished).
# Every test of the module reads this one job: a TorchTrainer costs ~20 s to start on 2 cores.
STEPS, EVAL_EVERY, BATCH = 90, 30, 64
def job_text(tmp, tracking_uri: str) -> str:
    return job_yaml(
        "gf5-ddp", storage=f"{tmp}/results", tracking_uri=tracking_uri, data={"batch_size": BATCH},
        train={"steps": STEPS, "eval_every": EVAL_EVERY, "eval_samples": 500, "ema_decay": 0.0},
        search={"scheduler": "pbt", "num_samples": 2, "random_seed": 0, "metric": "applied_lr_g", "mode": "max",
                "space": {"train.lr_g": {"loguniform": [1.0e-4, 1.0e-2]}},
                "pbt": {"perturbation_interval": 2, "quantile_fraction": 0.5, "resample_probability": 0.0,
                        "synch": True}},
        resources={"cpus_per_trial": 0.5, "workers_per_trial": 2})
PROVENANCE = ("fingerprint", "restored_fingerprint", "restored_step", "applied_lr_g", "workers", "pid")


@dataclass
class DDPJob:
    tmp: Path
    outcome: Any  # orchestrator.runner.JobOutcome
    out: str  # what the job printed to its stream
    console: str  # what reached the driver's stdout/stderr (Ray forwards worker output there)
    policy: list[dict]  # PBT's exploits, from its policy log


@pytest.fixture(scope="module")
def ddp_job(ray_local, tmp_path_factory, mlflow_sqlite_uri) -> DDPJob:
    from orchestrator.pbt_lineage import collect_policy
    from orchestrator.runner import run_job

    tmp = tmp_path_factory.mktemp("ddp")
    job = load_job_text(job_text(tmp, mlflow_sqlite_uri))
    stream, console = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(_Tee(sys.stdout, console)), contextlib.redirect_stderr(_Tee(sys.stderr, console)):
        outcome = run_job(job, stream=stream, cache_dir=str(tmp / "cache"))
    return DDPJob(tmp, outcome, stream.getvalue(), console.getvalue(), collect_policy(outcome.run_path))


def result_records(run_path: str) -> list[dict]:
    """Every report in Tune's result files (under PBT not a full history: see trial_reports)."""
    return [json.loads(line) for path in Path(run_path).glob("trial_*/result.json")
            for line in path.read_text().splitlines() if line.strip()]


def test_two_worker_trials_train_and_register(ddp_job):
    ranking = ddp_job.outcome.ranking
    assert len(ranking) == 2
    assert all(t.status == "done" and t.step == STEPS and t.value is not None for t in ranking)
    assert ddp_job.outcome.registered is not None and ddp_job.outcome.registered.promoted
    assert "registered gf5-ddp version 1" in ddp_job.out
    records = result_records(ddp_job.outcome.run_path)
    assert records and all(r["workers"] == 2.0 for r in records), "rank 0 did not see a world of 2"


def test_each_rank_trains_on_its_own_half_of_the_data(ddp_job):
    from trainers.data import open_dataset

    rows = open_dataset("builtin:ring8", cache_dir=str(ddp_job.tmp / "cache")).info.num_rows
    for r in result_records(ddp_job.outcome.run_path):
        # Rank 0 has consumed step x batch rows of its shard: with 2 ranks the shard is half the data set, so the
        # same rows make twice the epoch fraction a single worker would report (a PBT copy brings the position along).
        assert r["data_epoch"] == pytest.approx(r["step"] * BATCH / (rows // 2))


def test_checkpoints_come_from_rank_0_and_reach_tune(ddp_job):
    from trainers.export import read_generator_config

    for trial in ddp_job.outcome.ranking:
        train_runs = list(Path(ddp_job.outcome.run_path, "train").glob(f"ddp-{trial.trial_id}-*"))
        assert train_runs  # one per process PBT started for the trial
        last_steps = []
        for run in train_runs:
            # One checkpoint per evaluation, with the export and grid only rank 0 writes: were the other rank
            # checkpointing too, a checkpoint would lack them or the count would not match the evaluations.
            written = [p for p in run.glob("checkpoint_*") if p.is_dir()]
            for checkpoint in written:
                assert (checkpoint / "generator.safetensors").is_file() and (checkpoint / "grid.png").is_file()
            steps = sorted(read_generator_config(p)["meta"]["step"] for p in written)
            # A run evaluates every EVAL_EVERY steps from where it started (0 or a restored step) until it ends.
            assert steps and steps == list(range(steps[0], steps[-1] + 1, EVAL_EVERY)) and steps[0] % EVAL_EVERY == 0
            last_steps.append(steps[-1])
        assert max(last_steps) == STEPS
        # Each is handed to Tune as the trial's own checkpoint, so PBT, retries and registration find it.
        assert Path(trial.checkpoint.path).parent.name == f"trial_{trial.trial_id}"
        assert {p.name for p in Path(trial.checkpoint.path).iterdir()} >= {"generator.safetensors", "generator.json",
                                                                          "state.pt"}


def test_ray_train_info_lines_stay_off_the_console(ddp_job):
    flood = [line for line in ddp_job.console.splitlines() if any(text in line for text in TRAIN_NOISE)]
    assert not flood, "Ray Train's per-run and per-report lines reached the console:\n" + "\n".join(flood[:5])


def test_the_trials_are_tracked_in_mlflow(ddp_job, mlflow_sqlite_uri):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_sqlite_uri)
    experiment = client.get_experiment_by_name("ganforge/gf5-ddp")
    children = [r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    assert {c.data.tags["ganforge.trial_id"] for c in children} == {t.trial_id for t in ddp_job.outcome.ranking}
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.metrics["workers"] == 2.0 and child.data.metrics["step"] == STEPS
    version = client.get_model_version("gf5-ddp", ddp_job.outcome.registered.version)
    assert version.tags["trial_id"] == ddp_job.outcome.ranking[0].trial_id


def trial_reports(run_path: str, tracking_uri: str, job: str) -> dict[str, list[dict]]:
    """Every report of every trial that either record kept, by (process, step): under PBT neither is a full history.
    Tune's result.json of a restarted trial loses the report that triggered the restart; a trial process stopped by
    PBT may end before its MLflow batches are flushed."""
    from mlflow import MlflowClient

    out: dict[str, dict[tuple, dict]] = {}
    for path in Path(run_path).glob("trial_*/result.json"):
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                kept = {k: r[k] for k in ("step", *PROVENANCE) if k in r}
                out.setdefault(path.parent.name.removeprefix("trial_"), {})[(r["pid"], r["step"])] = kept
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(f"ganforge/{job}")
    for child in client.search_runs([experiment.experiment_id]):
        if "mlflow.parentRunId" not in child.data.tags:
            continue
        by_report: dict[tuple[int, int], dict] = {}  # one batch per report: same timestamp and step
        for key in PROVENANCE:
            for m in client.get_metric_history(child.info.run_id, key):
                by_report.setdefault((m.timestamp, m.step), {"step": float(m.step)})[key] = m.value
        records = out.setdefault(child.data.tags["ganforge.trial_id"], {})
        for r in by_report.values():
            records.setdefault((r["pid"], r["step"]), r)
    return {trial: sorted(records.values(), key=lambda r: r["step"]) for trial, records in out.items()}


def test_pbt_exploit_copies_the_donors_ddp_state_and_applies_the_recipients_lr(ddp_job, mlflow_sqlite_uri):
    outcome, policy = ddp_job.outcome, ddp_job.policy
    assert policy, "PBT made no exploit between the two multi-worker trials"
    by_trial = trial_reports(outcome.run_path, mlflow_sqlite_uri, "gf5-ddp")
    assert all(r["workers"] == 2.0 for records in by_trial.values() for r in records)
    verified = 0
    for exploit in policy:
        recipient, donor = by_trial[exploit["recipient"]], by_trial[exploit["donor"]]
        new, old = exploit["new_config"]["train.lr_g"], exploit["donor_config"]["train.lr_g"]
        assert new != pytest.approx(old, rel=1e-9), "explore did not mutate lr_g"
        # The recipient's reports after its ranks restored what the donor's rank 0 checkpointed at some step. Under
        # synch the iterations in Ray's policy log do not name that step reliably; the step the recipient restored
        # (reported beside the restored weights' digest) is the one to trust. The donor's own report of that step
        # may be lost (see trial_reports); its checkpoint is not.
        digests = donor_fingerprints(outcome.run_path, exploit["donor"], donor)
        copied = [r for r in recipient if r.get("restored_step") in digests
                  and r["restored_fingerprint"] == pytest.approx(digests[r["restored_step"]], rel=1e-12)]
        for r in copied:
            assert r["step"] > r["restored_step"], "it did not train on from the donor's state"
            # ray-project/ray#62173: the donor's optimizer state carries the donor's lr; the trial must use its own.
            assert r["applied_lr_g"] == pytest.approx(new, rel=1e-9), \
                f"after copying {exploit['donor']}, {exploit['recipient']} trained with lr_g {r['applied_lr_g']}, not {new}"
        verified += bool(copied)
    assert verified, f"no recipient report shows a copied state: {policy}"
