"""Issue 5, fault tolerance: a SIGKILLed trial resumes from its last checkpoint, `ganforge resume` finishes a job whose
driver was SIGKILLed, and a search survives losing a worker node of a 2-node cluster.

Every job runs `ganforge run` in a subprocess against one Ray head started for this module on 127.0.0.1 (own temp
dir and process group, see orchestrator.stack; never `ray stop`). The node-loss test adds a worker node and kills
its whole process tree. Storage is a local folder, which both nodes share on one machine.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, TypeVar

import pytest

# group_pids: a node's processes, including the workers that left its process group (see orchestrator.stack).
from orchestrator.stack import RayPorts, Service, child_env, group_pids, spawn, stop_group, venv_bin
from tests.fixtures.jobs import job_yaml
from tests.fixtures.ray_head import start_head

OBJECT_STORE_BYTES = 256 * 1024**2
# The GCS declares a silent node dead after failure_threshold missed health checks (defaults: 5, every 3 s, each
# timing out after 10 s); checking every second makes the test wait on recovery rather than on Ray's patience.
FAST_NODE_DEATH = {"RAY_health_check_initial_delay_ms": "1000", "RAY_health_check_period_ms": "1000",
                   "RAY_health_check_timeout_ms": "1000", "RAY_health_check_failure_threshold": "3"}
# 20 reports of ~0.15 s of training each: a trial outlives the ~1 s it takes to see it report, even on an idle
# machine.
STEPS, EVAL_EVERY = 3000, 150
T = TypeVar("T")

pytestmark = pytest.mark.timeout(300)

def job_text(name: str, seeds: list[int], concurrent: int, register: bool, tmp, tracking_uri: str,
             address: str) -> str:
    return job_yaml(name, storage=f"{tmp}/results", tracking_uri=tracking_uri, register=register, cluster=address,
                    train={"steps": STEPS, "eval_every": EVAL_EVERY, "eval_samples": 500, "ema_decay": 0.0},
                    search={"scheduler": "fifo", "num_samples": 1, "max_concurrent": concurrent,
                            "space": {"train.seed": {"grid": seeds}}},
                    resources={"cpus_per_trial": 1, "max_failures": 2})


@dataclass
class Head:
    address: str  # GCS address, what cluster.address takes
    workdir: Path
    cache: Path
    service: Service


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    # A short path under /tmp: Ray's unix socket paths inside --temp-dir must fit in ~107 characters.
    workdir = Path(tempfile.mkdtemp(prefix="gf-ft-"))
    cache = tmp_path_factory.mktemp("ft-cache")
    # Trials run in the head's processes: they take the data cache (and fast node-death detection) from its env.
    service, ports = start_head(workdir, num_cpus=2, object_store_bytes=OBJECT_STORE_BYTES,
                                    env={"GANFORGE_CACHE": str(cache), **FAST_NODE_DEATH})
    try:
        yield Head(f"127.0.0.1:{ports.gcs}", workdir, cache, service)
    finally:
        service.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def write_job(tmp: Path, head: Head, tracking_uri: str, name: str, seeds: list[int], concurrent: int = 2,
              register: bool = True) -> Path:
    path = tmp / "job.yaml"
    path.write_text(job_text(name, seeds, concurrent, register, tmp, tracking_uri, head.address))
    return path


def ganforge_env(head: Head) -> dict[str, str]:
    env = child_env({"RAY_AUTH_MODE": "disabled", "GANFORGE_CACHE": str(head.cache),
                     # Tune syncs its experiment state and each trial's result.json to storage at most this often
                     # (default: every >= 10 s); the tests read both while the search runs.
                     "TUNE_GLOBAL_CHECKPOINT_S": "1"})
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


@contextlib.contextmanager
def running_ganforge(tmp: Path, head: Head, *args: str, frozen: Optional[list[int]] = None):
    """`ganforge ARGS` in its own process group, output in tmp/ganforge.log; whatever happens in the block, nothing
    of it (nor a trial process the test froze) is left behind."""
    with open(tmp / "ganforge.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", *args], cwd=tmp, env=ganforge_env(head),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:  # still ours (not reaped), so its group id cannot belong to anyone else
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for pid in list(frozen or []):
            kill_frozen(pid, frozen)


def freeze(pid: int, frozen: list[int]) -> None:
    os.kill(pid, signal.SIGSTOP)
    frozen.append(pid)


def kill_frozen(pid: int, frozen: list[int]) -> None:
    """SIGKILL a trial process this test froze, if it is still there and still stopped (never a reused pid)."""
    frozen.remove(pid)
    with contextlib.suppress(OSError, IndexError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state in ("T", "t"):
            os.kill(pid, signal.SIGKILL)


def finish(proc: subprocess.Popen, tmp: Path, timeout: float = 240) -> str:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"ganforge did not finish within {timeout:.0f} s:\n{log_tail(tmp)}")
    out = (tmp / "ganforge.log").read_text(errors="replace")
    assert proc.returncode == 0, log_tail(tmp)
    return out


def log_tail(tmp: Path) -> str:
    return (tmp / "ganforge.log").read_text(errors="replace")[-4000:]


def wait_for(what: str, check: Callable[[], Optional[T]], proc: subprocess.Popen, tmp: Path, timeout: float = 150) -> T:
    """Poll `check` until it returns something truthy; fail early if ganforge exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        if proc.poll() is not None:
            pytest.fail(f"ganforge exited ({proc.returncode}) before {what}:\n{log_tail(tmp)}")
        time.sleep(0.2)
    pytest.fail(f"no {what} within {timeout:.0f} s:\n{log_tail(tmp)}")


def run_path(tmp: Path) -> Optional[Path]:
    runs = sorted((tmp / "results").glob("run-*"))
    return runs[-1] if runs else None


def reports(tmp: Path) -> dict[str, list[dict]]:
    """Each trial's reports from its result.json in storage (a line still being written is skipped)."""
    out: dict[str, list[dict]] = {}
    path = run_path(tmp)
    for result in sorted(path.glob("trial_*/result.json")) if path else []:
        records = []
        for line in result.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pass
        out[result.parent.name.removeprefix("trial_")] = records
    return out


def trial_statuses(tmp: Path) -> dict[str, str]:
    """Trial id -> status in Tune's experiment state, as a resumed driver would read it."""
    path = run_path(tmp)
    states = sorted(path.glob("experiment_state-*.json")) if path else []
    if not states:
        return {}
    try:
        data = json.loads(states[-1].read_text())
    except json.JSONDecodeError:  # caught mid-write
        return {}
    trials = [json.loads(entry[0]) for entry in data["trial_data"]]
    return {t["trial_id"]: t["status"] for t in trials}


def assert_resumed_from_checkpoint(records: list[dict], dead_pids: set[int]) -> dict:
    """The trial finished all its steps in a new process that started from a checkpoint, not from scratch."""
    final = records[-1]
    assert final["step"] == STEPS and int(final["pid"]) not in dead_pids
    resumed = [r for r in records if r.get("restored_step") and int(r["pid"]) not in dead_pids]
    assert resumed, f"no report of a restored process: {[(r['step'], r['pid']) for r in records]}"
    first = resumed[0]
    assert 0 < first["restored_step"] < STEPS
    assert first["step"] == first["restored_step"] + EVAL_EVERY, "the new process did not continue from the checkpoint"
    return first


def registered_champion(tracking_uri: str, name: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri).get_model_version_by_alias(name, "champion")


# ------------------------------------------------------------------ a trial process dies, then the driver
@dataclass
class KilledJob:
    tmp: Path
    name: str
    killed_trial: str  # SIGKILLed once, retried by Tune, finished before the driver died
    killed_pid: int
    last_seen: dict  # its last report before the kill
    registered_step: float  # the step of its latest checkpoint in Tune's experiment state when it was killed
    interrupted: str  # running when the driver was SIGKILLed
    interrupted_pids: set[int]
    before_resume: dict[str, list[dict]]
    resume: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def killed_job(head, tmp_path_factory, mlflow_sqlite_uri) -> KilledJob:
    """One job, two deaths. Trials A and B run side by side; A's process is SIGKILLed (Tune retries it from its last
    checkpoint) while B is frozen (SIGSTOP), so B is still unfinished when A is done; then the driver is SIGKILLed and
    `ganforge resume` finishes the job. Freezing makes the order independent of the machine's speed."""
    tmp, name = tmp_path_factory.mktemp("killed-job"), "gf5-kills"
    write_job(tmp, head, mlflow_sqlite_uri, name, seeds=[0, 1], concurrent=2)
    frozen: list[int] = []
    with running_ganforge(tmp, head, "run", "job.yaml", frozen=frozen) as proc:
        return _kill_trial_then_driver(tmp, name, head, proc, frozen)


def _kill_trial_then_driver(tmp: Path, name: str, head: Head, proc: subprocess.Popen, frozen: list[int]) -> KilledJob:
    def reporting_trial(other_than: Optional[str] = None):
        def check():
            for trial_id, records in reports(tmp).items():
                if trial_id != other_than and records and records[-1]["step"] < STEPS:
                    return trial_id, int(records[-1]["pid"])
        return check

    # Each trial is frozen as soon as it is seen reporting: however staggered their starts, neither finishes early.
    killed_trial, killed_pid = wait_for("a trial reporting", reporting_trial(), proc, tmp)
    freeze(killed_pid, frozen)
    interrupted, frozen_pid = wait_for("a second trial reporting", reporting_trial(killed_trial), proc, tmp)
    freeze(frozen_pid, frozen)
    last_seen = settled("last report", lambda: reports(tmp)[killed_trial][-1])
    registered_step = settled("registered checkpoint", lambda: registered_checkpoint_step(tmp, killed_trial))
    kill_frozen(killed_pid, frozen)

    def killed_trial_finished():
        return trial_statuses(tmp).get(killed_trial) == "TERMINATED"

    wait_for("the killed trial to finish after its retry", killed_trial_finished, proc, tmp)
    before = reports(tmp)
    assert trial_statuses(tmp)[interrupted] == "RUNNING"
    os.kill(proc.pid, signal.SIGKILL)  # the driver: Ray ends its job, whose trial processes die with it
    proc.wait(timeout=30)
    kill_frozen(frozen_pid, frozen)  # a stopped process cannot act on the SIGTERM Ray may send it
    resume = subprocess.run([sys.executable, "-m", "orchestrator.cli", "resume", "job.yaml"], cwd=tmp,
                            env=ganforge_env(head), capture_output=True, text=True, timeout=240)
    return KilledJob(tmp, name, killed_trial, killed_pid, last_seen, registered_step, interrupted,
                     {int(r["pid"]) for r in before[interrupted]}, before, resume)


def settled(what: str, observe: Callable[[], Optional[T]], timeout: float = 60) -> T:
    """What `observe` sees of a frozen trial once storage has caught up with it: the same value for 2 syncs (None,
    nothing readable yet, is not a value)."""
    last, since, deadline = None, time.monotonic(), time.monotonic() + timeout
    while last is None or time.monotonic() - since < 2.5:
        if time.monotonic() > deadline:
            pytest.fail(f"no settled {what} within {timeout:.0f} s (last seen: {last})")
        current = observe()
        if current is not None and current != last:
            last, since = current, time.monotonic()
        time.sleep(0.2)
    return last


def registered_checkpoint_step(tmp: Path, trial_id: str) -> Optional[float]:
    """The step of the latest checkpoint Tune has registered for a trial (what a retry of it starts from): read
    through Ray's own reader of the experiment state, and matched by folder name to the report that wrote it (the
    folder itself may already be gone: Tune keeps only `checkpoints_to_keep`)."""
    from ray.tune import ExperimentAnalysis

    try:
        analysis = ExperimentAnalysis(str(run_path(tmp)))
        trial = next(t for t in analysis.trials if t.trial_id == trial_id)
        checkpoint = analysis.get_last_checkpoint(trial)
    except Exception:  # the state file caught mid-write or before the trial is in it: the caller looks again
        return None
    if checkpoint is None:
        return None
    name = Path(checkpoint.path).name
    return next((r["step"] for r in reports(tmp).get(trial_id, []) if r.get("checkpoint_dir_name") == name), None)


def test_sigkilled_trial_resumes_from_its_last_checkpoint(killed_job):
    records = killed_job.before_resume[killed_job.killed_trial]
    first = assert_resumed_from_checkpoint(records, {killed_job.killed_pid})
    assert first["restored_step"] == killed_job.registered_step, "it resumed from another checkpoint than its latest"
    # Tune registers a report's checkpoint with a save call on the trial's actor after the report is logged, so the
    # last report seen may be one whose checkpoint the killed process never handed over; never more than that one.
    assert killed_job.registered_step >= killed_job.last_seen["step"] - EVAL_EVERY
    saved = next(r for r in records if r["step"] == first["restored_step"] and int(r["pid"]) == killed_job.killed_pid)
    assert first["restored_fingerprint"] == saved["fingerprint"], "the restored weights are not the checkpointed ones"


def test_resume_finishes_a_job_whose_driver_was_sigkilled(killed_job, mlflow_sqlite_uri):
    job, resume = killed_job, killed_job.resume
    assert resume.returncode == 0, resume.stdout[-3000:] + resume.stderr[-3000:]
    assert f"resuming {run_path(job.tmp)}" in resume.stdout
    after = reports(job.tmp)
    assert after[job.killed_trial] == job.before_resume[job.killed_trial], "the finished trial was run again"
    assert_resumed_from_checkpoint(after[job.interrupted], job.interrupted_pids)
    assert trial_statuses(job.tmp) == {job.killed_trial: "TERMINATED", job.interrupted: "TERMINATED"}
    assert f"registered {job.name} version 1" in resume.stdout
    champion = registered_champion(mlflow_sqlite_uri, job.name)
    assert champion.tags["trial_id"] in (job.killed_trial, job.interrupted)


# ------------------------------------------------------------------ a node dies
def start_worker_node(head: Head, workdir: Path, num_cpus: int) -> int:
    """`ray start` of a second node joining the head; returns its process group id once it is up."""
    ports = RayPorts.pick()
    argv = [venv_bin("ray"), "start", f"--address={head.address}", "--block", "--node-ip-address=127.0.0.1",
            f"--num-cpus={num_cpus}", f"--object-store-memory={OBJECT_STORE_BYTES}", f"--temp-dir={workdir}",
            "--disable-usage-stats", f"--node-manager-port={ports.node_manager}",
            f"--object-manager-port={ports.object_manager}", f"--runtime-env-agent-port={ports.runtime_env_agent}",
            f"--dashboard-agent-grpc-port={ports.dashboard_agent_grpc}",
            f"--dashboard-agent-listen-port={ports.dashboard_agent_listen}",
            f"--metrics-export-port={ports.metrics_export}"]
    log = workdir / "worker.log"
    pgid = spawn(argv, log, child_env({"RAY_AUTH_MODE": "disabled", "GANFORGE_CACHE": str(head.cache)}), workdir)
    deadline = time.monotonic() + 90
    while "Ray runtime started" not in (log.read_text(errors="replace") if log.exists() else ""):
        if not group_pids(pgid) or time.monotonic() > deadline:
            stop_group(pgid)
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            pytest.fail(f"worker node did not start:\n{tail}")
        time.sleep(0.2)
    return pgid


def kill_node(pgid: int) -> set[int]:
    """SIGKILL every process of a node at once (raylet, its workers and agents), as a lost machine would."""
    pids = set(group_pids(pgid))
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


def test_search_finishes_on_the_head_after_losing_its_worker_node(head, tmp_path, mlflow_sqlite_uri):
    name = "gf5-node-loss"
    node_dir = Path(tempfile.mkdtemp(prefix="gf-node-"))
    pgid = start_worker_node(head, node_dir, num_cpus=1)
    try:
        # Three 1-CPU trials on a 2-CPU head and a 1-CPU worker: one of them has to run on the worker node.
        write_job(tmp_path, head, mlflow_sqlite_uri, name, seeds=[0, 1, 2], concurrent=3, register=False)
        with running_ganforge(tmp_path, head, "run", "job.yaml") as proc:

            def trial_on_the_worker():
                node_pids = set(group_pids(pgid))
                return [t for t, records in reports(tmp_path).items()
                        if records and int(records[-1]["pid"]) in node_pids and records[-1]["step"] < STEPS]

            on_worker = wait_for("a trial reporting from the worker node", trial_on_the_worker, proc, tmp_path)
            dead_pids = kill_node(pgid)
            out = finish(proc, tmp_path)
    finally:
        stop_group(pgid, grace_s=5)
        shutil.rmtree(node_dir, ignore_errors=True)

    final = reports(tmp_path)
    assert len(final) == 3
    for trial_id in on_worker:
        assert_resumed_from_checkpoint(final[trial_id], dead_pids)
    assert all(records[-1]["step"] == STEPS for records in final.values())
    assert "ganforge: error" not in out
