"""Preflight against real services: the session MLflow server, moto S3, and closed ports on 127.0.0.1."""
import socket

import pytest

from orchestrator import preflight as pf
from orchestrator.cli import main
from orchestrator.errors import PreflightError
from orchestrator.spec import load_job_text

JOB = ("name: pre\ndata:\n  uri: {data}\nmodel:\n  family: gan\nstorage:\n  uri: {storage}\n"
       "registry:\n  tracking_uri: {mlflow}\n")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def job(data="builtin:ring8", storage="./results", mlflow="sqlite:///mlflow.db"):
    return load_job_text(JOB.format(data=data, storage=storage, mlflow=mlflow), "job.yaml")


def failures(loaded, **kwargs) -> list[str]:
    with pytest.raises(PreflightError) as info:
        pf.preflight(loaded, **kwargs)
    return str(info.value).splitlines()


def test_timeouts_are_short_and_single_attempt():
    assert pf.HTTP_TIMEOUT_S <= 5 and pf.S3_ATTEMPTS == "1"


def test_real_services_pass_and_the_probe_leaves_nothing(mlflow_tracking_uri, s3_prefix, s3_bucket, tmp_path,
                                                         monkeypatch):
    import boto3

    monkeypatch.chdir(tmp_path)
    pf.preflight(job(storage=s3_prefix, mlflow=mlflow_tracking_uri))
    listed = boto3.client("s3").list_objects_v2(Bucket=s3_bucket, Prefix=s3_prefix.split("/", 3)[3])
    assert listed.get("KeyCount", 0) == 0  # the probe object was removed
    assert list(tmp_path.iterdir()) == []  # no results folder, no mlflow.db


def test_closed_mlflow_port_is_one_line_naming_field_and_endpoint(tmp_path, monkeypatch, capsys):
    port = closed_port()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "job.yaml").write_text(JOB.format(data="builtin:ring8", storage="./results",
                                                  mlflow=f"http://127.0.0.1:{port}"))
    assert main(["run", "job.yaml"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"ganforge: error: registry.tracking_uri: MLflow at http://127.0.0.1:{port}")
    assert "does not answer" in err[0] and "urllib3" not in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.yaml"]  # no Ray, no results folder, no mlflow.db
    assert main(["validate", "job.yaml"]) == 0  # the static check alone does not call services
    assert main(["validate", "job.yaml", "--preflight"]) == 2


def test_s3_problems_name_their_fields(s3_env, s3_bucket, s3_prefix, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lines = failures(job(data=f"{s3_prefix}/no-such-set", storage="s3://no-such-bucket-here/results"))
    assert lines[0].startswith("data.uri: ") and "no-such-set" in lines[0]
    assert lines[1].startswith("storage.uri: s3://no-such-bucket-here/results is not writable")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    lines = failures(job(data=f"{s3_prefix}/x"))
    assert len(lines) == 1 and lines[0].startswith("data.uri: ")


def test_manifest_kind_is_checked_against_family_and_metric(tmp_path, monkeypatch, cache):
    from trainers.data import import_dataset

    monkeypatch.chdir(tmp_path)
    import_dataset("builtin:ring8", str(tmp_path / "ring"))
    lines = failures(load_job_text(f"data:\n  uri: {tmp_path / 'ring'}\nmodel:\n  family: dcgan\n"
                                   "search:\n  metric: fid\n", "job.yaml"))
    assert lines == [f"data.uri: model.family: 'dcgan' trains on image data, but {tmp_path / 'ring'} holds points "
                     "data (--no-preflight skips this check)"]
    assert failures(job(data=str(tmp_path / "missing")))[0].startswith("data.uri: ")


def test_submit_leaves_local_paths_to_the_cluster(tmp_path):
    pf.preflight(job(data=str(tmp_path / "not-here"), storage="/nonexistent-root/x"), on_cluster=True)


def test_a_silent_server_is_announced_then_times_out(tmp_path, monkeypatch):
    import io

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        err = io.StringIO()
        lines = failures(job(mlflow=url), err=err)
    waited = f"ganforge: preflight: waiting for MLflow at {url} (registry.tracking_uri) ..."
    assert err.getvalue().splitlines() == [waited]
    assert lines == [f"registry.tracking_uri: MLflow at {url} does not answer (timed out; waited at most 3 s) "
                     "(--no-preflight skips this check)"]


def test_missing_inception_weights_fail_before_anything_starts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GANFORGE_WEIGHTS", raising=False)
    text = JOB.format(data="builtin:digits", storage="./results", mlflow="sqlite:///mlflow.db").replace(
        "family: gan", "family: dcgan") + f"metrics:\n  features: inception\n  weights: {tmp_path / 'weights'}\n"
    lines = failures(load_job_text(text, "job.yaml"))
    assert len(lines) == 1 and lines[0].startswith("metrics.weights: metrics.features inception needs the Inception "
                                                   "weights file pt_inception-2015-12-05-6726825d.pth")
    assert f"not found at metrics.weights ({tmp_path / 'weights'})" in lines[0]
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "pt_inception-2015-12-05-6726825d.pth").write_bytes(b"checked when loaded")
    pf.preflight(load_job_text(text, "job.yaml"))  # found: loading (and its checks) is the trial's


def test_an_embedded_ray_that_misses_its_start_window_is_a_one_line_cluster_error(monkeypatch):
    """On an overloaded machine Ray's raylet can miss its hard-coded 30 s registration window, and ray.init raises a
    bare Exception (seen in the suite under load): the user gets one line naming the cause, not Ray's traceback."""
    import ray

    from orchestrator.errors import ClusterError
    from orchestrator.runner import init_ray

    def late_raylet(*args, **kwargs):  # Ray's own message (ray/_private/node.py), raised where Ray raises it
        raise Exception("The current node timed out during startup. This could happen because some of the raylet "
                        "failed to startup or the GCS has become overloaded.")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", late_raylet)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(ClusterError) as info:
        init_ray(None)
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert message.startswith("cannot start an embedded Ray: The current node timed out during startup")
