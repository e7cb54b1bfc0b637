"""`ganforge stack`: a Ray head, an MLflow server and an S3 server on 127.0.0.1, without Docker.

Each service runs as the leader of its own process group (`start_new_session`), so stopping a service kills exactly
the processes it started (Ray's daemons included) and never another Ray on the machine, unlike `ray stop`. The pids,
ports and exported variables are written to `<dir>/stack.json`; `up` is idempotent and `down` only signals processes
whose command line still matches what was recorded (a pid reused after a reboot is left alone).
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Container
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

from orchestrator.errors import ClusterError
from orchestrator.errors import ClusterInputError  # bad input at the cluster boundary: exit 2

STATE_FILE = "stack.json"
ENV_FILE = "env.sh"
BUCKET = "ganforge"
READY_TIMEOUT_S = 180.0  # MLflow migrates a fresh SQLite file on first start: ~8 s idle, ~30 s on a busy 2-core box
STOP_GRACE_S = 20.0

# moto accepts any key pair; these name the local stack and are not secrets.
LOCAL_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "ganforge-local",
    "AWS_SECRET_ACCESS_KEY": "ganforge-local",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# Variables from the caller's shell that would point the stack's Ray (and the jobs it runs) somewhere else.
_ADDRESS_VARS = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "MLFLOW_TRACKING_URI")


def default_stack_dir() -> Path:
    return Path(os.environ.get("GANFORGE_STACK_DIR") or Path.home() / ".cache" / "ganforge" / "stack").expanduser()


# Ray's workers take ports from this range by default; it refuses a component port inside it.
RAY_WORKER_PORTS = range(10002, 20000)


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int, avoid: Container[int] = RAY_WORKER_PORTS) -> list[int]:
    """`count` distinct free ports, none in `avoid`. Every socket stays bound until all are picked: picked one at a
    time, the kernel may hand the same just-released port out twice (Ray then refuses to start)."""
    held: list[socket.socket] = []
    picked: list[int] = []
    try:
        while len(picked) < count:
            sock = socket.socket()
            held.append(sock)  # rejected ones stay bound too, so the kernel cannot offer them again
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            if port not in avoid:
                picked.append(port)
        return picked
    finally:
        for sock in held:
            sock.close()


def venv_bin(name: str) -> str:
    """A console script installed beside this interpreter (the project venv), else whatever PATH finds."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's environment minus cluster addresses, with this venv first on PATH.

    Ray runs a job's entrypoint with whatever `python` is first on the PATH it was started with, so putting the venv
    first makes `python -m orchestrator.cli` find ganforge's dependencies.
    """
    env = {k: v for k, v in os.environ.items() if k not in _ADDRESS_VARS}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra or {})
    return env


# ------------------------------------------------------------------ process groups
def _stat(pid: int) -> Optional[tuple[str, int, int]]:
    """(state, ppid, pgrp) of a Linux process from /proc, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses
    return fields[0], int(fields[1]), int(fields[2])


def group_pids(pgid: int) -> list[int]:
    """Live members of a process group plus their descendants in other groups (Ray workers call setsid)."""
    if not Path("/proc/self/stat").exists():  # not Linux: the group leader is all we can see
        try:
            os.killpg(pgid, 0)
            return [pgid]
        except OSError:
            return []
    table: dict[int, tuple[str, int, int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))):
            table[int(entry.name)] = stat
    members = {pid for pid, (state, _, pgrp) in table.items() if pgrp == pgid and state != "Z"}
    frontier = set(members)
    while frontier:
        frontier = {pid for pid, (state, ppid, _) in table.items() if ppid in frontier and state != "Z"} - members
        members |= frontier
    return sorted(members)


def _cmdline(pid: int) -> Optional[list[str]]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return None


def process_matches(pid: int, argv: list[str]) -> bool:
    """True while `pid` is alive and still runs `argv` (an interpreter in front of a script is allowed)."""
    stat = _stat(pid)
    if stat is None:
        if Path("/proc/self/stat").exists():
            return False
        try:  # not Linux: trust the pid
            os.kill(pid, 0)
            return True
        except OSError:
            return False
    cmdline, tail = _cmdline(pid), argv[1:]
    return stat[0] != "Z" and cmdline is not None and len(cmdline) > len(tail) and cmdline[len(cmdline) - len(tail):] == tail


def spawn(argv: list[str], log_path: Path, env: dict[str, str], cwd: Path) -> int:
    """Start `argv` as the leader of a new session; its output goes to `log_path`. Returns its pid (= its pgid)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return proc.pid


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def _signal_group(pgid: int, sig: int) -> None:
    """The whole group, plus descendants that moved to groups of their own."""
    try:
        os.killpg(pgid, sig)
    except OSError:
        pass
    _signal_all(group_pids(pgid), sig)


def _wait_gone(pgid: int, timeout_s: float, pid: Optional[int] = None) -> bool:
    """Wait until the group (or only `pid` in it) has no live process left."""
    deadline = time.monotonic() + timeout_s
    while (pids := group_pids(pgid)) and (pid is None or pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def stop_group(pgid: int, grace_s: float = STOP_GRACE_S) -> None:
    """Stop a service started by `spawn`: SIGTERM its leader, then every process left, then SIGKILL.

    The leader goes first because some shut their children down in order (`ray start --block` drains the node in
    ~3 s; signalling every Ray process at once takes the whole grace period). Others (`mlflow server`) exit at once
    and leave their workers, which the group signal then reaches.
    """
    if pgid in group_pids(pgid):
        _signal_all([pgid], signal.SIGTERM)
        _wait_gone(pgid, grace_s / 2, pid=pgid)
    if group_pids(pgid):
        _signal_group(pgid, signal.SIGTERM)
        if not _wait_gone(pgid, grace_s / 2):
            _signal_group(pgid, signal.SIGKILL)
            _wait_gone(pgid, 5)
    try:  # reap the leader when this process started it, so no zombie lingers in a long-lived caller
        os.waitpid(pgid, os.WNOHANG)
    except ChildProcessError:
        pass


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return 200 <= resp.status < 300
    except (OSError, urllib.error.URLError, ValueError):
        return False


def _last_log_line(path: Path) -> str:
    """The last non-empty line of a service's log: usually the reason it died."""
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else "empty log"


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


# ------------------------------------------------------------------ services
@dataclass
class Service:
    """One started service, as recorded in the state file."""

    name: str
    pid: int
    argv: list[str]
    url: str
    health_url: str
    log: str

    def running(self) -> bool:
        return process_matches(self.pid, self.argv)

    def exited(self) -> bool:
        """Gone or a zombie. For a service this process spawned and has not reaped, the pid cannot have been reused,
        so no command-line check is needed (`running` re-reads /proc/PID/cmdline, for pids from a state file)."""
        stat = _stat(self.pid)
        return stat is None or stat[0] == "Z"

    def healthy(self) -> bool:
        return self.running() and http_ok(self.health_url)

    def stop(self, grace_s: float = STOP_GRACE_S) -> bool:
        """Stop the service's process group; True if anything of it was still running.

        With the leader gone, processes left in its group are still ours: Linux does not hand out a pid that is
        still some group's id. A live leader running something else is a stranger that reused the pid.
        """
        orphans = self.exited() and bool(group_pids(self.pid))
        if self.running() or orphans:
            stop_group(self.pid, grace_s)
            return True
        return False

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.exited():
                raise ClusterError(f"{self.name} exited while starting ({_last_log_line(Path(self.log))}); log: {self.log}")
            if http_ok(self.health_url):
                return
            time.sleep(0.25)
        raise ClusterError(f"{self.name} did not answer {self.health_url} within {timeout_s:.0f} s; see {self.log}")


@dataclass
class RayPorts:
    """Every port a Ray head binds. Left to Ray, several default to fixed numbers (52365, 10001, ...) that collide with
    any other Ray on the machine, so each is picked free here."""

    gcs: int
    dashboard: int
    client_server: int
    dashboard_agent_listen: int
    dashboard_agent_grpc: int
    metrics_export: int
    node_manager: int
    object_manager: int
    runtime_env_agent: int

    @classmethod
    def pick(cls, gcs: int = 0, dashboard: int = 0, taken: tuple[int, ...] = ()) -> "RayPorts":
        """Free ports for whatever is not given; `taken`: ports other services of the caller will bind."""
        names = [f for f in cls.__dataclass_fields__ if f not in ("gcs", "dashboard")]
        fresh = iter(free_ports(len(names) + 2, avoid={*RAY_WORKER_PORTS, gcs, dashboard, *taken}))
        return cls(gcs=gcs or next(fresh), dashboard=dashboard or next(fresh), **{n: next(fresh) for n in names})

    def flags(self) -> list[str]:
        return [
            f"--port={self.gcs}", f"--dashboard-port={self.dashboard}",
            f"--ray-client-server-port={self.client_server}",
            f"--dashboard-agent-listen-port={self.dashboard_agent_listen}",
            f"--dashboard-agent-grpc-port={self.dashboard_agent_grpc}",
            f"--metrics-export-port={self.metrics_export}", f"--node-manager-port={self.node_manager}",
            f"--object-manager-port={self.object_manager}", f"--runtime-env-agent-port={self.runtime_env_agent}",
        ]


def ray_head_argv(temp_dir: Path, ports: RayPorts, num_cpus: int | None = None,
                  object_store_bytes: int | None = None, num_gpus: int | None = None) -> list[str]:
    """`ray start --head --block` bound to 127.0.0.1; --block keeps `ray start` alive as the group leader."""
    argv = [venv_bin("ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
            "--dashboard-host=127.0.0.1", "--include-dashboard=true", "--disable-usage-stats",
            f"--temp-dir={temp_dir}", *ports.flags()]
    if num_cpus is not None:
        argv.append(f"--num-cpus={num_cpus}")
    if num_gpus is not None:  # logical GPUs: Ray schedules and assigns them whether or not the hardware exists
        argv.append(f"--num-gpus={num_gpus}")
    if object_store_bytes is not None:
        argv.append(f"--object-store-memory={object_store_bytes}")
    return argv


def start_ray_head(workdir: Path, *, num_cpus: int | None = None, object_store_bytes: int | None = None,
                   env: dict[str, str] | None = None, ports: RayPorts | None = None,
                   wait: bool = True, num_gpus: int | None = None) -> tuple[Service, RayPorts]:
    """Start a Ray head (Jobs API included) whose processes all live in one process group under `workdir`.

    Ray's temp dir holds unix sockets whose paths must stay under ~107 characters, so keep `workdir` short.
    """
    ports = ports or RayPorts.pick()
    workdir = Path(workdir)
    temp_dir = workdir / "ray"
    temp_dir.mkdir(parents=True, exist_ok=True)
    argv = ray_head_argv(temp_dir, ports, num_cpus, object_store_bytes, num_gpus)
    head_env = child_env({"RAY_AUTH_MODE": "disabled", **(env or {})})
    log = workdir / "logs" / "ray.log"
    dashboard = f"http://127.0.0.1:{ports.dashboard}"
    service = Service("ray", spawn(argv, log, head_env, workdir), argv, dashboard, f"{dashboard}/api/version", str(log))
    if wait:
        try:
            service.wait_ready()
        except ClusterError:
            service.stop()
            raise
    return service, ports


def _mlflow_service(workdir: Path, port: int, env: dict[str, str]) -> Service:
    argv = [venv_bin("mlflow"), "server", "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
            "--artifacts-destination", f"s3://{BUCKET}/mlflow-artifacts",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    log = workdir / "logs" / "mlflow.log"
    url = f"http://127.0.0.1:{port}"
    return Service("mlflow", spawn(argv, log, env, workdir), argv, url, f"{url}/health", str(log))


def _s3_service(workdir: Path, port: int, env: dict[str, str]) -> Service:
    argv = [venv_bin("moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    log = workdir / "logs" / "s3.log"
    url = f"http://127.0.0.1:{port}"
    return Service("s3", spawn(argv, log, env, workdir), argv, url, f"{url}/moto-api/", str(log))


def _create_bucket(endpoint: str) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=LOCAL_AWS_ENV["AWS_DEFAULT_REGION"],
                      aws_access_key_id=LOCAL_AWS_ENV["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=LOCAL_AWS_ENV["AWS_SECRET_ACCESS_KEY"])
    s3.create_bucket(Bucket=BUCKET)


# ------------------------------------------------------------------ the stack
@dataclass
class StackState:
    services: list[Service] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"services": [asdict(s) for s in self.services], "env": self.env}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> "StackState":
        data = json.loads(text)
        return cls([Service(**s) for s in data.get("services", [])], dict(data.get("env", {})))


class Stack:
    """The local stack whose state lives in `root` (default ~/.cache/ganforge/stack)."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root).expanduser().absolute() if root else default_stack_dir()

    @property
    def state_path(self) -> Path:
        return self.root / STATE_FILE

    def state(self) -> Optional[StackState]:
        try:
            return StackState.from_json(self.state_path.read_text())
        except FileNotFoundError:
            return None
        except (ValueError, TypeError, KeyError) as exc:
            raise ClusterError(f"{self.state_path}: unreadable stack state ({exc}); delete it and stop stray "
                               "processes by hand") from None

    def up(self, *, num_cpus: int | None = None, s3_port: int = 0, mlflow_port: int = 0, ray_port: int = 0,
           dashboard_port: int = 0, on_progress: Callable[[str], None] = lambda _: None) -> StackState:
        """Start S3, MLflow and Ray (or return the running stack). Returns the state with the variables to export."""
        current = self.state()
        if current and all(s.healthy() for s in current.services):
            return current
        if current:
            on_progress("stopping the remains of an earlier stack")
            self.down()
        for port, flag in ((s3_port, "--s3-port"), (mlflow_port, "--mlflow-port"), (ray_port, "--ray-port"),
                           (dashboard_port, "--dashboard-port")):
            if port and port_in_use(port):
                raise ClusterInputError(f"{flag} {port}: something already listens on 127.0.0.1:{port}")
        self.root.mkdir(parents=True, exist_ok=True)
        given = {ray_port, dashboard_port, s3_port, mlflow_port}
        fresh = iter(free_ports(2, avoid={*RAY_WORKER_PORTS, *given}))
        s3_port, mlflow_port = s3_port or next(fresh), mlflow_port or next(fresh)
        ray_ports = RayPorts.pick(gcs=ray_port, dashboard=dashboard_port, taken=(s3_port, mlflow_port))
        s3_url, mlflow_url = f"http://127.0.0.1:{s3_port}", f"http://127.0.0.1:{mlflow_port}"
        services_env = {**LOCAL_AWS_ENV, "AWS_ENDPOINT_URL": s3_url, "MLFLOW_S3_ENDPOINT_URL": s3_url}
        exports = {
            "RAY_ADDRESS": f"127.0.0.1:{ray_ports.gcs}",  # what ray.init (and so `ganforge run`) joins
            "RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{ray_ports.dashboard}",  # the Jobs API (`ganforge submit`)
            "MLFLOW_TRACKING_URI": mlflow_url,
            **services_env,
        }
        state = StackState(env=exports)
        try:
            on_progress(f"starting S3 (moto) on {s3_url}")
            s3 = _s3_service(self.root, s3_port, child_env(services_env))
            state.services.append(s3)
            self._save(state)
            s3.wait_ready()
            _create_bucket(s3_url)
            # MLflow's first start is slow (schema migration): launch it, start Ray meanwhile, then wait for both.
            on_progress(f"starting MLflow on {mlflow_url} (SQLite + s3://{BUCKET}/mlflow-artifacts)")
            mlflow = _mlflow_service(self.root, mlflow_port, child_env(services_env))
            state.services.append(mlflow)
            self._save(state)
            on_progress(f"starting Ray head on 127.0.0.1:{ray_ports.gcs} (dashboard :{ray_ports.dashboard})")
            # Jobs inherit the head's environment, so they reach this S3 and MLflow without extra configuration.
            ray, _ = start_ray_head(self.root, num_cpus=num_cpus, ports=ray_ports, wait=False,
                                    env={**services_env, "MLFLOW_TRACKING_URI": mlflow_url})
            state.services.append(ray)
            self._save(state)
            ray.wait_ready()
            mlflow.wait_ready()
        except BaseException:
            self.down()
            raise
        (self.root / ENV_FILE).write_text(format_exports(exports) + "\n")
        return state

    def down(self) -> list[str]:
        """Stop every recorded service and forget the state. Returns the names of those that were running."""
        state = self.state()
        if not state:
            return []
        services = list(reversed(state.services))
        with ThreadPoolExecutor(len(services) or 1) as pool:  # in parallel: each waits for its own processes
            stopped = [s.name for s, was_running in zip(services, pool.map(Service.stop, services)) if was_running]
        self.state_path.unlink(missing_ok=True)
        (self.root / ENV_FILE).unlink(missing_ok=True)
        return stopped

    def _save(self, state: StackState) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(state.to_json())
        tmp.replace(self.state_path)


def format_exports(env: dict[str, str]) -> str:
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())
