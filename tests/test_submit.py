"""`ganforge submit` and `ganforge jobs` against a real Ray head on 127.0.0.1 (the session `ray_head` fixture)."""
from __future__ import annotations

import os
import random
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pyarrow.fs as pafs
import pytest

from orchestrator.cli import main
from orchestrator.errors import ClusterInputError, JobFailedError
from orchestrator.stack import free_port
from orchestrator.submit import (
    JOB_DIR_IN_PACKAGE,
    JobsClient,
    Submission,
    address_sources,
    build_package,
    project_root,
    resolve_address,
    retry_entrypoint,
    run_attempts,
    upload_limit_bytes,
)

pytestmark = pytest.mark.filterwarnings("ignore:ssl=None is deprecated:DeprecationWarning")  # inside Ray's SDK

TINY_JOB = """\
name: tiny
data: {{uri: "builtin:ring8", batch_size: 64}}
model: {{family: gan, width: 32}}
train: {{steps: 200, eval_every: 100, eval_samples: 500}}
search: {{num_samples: 2, space: {{train.lr_g: {{loguniform: [1.0e-4, 1.0e-3]}}}}}}
registry: {{model_name: {model_name}, tracking_uri: "sqlite:///{db}"}}
storage: {{uri: {results}}}
"""


def write_job(tmp_path: Path, model_name: str = "tiny-gan", results: str | None = None, **fields: str) -> Path:
    """The tiny job of the brief, with absolute storage and tracking paths the local cluster can reach."""
    text = TINY_JOB.format(model_name=model_name, db=tmp_path / "mlflow.db", results=results or tmp_path / "results")
    for key, value in fields.items():
        text += f"{key}: {value}\n"
    path = tmp_path / "tiny.yaml"
    path.write_text(text)
    return path


def closed_address() -> str:
    return f"http://127.0.0.1:{free_port()}"  # bound then released: nothing listens there


def wait_for_status(client: JobsClient, submission_id: str, wanted: set[str]) -> str:
    while (status := client.status(submission_id)) not in wanted:
        assert status not in {"SUCCEEDED", "FAILED", "STOPPED"} - wanted, f"{submission_id} ended {status}"
        time.sleep(0.5)
    return status


# ------------------------------------------------------------------ addresses and errors (no cluster needed)
def test_unreachable_address_is_a_one_line_error_with_exit_1(tmp_path, capsys):
    job = write_job(tmp_path)
    rc = main(["submit", str(job), "--address", closed_address()])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.count("\n") == 1 and "cannot reach a Ray cluster at http://127.0.0.1:" in err
    assert "Traceback" not in err


def test_bad_yaml_is_refused_before_contacting_the_cluster(tmp_path, capsys):
    job = write_job(tmp_path)
    rc = main(["submit", str(job), "--set", "train.stepz=3", "--address", closed_address()])
    err = capsys.readouterr().err
    assert rc == 2 and "train.stepz" in err and "cannot reach" not in err


@pytest.mark.parametrize("address", ["ray://head:10001", "grpc://head:1"])
def test_a_non_dashboard_address_is_bad_input(tmp_path, capsys, address):
    rc = main(["submit", str(write_job(tmp_path)), "--address", address])
    assert rc == 2 and "not a Ray dashboard URL" in capsys.readouterr().err


def test_no_address_anywhere_says_where_to_put_one(tmp_path, capsys, monkeypatch):
    for var in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    rc = main(["submit", str(write_job(tmp_path))])
    err = capsys.readouterr().err
    assert rc == 2 and "--address" in err and "cluster.dashboard" in err


def test_address_precedence_flag_then_yaml_then_environment():
    env = {"RAY_API_SERVER_ADDRESS": "http://env-api:8265", "RAY_ADDRESS": "http://env-ray:8265"}
    cluster = SimpleNamespace(dashboard="yaml-dash:8265", address="ray://yaml-ray:10001")
    assert resolve_address(address_sources("http://flag:8265/", cluster, env)) == "http://flag:8265"
    assert resolve_address(address_sources(None, cluster, env)) == "http://yaml-dash:8265"
    # cluster.address names the cluster `ganforge run` joins; only an http URL there is a Jobs API address
    no_dash = SimpleNamespace(dashboard=None, address="ray://yaml-ray:10001")
    assert resolve_address(address_sources(None, no_dash, env)) == "http://env-api:8265"
    assert resolve_address(address_sources(None, SimpleNamespace(dashboard=None, address="http://c:8265"), env)) == "http://c:8265"
    # RAY_ADDRESS as exported by `ganforge stack up` is a GCS address for ray.init: skipped, not misused
    assert resolve_address(address_sources(None, None, {"RAY_ADDRESS": "127.0.0.1:6379", **{"RAY_API_SERVER_ADDRESS": "h:1"}})) == "http://h:1"
    assert resolve_address(address_sources(None, None, {"RAY_ADDRESS": "http://r:8265"})) == "http://r:8265"
    with pytest.raises(ClusterInputError):
        resolve_address(address_sources(None, None, {"RAY_ADDRESS": "127.0.0.1:6379"}))


# ------------------------------------------------------------------ the package
def make_project(root: Path) -> Path:
    for rel in ["orchestrator/cli/__main__.py", "trainers/data/stream.py", "jobs/ring8.yaml", "pyproject.toml",
                ".venv/bin/python", ".git/HEAD", "data/big.parquet", "results/run-1/x.pt", "ganforge-results/a",
                "mlruns/0/meta.yaml", "mlflow.db", "orchestrator/__pycache__/x.pyc", "notes/secret-scratch.txt"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    (root / ".gitignore").write_text("notes/\n")
    return root


def test_package_ships_code_and_job_yaml_but_not_venv_results_data_or_ignored_files(tmp_path):
    project = make_project(tmp_path / "project")
    staging = tmp_path / "staging"
    staging.mkdir()
    package = build_package("name: tiny\n", "/somewhere/else/tiny.yaml", staging, project=project)
    names = set(zipfile.ZipFile(package.path).namelist())
    assert {"orchestrator/cli/__main__.py", "trainers/data/stream.py", "jobs/ring8.yaml", "pyproject.toml"} <= names
    assert package.job_file == f"{JOB_DIR_IN_PACKAGE}/tiny.yaml" and package.job_file in names
    for left_out in (".venv/", ".git/", "data/", "results/", "ganforge-results/", "mlruns/", "mlflow.db", "notes/"):
        assert not any(n.startswith(left_out) for n in names), left_out
    assert not any("__pycache__" in n for n in names)


def test_real_project_package_is_small_and_runnable(tmp_path):
    root = project_root()
    assert root is not None and (root / "pyproject.toml").is_file()
    package = build_package("name: tiny\n", "tiny.yaml", tmp_path, project=root)
    names = zipfile.ZipFile(package.path).namelist()
    assert "orchestrator/cli/__main__.py" in names and "trainers/registry.py" in names
    assert not any(n.startswith((".venv/", ".git/")) for n in names)
    assert package.size < 20 * 1024**2


def test_package_over_rays_upload_limit_names_the_culprits(tmp_path):
    # Ray 2.60's dashboard refuses request bodies over 100 MiB (below the GCS's 512 MiB); a small limit stands in for
    # it here so the test does not zip 100 MiB.
    assert upload_limit_bytes() == 100 * 1024**2
    project = make_project(tmp_path / "project")
    (project / "weights").mkdir()
    (project / "weights" / "blob.bin").write_bytes(random.Random(0).randbytes(2 * 1024**2))  # incompressible
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(ClusterInputError) as info:
        build_package("name: tiny\n", "tiny.yaml", staging, project=project, limit=1024**2)
    message = str(info.value)
    assert "over Ray's 1.0 MiB upload limit" in message and "weights/ (2.0 MiB)" in message
    assert ".rayignore" in message and "\n" not in message


# ------------------------------------------------------------------ against the real head
def test_submit_tiny_job_with_s3_storage_follows_logs_to_success_and_registers_the_model(ray_head, tmp_path, capsys,
                                                                                          s3_prefix):
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    from orchestrator.storage import filesystem

    job = write_job(tmp_path, results=s3_prefix)  # the head reaches S3 with the AWS environment it was started with
    rc = main(["submit", str(job), "--address", ray_head])
    out, err = capsys.readouterr()
    assert "submitted ganforge-tiny-" in err and f"dashboard: {ray_head}/#/jobs/ganforge-tiny-" in err
    assert rc == 0, f"stdout:\n{out[-4000:]}\nstderr:\n{err[-2000:]}"
    assert "SUCCEEDED" in err
    assert out.strip(), "the job's logs were not followed"
    submission_id = err.split("submitted ", 1)[1].split()[0]
    client = JobsClient(ray_head)
    assert client.status(submission_id) == "SUCCEEDED"
    assert "_ganforge_submit/tiny.yaml" in client.info(submission_id).entrypoint
    versions = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").search_model_versions("name='tiny-gan'")
    assert versions, "the job did not register tiny-gan in the MLflow its YAML named"
    s3, root = filesystem(s3_prefix)
    stored = [i.path for i in s3.get_file_info(pafs.FileSelector(root, recursive=True))]
    assert any(p.endswith("/ganforge-run.json") for p in stored) and any("/checkpoint_" in p for p in stored)


def test_jobs_commands_list_status_logs_and_stop_a_long_job(ray_head, tmp_path, capsys):
    job = write_job(tmp_path, model_name="long-gan")
    rc = main(["submit", str(job), "--set", "train.steps=1000000", "--set", "train.eval_every=100000",
               "--address", ray_head, "--no-wait"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    submission_id = out.strip()
    assert submission_id.startswith("ganforge-tiny-")  # --no-wait prints only the id on stdout
    client = JobsClient(ray_head)
    wait_for_status(client, submission_id, {"RUNNING"})

    assert main(["jobs", "list", "--address", ray_head]) == 0
    listed = capsys.readouterr().out
    assert submission_id in listed and "RUNNING" in listed

    assert main(["jobs", "status", submission_id, "--address", ray_head]) == 0
    assert f"{submission_id}: RUNNING" in capsys.readouterr().out

    assert main(["jobs", "stop", submission_id, "--address", ray_head]) == 0
    assert f"job {submission_id} STOPPED" in capsys.readouterr().err
    assert client.status(submission_id) == "STOPPED"

    assert main(["jobs", "logs", submission_id, "--address", ray_head]) == 0
    assert "orchestrator.cli run _ganforge_submit/tiny.yaml" in capsys.readouterr().out
    # following a job that has ended prints its logs and exits with its outcome
    assert main(["jobs", "logs", submission_id, "--follow", "--address", ray_head]) == 1
    out, err = capsys.readouterr()
    assert "orchestrator.cli run _ganforge_submit/tiny.yaml" in out and f"job {submission_id} STOPPED" in err


def test_unknown_submission_id_is_bad_input(ray_head, capsys):
    rc = main(["jobs", "status", "ganforge-no-such-job", "--address", ray_head])
    err = capsys.readouterr().err
    assert rc == 2 and "no job ganforge-no-such-job" in err and err.count("\n") == 1


def test_flag_wins_over_a_stale_ray_address_in_the_environment(ray_head, monkeypatch, capsys):
    # Ray's SDK alone would replace the explicit address with RAY_ADDRESS and fail.
    monkeypatch.setenv("RAY_ADDRESS", closed_address())
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", closed_address())
    assert main(["jobs", "list", "--address", ray_head]) == 0
    assert os.environ["RAY_ADDRESS"].startswith("http://127.0.0.1:")  # restored after the SDK read it


def test_max_retries_resubmits_a_failed_job_with_the_resume_command(ray_head, tmp_path, capsys):
    # Trivial shell entrypoints stand in for `ganforge run` / `ganforge resume`: the first attempt fails, the retry
    # (the command a real submission resumes with) succeeds.
    attempts = tmp_path / "attempts"
    submission = Submission(name="retry", runtime_env={}, entrypoint=f"echo run >> {attempts}; exit 3",
                            retry_entrypoint=f"echo resume >> {attempts}", metadata={"ganforge.job": "retry"})
    client = JobsClient(ray_head)
    submission_id = run_attempts(client, submission, max_retries=2)
    err = capsys.readouterr().err
    assert attempts.read_text().split() == ["run", "resume"]
    assert submission_id.endswith("-retry1") and client.status(submission_id) == "SUCCEEDED"
    assert client.status(submission_id.removesuffix("-retry1")) == "FAILED"
    assert "FAILED; resubmitting to resume from storage (retry 1 of 2)" in err
    assert client.info(submission_id).metadata["ganforge.attempt"] == "2"


def test_a_job_failing_every_attempt_ends_with_a_one_line_error(ray_head, capsys):
    submission = Submission(name="doomed", runtime_env={}, entrypoint="exit 3", retry_entrypoint="exit 4", metadata={})
    with pytest.raises(JobFailedError) as info:
        run_attempts(JobsClient(ray_head), submission, max_retries=1)
    message = str(info.value)
    assert "-retry1 FAILED" in message and "exit code 4" in message and "\n" not in message
    assert "ganforge jobs logs" in message


def test_the_retry_command_resumes_and_falls_back_to_run_when_nothing_was_stored():
    command = retry_entrypoint("_ganforge_submit/tiny.yaml", ["train.steps=5"])
    assert command.startswith("python -m orchestrator.cli resume _ganforge_submit/tiny.yaml --set train.steps=5;")
    assert "if [ $rc -eq 2 ]; then exec python -m orchestrator.cli run _ganforge_submit/tiny.yaml --set train.steps=5" in command


def test_max_retries_with_no_wait_is_refused(tmp_path, capsys):
    rc = main(["submit", str(write_job(tmp_path)), "--address", closed_address(), "--no-wait", "--max-retries", "2"])
    assert rc == 2 and "--no-wait" in capsys.readouterr().err
