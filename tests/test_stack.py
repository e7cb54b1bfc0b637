"""`ganforge stack up | status | down`: a real Ray head, MLflow server and moto S3 server on 127.0.0.1."""
from __future__ import annotations

import shlex
import shutil
import socket
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.stack import BUCKET, Stack, process_matches
from orchestrator.submit import JobsClient

pytestmark = pytest.mark.filterwarnings("ignore:ssl=None is deprecated:DeprecationWarning")


def parse_exports(text: str) -> dict[str, str]:
    env = {}
    for line in text.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    return env


def port_open(url: str) -> bool:
    host, port = url.split("://", 1)[-1].rsplit(":", 1)
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, int(port.split("/")[0]))) == 0


@pytest.fixture
def stack_dir():
    # Short, because Ray's unix sockets live under <dir>/ray and their paths must fit in ~107 characters.
    path = Path(tempfile.mkdtemp(prefix="gf-stack-"))
    yield path
    Stack(path).down()  # never leave services behind, even when an assertion failed
    shutil.rmtree(path, ignore_errors=True)


def test_stack_up_serves_ray_mlflow_and_s3_then_down_stops_them(stack_dir, capsys, monkeypatch):
    assert main(["stack", "up", "--dir", str(stack_dir), "--num-cpus", "1"]) == 0
    out, err = capsys.readouterr()
    env = parse_exports(out)
    assert set(env) >= {"RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "MLFLOW_TRACKING_URI", "AWS_ENDPOINT_URL",
                        "MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"}
    assert all(v.startswith(("http://127.0.0.1:", "127.0.0.1:")) for k, v in env.items() if "ADDRESS" in k or "URI" in k or "URL" in k)
    assert (stack_dir / "env.sh").read_text().strip() == out.strip()

    # S3: the printed variables are all boto3 needs
    import boto3

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s3 = boto3.client("s3")
    s3.put_object(Bucket=BUCKET, Key="hello.txt", Body=b"hi")
    assert s3.get_object(Bucket=BUCKET, Key="hello.txt")["Body"].read() == b"hi"

    # MLflow: tracks runs, and its artifacts land in the stack's S3
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    run = client.create_run(client.create_experiment(f"stack-{uuid.uuid4().hex[:6]}"))
    note = stack_dir / "note.txt"
    note.write_text("artifact")
    client.log_artifact(run.info.run_id, str(note))
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert any(k.endswith(f"{run.info.run_id}/artifacts/note.txt") for k in keys), keys

    # Ray: a job submitted to the stack runs the venv's python and inherits the S3 settings without being told
    jobs = JobsClient(env["RAY_API_SERVER_ADDRESS"])
    probe = "import boto3; boto3.client('s3').put_object(Bucket='ganforge', Key='from-job.txt', Body=b'job')"
    submission_id = jobs.submit(entrypoint=f"python -c {shlex.quote(probe)}", runtime_env={},
                                submission_id=f"stack-probe-{uuid.uuid4().hex[:6]}", metadata={})
    assert jobs.wait(submission_id) == "SUCCEEDED", jobs.logs(submission_id)
    assert s3.get_object(Bucket=BUCKET, Key="from-job.txt")["Body"].read() == b"job"

    # up again: reports the running stack instead of starting a second one
    assert main(["stack", "up", "--dir", str(stack_dir)]) == 0
    assert parse_exports(capsys.readouterr().out) == env
    assert main(["stack", "status", "--dir", str(stack_dir)]) == 0
    assert parse_exports(capsys.readouterr().out) == env

    services = Stack(stack_dir).state().services
    assert main(["stack", "down", "--dir", str(stack_dir)]) == 0
    assert "stopped ray, mlflow, s3" in capsys.readouterr().err
    assert not any(s.running() for s in services)
    assert not any(port_open(url) for url in (env["RAY_API_SERVER_ADDRESS"], env["MLFLOW_TRACKING_URI"], env["AWS_ENDPOINT_URL"]))
    assert main(["stack", "status", "--dir", str(stack_dir)]) == 1
    assert "no stack" in capsys.readouterr().err


def test_down_leaves_alone_a_process_that_reused_a_recorded_pid(stack_dir, capsys):
    # A stale state file (say, after a reboot) whose pid now belongs to someone else: `down` must not signal it.
    import subprocess
    import sys

    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (stack_dir / "stack.json").write_text(
            '{"services": [{"name": "s3", "pid": %d, "argv": ["moto_server", "-p", "1"], "url": "http://127.0.0.1:1",'
            ' "health_url": "http://127.0.0.1:1/", "log": "x"}], "env": {}}' % stranger.pid)
        assert not process_matches(stranger.pid, ["moto_server", "-p", "1"])
        assert main(["stack", "status", "--dir", str(stack_dir)]) == 1
        assert main(["stack", "down", "--dir", str(stack_dir)]) == 0
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_a_requested_port_already_in_use_is_bad_input(stack_dir, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        rc = main(["stack", "up", "--dir", str(stack_dir), "--mlflow-port", str(port)])
    err = capsys.readouterr().err
    assert rc == 2 and f"--mlflow-port {port}" in err and err.count("\n") == 1
    assert Stack(stack_dir).state() is None  # nothing was started


def test_stopping_a_service_whose_leader_died_still_stops_what_it_left_running(stack_dir):
    # `ray start --block` killed with SIGKILL leaves the GCS, raylet and dashboard running in its process group.
    import os
    import signal
    import sys

    from orchestrator.stack import Service, group_pids, spawn

    argv = ["/bin/sh", "-c", f"{sys.executable} -c 'import time; time.sleep(120)' & wait"]
    leader = spawn(argv, stack_dir / "leader.log", dict(os.environ), stack_dir)
    service = Service("fake", leader, argv, "http://127.0.0.1:1", "http://127.0.0.1:1/", str(stack_dir / "leader.log"))
    while len(group_pids(leader)) < 2:  # the leader and its sleeping child
        time.sleep(0.05)
    os.kill(leader, signal.SIGKILL)
    os.waitpid(leader, 0)
    assert not service.running() and group_pids(leader)
    assert service.stop() is True
    assert group_pids(leader) == []


class ReusingKernel:
    """Hands out the lowest unbound port from `first`, as a kernel may when a port was just released."""

    def __init__(self, first: int) -> None:
        self.first, self.bound = first, set()

    def socket(self):
        kernel = self

        class Sock:
            port = None

            def bind(self, address):
                self.port = next(p for p in range(kernel.first, 65536) if p not in kernel.bound)
                kernel.bound.add(self.port)

            def getsockname(self):
                return ("127.0.0.1", self.port)

            def close(self):
                kernel.bound.discard(self.port)

        return Sock()


def test_ray_ports_are_distinct_and_outside_the_worker_range_even_when_the_kernel_reuses_ports(monkeypatch):
    from orchestrator import stack

    monkeypatch.setattr(stack.socket, "socket", ReusingKernel(first=stack.RAY_WORKER_PORTS[-1] - 2).socket)
    ports = stack.RayPorts.pick(taken=(20003,))
    values = list(vars(ports).values())
    assert len(set(values)) == len(values)  # Ray refuses to start when two components share a port
    assert not any(p in stack.RAY_WORKER_PORTS for p in values) and 20003 not in values
