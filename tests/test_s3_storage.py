"""Issue 19, S3 storage end to end: a search whose Tune state, checkpoints, run record and PBT policy live on S3
(moto on 127.0.0.1, reached through a proxy that fails 10 % of requests, uploads included), whose driver is
SIGKILLed mid-search, resumed from a fresh working directory and registered from there.

Each job runs `ganforge run` in a subprocess (embedded Ray) with the standard AWS environment and nothing else; the
tests read S3 directly from moto, never through the proxy.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.stack import child_env
from tests.fixtures.s3 import FlakyProxy
from tests.pbt_evidence import checkpointed_fingerprints
from tests.test_fault_tolerance import wait_for  # polls a check, failing early with the log of ganforge.log's folder

pytestmark = pytest.mark.timeout(420)

STEPS, EVAL_EVERY = 300, 100
REPORTS = STEPS // EVAL_EVERY
SEEDS = [0, 1, 2, 3]
JOB = """\
name: {name}
data: {{uri: "builtin:ring8", batch_size: 64}}
model: {{family: gan, latent_dim: 2, width: 16, depth: 2}}
train: {{steps: {steps}, eval_every: {eval_every}, eval_samples: 300, ema_decay: 0.0}}
search:
{search}
resources: {{cpus_per_trial: 1}}
storage: {{uri: "{storage}", checkpoints_to_keep: 20}}
registry: {{enabled: {register}, model_name: {name}, tracking_uri: "{tracking_uri}"}}
"""
SEQUENTIAL = f"""\
  scheduler: fifo
  num_samples: 1
  max_concurrent: 1
  space:
    train.seed: {{grid: {SEEDS}}}"""
PBT = """\
  scheduler: pbt
  num_samples: 4
  random_seed: 3
  space:
    train.lr_g: {loguniform: [1.0e-4, 1.0e-2]}
  pbt: {perturbation_interval: 2, quantile_fraction: 0.25, resample_probability: 0.0}"""
# Local files a run may leave: caches (data sets, feature networks) and what the test itself writes.
CACHES = (".cache", "cache", ".config")


class S3:
    """The bucket as the tests see it: straight from moto, not through the flaky proxy."""

    def __init__(self, endpoint: str, env: dict[str, str], bucket: str) -> None:
        import boto3

        self.bucket = bucket
        self.client = boto3.client("s3", endpoint_url=endpoint, region_name=env["AWS_DEFAULT_REGION"],
                                   aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                                   aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])

    def keys(self, prefix: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def run_key(self, prefix: str) -> str | None:
        """The key prefix of the newest run under a storage prefix."""
        runs = sorted({k.split("/")[1] for k in self.keys(prefix + "/") if k.split("/")[1].startswith("run-")})
        return f"{prefix}/{runs[-1]}" if runs else None

    def reports(self, run: str) -> dict[str, list[dict]]:
        out = {}
        for key in self.keys(run + "/"):
            if key.endswith("/result.json"):
                lines = self.read(key).decode().splitlines()
                out[key.split("/")[-2].removeprefix("trial_")] = _records(lines)
        return out

    def statuses(self, run: str) -> dict[str, str]:
        states = sorted(k for k in self.keys(run + "/") if k.rsplit("/", 1)[-1].startswith("experiment_state-"))
        if not states:
            return {}
        try:
            trials = [json.loads(entry[0]) for entry in json.loads(self.read(states[-1]))["trial_data"]]
        except (json.JSONDecodeError, KeyError):  # Tune may create the object before writing it: poll again
            return {}
        return {t["trial_id"]: t["status"] for t in trials}

    def download(self, run: str, dest: Path) -> Path:
        for key in self.keys(run + "/"):
            if key.endswith("/"):  # a folder marker
                continue
            path = dest / key[len(run) + 1:]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(self.read(key))
        return dest


def _records(lines: list[str]) -> list[dict]:
    out = []
    for line in filter(str.strip, lines):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line still being written when the object was read: not there yet
            pass
    return out


@dataclass
class Workdir:
    """A fresh working directory and HOME for one ganforge command, as on a new machine."""

    path: Path
    env: dict[str, str]

    def ganforge(self, *args: str, **kwargs) -> subprocess.Popen:
        log = open(self.path / "ganforge.log", "ab")
        return subprocess.Popen([sys.executable, "-m", "orchestrator.cli", *args], cwd=self.path, env=self.env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **kwargs)

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=self.path, env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def log(self) -> str:
        return (self.path / "ganforge.log").read_text(errors="replace")[-4000:]

    def results_left(self) -> list[str]:
        """Files in the working directory and HOME other than the job file, the test's log and caches."""
        return sorted(str(p.relative_to(self.path)) for p in self.path.rglob("*")
                      if p.is_file() and p.name not in ("job.yaml", "ganforge.log")
                      and p.relative_to(self.path).parts[0] not in CACHES)


def workdir(root: Path, name: str, job_text: str, s3_env: dict[str, str], endpoint: str, cache: Path) -> Workdir:
    path = root / name
    path.mkdir()
    (path / "job.yaml").write_text(job_text)
    env = child_env({**s3_env, "AWS_ENDPOINT_URL": endpoint, "RAY_AUTH_MODE": "disabled", "HOME": str(path),
                     "GANFORGE_CACHE": str(cache),
                     # Tune syncs its experiment state to storage at most this often; the test watches it.
                     "TUNE_GLOBAL_CHECKPOINT_S": "1"})
    for name in ("MLFLOW_TRACKING_URI", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        env.pop(name, None)
    return Workdir(path, env)


def job_text(name: str, search: str, storage: str, tracking_uri: str, register: bool = True,
             steps: int = STEPS, eval_every: int = EVAL_EVERY) -> str:
    return JOB.format(name=name, steps=steps, eval_every=eval_every, search=search, storage=storage,
                      tracking_uri=tracking_uri, register=str(register).lower())


@pytest.fixture(scope="module")
def s3(s3_endpoint, s3_env_vars, s3_bucket) -> S3:
    return S3(s3_endpoint, s3_env_vars, s3_bucket)


# ------------------------------------------------------------------ killed, resumed and registered, through faults
@dataclass
class KilledOnS3:
    name: str
    prefix: str  # key prefix of the job's storage in the bucket
    run: str  # key prefix of its run
    finished: dict[str, list[dict]]  # reports of the trials that had finished when the driver was killed
    killed_at: float
    first: Workdir
    resumed: Workdir
    resume: subprocess.CompletedProcess
    register: subprocess.CompletedProcess
    proxy: FlakyProxy


@pytest.fixture(scope="module")
def killed_on_s3(s3, s3_endpoint, s3_env_vars, mlflow_tracking_uri, tmp_path_factory) -> KilledOnS3:
    name, prefix = "gf19-s3", f"gf19-s3-{os.getpid()}"
    root, cache = tmp_path_factory.mktemp("s3-storage"), tmp_path_factory.mktemp("s3-storage-cache")
    text = job_text(name, SEQUENTIAL, f"s3://{s3.bucket}/{prefix}", mlflow_tracking_uri)
    proxy = FlakyProxy(s3_endpoint, failure_rate=0.10, seed=19)
    try:
        first = workdir(root, "first", text, s3_env_vars, proxy.endpoint, cache)
        proc = first.ganforge("run", "job.yaml")
        try:
            run = wait_for("a run on S3", lambda: s3.run_key(prefix), proc, first.path, timeout=240)

            def one_finished_others_not():
                statuses = s3.statuses(run)
                done = [t for t, s in statuses.items() if s == "TERMINATED"]
                if not done or len(done) == len(SEEDS):
                    return None
                # Tune uploads its experiment state and the trials' result.json files in one parallel copy, so the
                # state can say TERMINATED before the trial's last rows are on S3: a kill in that window would
                # leave them short. The test kills once the finished trials' reports are all there.
                reports = s3.reports(run)
                return done if all(len(reports.get(t, [])) == REPORTS for t in done) else None

            done = wait_for("a finished trial", one_finished_others_not, proc, first.path, timeout=240)
            finished = {t: r for t, r in s3.reports(run).items() if t in done}
            killed_at = time.time()
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and the embedded Ray it started
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        resumed = workdir(root, "resumed", text, s3_env_vars, proxy.endpoint, cache)
        resume = resumed.run("resume", "job.yaml")
        register = resumed.run("register", "job.yaml")
        return KilledOnS3(name, prefix, run, finished, killed_at, first, resumed, resume, register, proxy)
    finally:
        proxy.close()


def test_search_state_checkpoints_and_record_live_on_s3_and_nothing_on_local_disk(killed_on_s3, s3):
    job = killed_on_s3
    assert job.resume.returncode == 0, job.resume.stdout[-3000:] + job.resume.stderr[-3000:]
    keys = s3.keys(job.prefix + "/")
    names = {k[len(job.run) + 1:] for k in keys if k.startswith(job.run + "/")}
    assert f"{job.prefix}/LATEST" in keys and "ganforge-run.json" in names
    assert any(n.startswith("experiment_state-") for n in names) and "tuner.pkl" in names
    trials = {n.split("/")[0] for n in names if n.startswith("trial_")}
    assert len(trials) == len(SEEDS)
    for trial in trials:
        checkpoints = {n.split("/")[1] for n in names if n.startswith(f"{trial}/checkpoint_")}
        assert len(checkpoints) == REPORTS, f"{trial} kept {sorted(checkpoints)} on S3"
    assert job.first.results_left() == [] and job.resumed.results_left() == [], "results were written locally"


def test_resume_from_a_fresh_directory_runs_only_the_unfinished_trials(killed_on_s3, s3, mlflow_tracking_uri):
    from mlflow import MlflowClient

    job = killed_on_s3
    assert job.resume.returncode == 0, job.resume.stdout[-3000:] + job.resume.stderr[-3000:]
    # One line per fact: no warning per trial that had not started yet.
    said = job.resume.stdout + job.resume.stderr
    assert "FileNotFoundError" not in said and "Failed to fetch" not in said
    resuming = [line for line in said.splitlines() if "resuming" in line]
    finished = len(job.finished)
    assert resuming == [f"ganforge: resuming s3://{s3.bucket}/{job.run}: {finished} finished, "
                        f"{len(SEEDS) - finished} to run"]
    assert set(s3.statuses(job.run).values()) == {"TERMINATED"}
    after = s3.reports(job.run)
    for trial, reports in job.finished.items():
        assert after[trial] == reports, f"finished trial {trial} was run again"
    # MLflow agrees: nothing was logged for a finished trial after the driver died.
    client = MlflowClient(tracking_uri=mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(f"ganforge/{job.name}")
    for trial in job.finished:
        runs = client.search_runs([experiment.experiment_id], f"tags.`ganforge.trial_id` = '{trial}'")
        assert len(runs) == 1
        history = client.get_metric_history(runs[0].info.run_id, "reverse_kl")
        assert history and max(m.timestamp for m in history) / 1000 < job.killed_at
    assert f"registered {job.name} version 1" in job.resume.stdout


def test_no_checkpoint_or_metric_is_lost_when_10_percent_of_s3_requests_fail(killed_on_s3, s3, mlflow_tracking_uri):
    from mlflow import MlflowClient

    job = killed_on_s3
    faults = job.proxy.faults_by_method
    assert faults["PUT"] > 0 and faults["GET"] > 0, f"no upload was failed: {dict(faults)}"
    client = MlflowClient(tracking_uri=mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(f"ganforge/{job.name}")
    for trial, reports in s3.reports(job.run).items():
        assert sorted({r["training_iteration"] for r in reports}) == list(range(1, REPORTS + 1)), trial
        runs = client.search_runs([experiment.experiment_id], f"tags.`ganforge.trial_id` = '{trial}'")
        steps = {m.step for r in runs for m in client.get_metric_history(r.info.run_id, "reverse_kl")}
        assert steps == set(range(EVAL_EVERY, STEPS + 1, EVAL_EVERY)), f"{trial} lost evaluations: {sorted(steps)}"


def test_register_works_from_s3_alone(killed_on_s3, s3, mlflow_tracking_uri):
    from mlflow import MlflowClient

    job = killed_on_s3
    assert job.register.returncode == 0, job.register.stdout[-3000:] + job.register.stderr[-3000:]
    assert f"registered {job.name} version 2" in job.register.stdout
    version = MlflowClient(tracking_uri=mlflow_tracking_uri).get_model_version(job.name, "2")
    assert version.tags["trial_id"] in s3.statuses(job.run), "registered a checkpoint of another run"


# ------------------------------------------------------------------ PBT
def test_pbt_on_s3_keeps_its_policy_there_and_restores_donors_from_it(s3, s3_endpoint, s3_env_vars,
                                                                       mlflow_tracking_uri, tmp_path):
    from mlflow import MlflowClient

    name, prefix = "gf19-s3-pbt", f"gf19-s3-pbt-{os.getpid()}"
    # 8 evaluations of 4 trials, exploiting every 2: as in tests/test_search.py, PBT reliably copies a donor.
    text = job_text(name, PBT, f"s3://{s3.bucket}/{prefix}", mlflow_tracking_uri, register=False, steps=160,
                    eval_every=20)
    wd = workdir(tmp_path, "pbt", text, s3_env_vars, s3_endpoint, tmp_path / "cache")
    proc = wd.ganforge("run", "job.yaml")
    try:
        assert proc.wait(timeout=360) == 0, wd.log()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    run = s3.run_key(prefix)
    names = {k[len(run) + 1:] for k in s3.keys(run + "/")}
    assert "pbt_global.txt" in names
    assert wd.results_left() == []
    exploits = [json.loads(line) for line in s3.read(f"{run}/pbt_global.txt").decode().splitlines() if line.strip()]
    assert exploits, "PBT made no exploit"
    # Every recipient restored weights that one of its donors checkpointed on S3.
    local = s3.download(run, tmp_path / "from-s3")
    client = MlflowClient(tracking_uri=mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(f"ganforge/{name}")
    digests = {}
    for trial in (n.split("/")[0].removeprefix("trial_") for n in names if n.startswith("trial_")):
        digests.update({(trial, s): f for s, f in checkpointed_fingerprints(str(local), trial).items()})
    restored = []
    for run_info in client.search_runs([experiment.experiment_id], "tags.`ganforge.kind` = 'trial'"):
        steps = client.get_metric_history(run_info.info.run_id, "restored_step")
        prints = client.get_metric_history(run_info.info.run_id, "restored_fingerprint")
        restored += [(s.value, f.value) for s, f in zip(steps, prints)]
    matched = [r for r in restored if any(step == r[0] and f == pytest.approx(r[1], rel=1e-12)
                                          for (_, step), f in digests.items())]
    assert matched, f"no restore matches a checkpoint on S3: {restored}"
    shutil.rmtree(local)


def test_a_storage_filesystem_shipped_to_another_process_keeps_its_retries(flaky_s3, s3_prefix, monkeypatch):
    """Ray pickles Tune's storage filesystem into every trial and the experiment state; pyarrow's own pickling
    drops the retry policy (3 attempts instead of 8)."""
    import pickle

    from orchestrator.storage import filesystem, read_text, write_text

    monkeypatch.setenv("AWS_ENDPOINT_URL", flaky_s3.endpoint)
    flaky_s3.failure_rate = 0.0
    write_text(f"{s3_prefix}/probe.txt", "kept")
    fs, path = filesystem(f"{s3_prefix}/probe.txt")
    shipped = pickle.loads(pickle.dumps(fs))
    flaky_s3.fail_next("probe.txt", 5)  # more than 3 attempts, fewer than 8
    assert shipped.get_file_info(path).size == 4
    assert read_text(f"{s3_prefix}/probe.txt") == "kept"


def test_a_run_pointer_cut_off_mid_read_is_read_again_never_taken_for_absent(flaky_s3, s3_prefix, monkeypatch):
    """A reply cut off mid-body is not retried by the SDK: `resume` read LATEST as missing and said "no stored run"
    while the run was there. Reads are tried again; one that keeps failing is an error naming the object."""
    from orchestrator.errors import StorageError
    from orchestrator.storage import read_text, write_text

    monkeypatch.setenv("AWS_ENDPOINT_URL", flaky_s3.endpoint)
    monkeypatch.setenv("GANFORGE_S3_MAX_ATTEMPTS", "1")  # no SDK retries: what remains is ours
    flaky_s3.failure_rate = 0.0
    write_text(f"{s3_prefix}/LATEST", "run-1\n")
    flaky_s3.fail_next("LATEST", 2, fault="truncate")
    assert read_text(f"{s3_prefix}/LATEST") == "run-1\n"
    assert read_text(f"{s3_prefix}/NOT-THERE") is None
    flaky_s3.fail_next("LATEST", 1000, fault="truncate")
    with pytest.raises(StorageError, match="LATEST: cannot be read"):
        read_text(f"{s3_prefix}/LATEST")


# ------------------------------------------------------------------ Tune's experiment syncs upload what changed
class RecordingProxy(FlakyProxy):
    """A proxy that fails nothing and keeps every request's method and path."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream, failure_rate=0.0)
        self.seen: list[tuple[str, str]] = []

    def _draw(self, method: str, path: str):
        self.seen.append((method, path))
        return super()._draw(method, path)

    def writes(self, since: int = 0) -> tuple[list[str], list[str]]:
        """(objects written, folder markers written) among the requests after the first `since`: a PutObject or a
        multipart upload's start counts once."""
        paths = [p for m, p in self.seen[since:] if (m == "PUT" and "partNumber=" not in p) or p.endswith("?uploads")]
        paths = [p.removesuffix("?uploads") for p in paths]
        return [p for p in paths if not p.endswith("/")], [p for p in paths if p.endswith("/")]


def test_tune_syncs_upload_only_what_changed(s3_env, s3_endpoint, s3_bucket, tmp_path, monkeypatch):
    """Tune copies its whole staging folder at every experiment sync; through tune_filesystem an unchanged file or a
    known folder costs no upload, a changed file is sent again, and a fresh process (a pickled copy) sends all once."""
    import pickle

    import orchestrator.tune_storage as tune_storage
    from orchestrator.storage import filesystem
    from orchestrator.tune_storage import tune_filesystem
    from ray.train._internal.storage import _upload_to_fs_path  # what Tune's syncer calls for each sync

    proxy = RecordingProxy(s3_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    monkeypatch.setattr(tune_storage, "COMPARED_BYTES", 1024)  # big.bin streams through, never compared
    try:
        plain, root = filesystem(f"s3://{s3_bucket}/sync-{tmp_path.name}")
        synced = tune_filesystem(plain)
        staging = tmp_path / "staging"
        files = {"experiment_state.json": b"{}", "trial_a/result.json": b'{"step": 1}\n',
                 "trial_b/params.json": b'{"lr": 0.1}', "trial_b/big.bin": bytes(4096)}
        for name, data in files.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_bytes(data)

        def sync(fs) -> tuple[list[str], list[str]]:
            since = len(proxy.seen)
            _upload_to_fs_path(str(staging), fs, root)
            objects, folders = proxy.writes(since)
            return sorted(p.split("/", 3)[-1] for p in objects), folders

        def stored(name: str) -> bytes:
            with plain.open_input_stream(f"{root}/{name}") as f:
                return f.read()

        assert sync(synced)[0] == sorted(files)
        assert sync(synced) == (["trial_b/big.bin"], []), "an unchanged file or a known folder was written again"
        (staging / "trial_a/result.json").write_bytes(files["trial_a/result.json"] + b'{"step": 2}\n')
        assert sync(synced)[0] == ["trial_a/result.json", "trial_b/big.bin"]
        assert all(stored(n) == (staging / n).read_bytes() for n in files)
        assert sync(pickle.loads(pickle.dumps(synced)))[0] == sorted(files), "a new process must send everything"
        synced.delete_dir(f"{root}/trial_b")  # forgotten: written again by the next sync
        assert sync(synced)[0] == ["trial_b/big.bin", "trial_b/params.json"]
        assert stored("trial_b/params.json") == files["trial_b/params.json"]
    finally:
        proxy.close()
