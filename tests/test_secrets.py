"""Issue 19, secrets stay secret: a job whose tracking URI carries a password through ${GANFORGE_TEST_CANARY}, run
with S3 storage under a random AWS secret key, leaves neither value in anything a user, an operator or a later job
can read: what every ganforge command prints, the run record and every object under storage.uri, the Ray job as
the dashboard serves it, and MLflow's params, tags and artifacts.

One tiny job is submitted to the session's Ray head (which, like a KubeRay pod, holds both secrets in its environment)
and then resumed and registered from this machine; the MLflow test server ignores the password.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.stack import child_env
from tests.fixtures.jobs import job_yaml

pytestmark = [pytest.mark.timeout(600),
              pytest.mark.filterwarnings("ignore:ssl=None is deprecated:DeprecationWarning")]  # inside Ray's SDK

NAME = "gf19-secrets"
def job_text(storage: str, server: str) -> str:
    return job_yaml(NAME, storage=storage, tracking_uri=f"http://ganforge:${{GANFORGE_TEST_CANARY}}@{server}",
                    model={"width": 16}, train={"steps": 100, "eval_every": 50, "eval_samples": 300},
                    search={"num_samples": 1, "space": {"train.seed": {"grid": [0, 1]}}})


def scan(where: str, text: str, canaries: list[str]) -> None:
    for canary in canaries:
        assert canary not in text, f"a secret leaked into {where}"


def s3_bodies(s3_endpoint: str, env: dict[str, str], bucket: str, prefix: str) -> dict[str, str]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name=env["AWS_DEFAULT_REGION"],
                      aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read().decode("latin-1")
            for page in pages for o in page.get("Contents", [])}


def mlflow_texts(tracking_uri: str, experiment: str, model: str, dest: Path) -> dict[str, str]:
    """Params, tags and every artifact of the job's runs, and the registered versions' tags and files."""
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    found = {}
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    for run in runs:
        rid = run.info.run_id
        found[f"run {rid} params"] = json.dumps(run.data.params)
        found[f"run {rid} tags"] = json.dumps(run.data.tags)
        local = Path(client.download_artifacts(rid, "", str(dest / rid)))
        found.update({f"run {rid} artifact {p.relative_to(local)}": p.read_text(errors="replace")
                      for p in local.rglob("*") if p.is_file()})
    for version in client.search_model_versions(f"name='{model}'"):
        found[f"{model} v{version.version} tags"] = json.dumps(version.tags) + (version.description or "")
        source = client.get_model_version_download_uri(model, version.version)
        local = Path(download_artifacts(artifact_uri=source, dst_path=str(dest / f"v{version.version}"),
                                        tracking_uri=tracking_uri))
        found.update({f"{model} v{version.version} file {p.relative_to(local)}": p.read_text(errors="replace")
                      for p in local.rglob("*") if p.is_file()})
    assert len(runs) >= 3 and any(k.startswith(f"{model} v") for k in found), "nothing was tracked or registered"
    return found


def test_a_canary_secret_reaches_no_output_record_storage_ray_job_or_mlflow(
        ray_cluster, cluster_secrets, mlflow_server, mlflow_tracking_uri, s3_endpoint, s3_env_vars, s3_bucket,
        tmp_path):
    import requests

    password = cluster_secrets["GANFORGE_TEST_CANARY"]
    canaries = [password, s3_env_vars["AWS_SECRET_ACCESS_KEY"]]
    prefix = f"{NAME}-{tmp_path.name}"
    server = mlflow_tracking_uri.split("://", 1)[1]
    (tmp_path / "job.yaml").write_text(job_text(f"s3://{s3_bucket}/{prefix}", server))
    env = child_env({**s3_env_vars, **cluster_secrets, "RAY_AUTH_MODE": "disabled"})
    env.pop("MLFLOW_TRACKING_URI", None)

    def ganforge(*args: str, ray: str | None = None) -> str:
        proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=300, env={**env, **({"RAY_ADDRESS": ray} if ray else {})})
        said = proc.stdout + proc.stderr
        assert proc.returncode == 0, said[-4000:]
        scan(f"the output of `ganforge {args[0]}`", said, canaries)
        return said

    ganforge("validate", "job.yaml")
    assert "tracking_uri" in ganforge("run", "--dry-run", "job.yaml")
    said = ganforge("submit", "job.yaml", "--address", ray_cluster.dashboard_url)
    submission_id = said.split("submitted ", 1)[1].split()[0]
    assert "SUCCEEDED" in said and f"registered {NAME} version 1" in said
    ganforge("jobs", "logs", submission_id, "--address", ray_cluster.dashboard_url)
    # From this machine, on the same cluster: finish (nothing left to run) and register again from S3.
    assert "0 to run" in ganforge("resume", "job.yaml", ray=ray_cluster.gcs_address)
    assert "registered" in ganforge("register", "job.yaml")

    # The Ray job as the dashboard serves it: metadata, runtime env, entrypoint, message.
    for endpoint in ("/api/jobs/", f"/api/jobs/{submission_id}"):
        reply = requests.get(ray_cluster.dashboard_url + endpoint, timeout=30)
        assert reply.ok and submission_id in reply.text
        scan(f"the dashboard's {endpoint}", reply.text, canaries)

    objects = s3_bodies(s3_endpoint, s3_env_vars, s3_bucket, prefix + "/")
    assert any(k.endswith("ganforge-run.json") for k in objects) and any("checkpoint_" in k for k in objects)
    for key, body in objects.items():
        scan(f"s3://{s3_bucket}/{key}", body, canaries)

    for where, text in mlflow_texts(mlflow_tracking_uri, f"ganforge/{NAME}", NAME, tmp_path / "mlflow").items():
        scan(f"MLflow {where}", text, canaries)


def test_credentials_inside_a_storage_uri_are_refused_without_echoing_them(tmp_path, monkeypatch):
    from orchestrator.errors import StorageError
    from orchestrator.storage import filesystem

    with pytest.raises(StorageError) as refused:
        filesystem("s3://AKIAEXAMPLE:gf-secret-in-uri@bucket/results")
    message = str(refused.value)
    assert refused.value.exit_code == 2 and "storage.uri" in message and "AWS environment" in message
    assert "gf-secret-in-uri" not in message and "AKIAEXAMPLE" not in message
