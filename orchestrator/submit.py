"""`ganforge submit` and `ganforge jobs`: job YAMLs on a Ray cluster through Ray's Job Submission SDK.

What Ray's Jobs API does not do, and this module adds: validate the job locally before anything is uploaded; pick the
address with ganforge's precedence (Ray's SDK lets RAY_ADDRESS silently override an explicit address); package the
project plus the job YAML and refuse, with the biggest culprits named, a package the cluster would reject; answer
fast and in one line when nothing listens; resubmit a failed job as `ganforge resume`, which continues from storage.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shlex
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, TextIO

from orchestrator.errors import ClusterError, ClusterInputError, JobFailedError

log = logging.getLogger(__name__)

# Inside the uploaded package: where the job YAML lands (the entrypoint runs from the package root).
JOB_DIR_IN_PACKAGE = "_ganforge_submit"
# gitwildmatch patterns, anchored with "/" where only the project's top level is meant (trainers/data is code).
PROJECT_EXCLUDES = [
    "/.git", "/.venv", "/venv", "__pycache__", "*.pyc", "/.pytest_cache", "*.egg-info",
    "/ganforge-results", "/results", "/data", "/mlruns", "/mlartifacts", "*.db", f"/{JOB_DIR_IN_PACKAGE}",
]
CONNECT_TIMEOUT_S = 10.0
POLL_S = 1.0
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


# ------------------------------------------------------------------ address
@dataclass(frozen=True)
class AddressSource:
    name: str  # where it came from, for error messages: --address, cluster.dashboard, RAY_ADDRESS, ...
    value: Optional[str]
    only_http: bool = False  # a Ray (GCS/client) address here is meant for `ganforge run`, not for the Jobs API


def normalize_address(raw: str, source: str) -> str:
    """An http(s) Jobs API URL without trailing slash; a bare host:port gets http://."""
    address = raw.strip().rstrip("/")
    if "://" not in address:
        address = f"http://{address}"
    scheme = address.split("://", 1)[0].lower()
    if scheme not in ("http", "https") or not address.split("://", 1)[1]:
        raise ClusterInputError(
            f"{source} {raw!r} is not a Ray dashboard URL; ganforge talks to Ray's Jobs API, e.g. http://HEAD:8265"
        )
    return address


def resolve_address(sources: list[AddressSource]) -> str:
    """The first address given, in the order of `sources` (ganforge's precedence: flag > YAML > environment)."""
    for source in sources:
        if not source.value:
            continue
        if source.only_http and not source.value.strip().lower().startswith(("http://", "https://")):
            continue
        return normalize_address(source.value, source.name)
    in_yaml = ", set cluster.dashboard in the job YAML" if any(s.name == "cluster.dashboard" for s in sources) else ""
    raise ClusterInputError(
        f"no cluster address: pass --address http://HEAD:8265{in_yaml} or export RAY_API_SERVER_ADDRESS "
        "(`ganforge stack up` prints one for a local cluster)"
    )


def address_sources(flag: Optional[str], cluster: Any = None, environ: Mapping[str, str] = os.environ) -> list[AddressSource]:
    """--address > cluster.dashboard > cluster.address (http only) > RAY_API_SERVER_ADDRESS > RAY_ADDRESS (http only)."""
    sources = [AddressSource("--address", flag)]
    if cluster is not None:
        sources += [AddressSource("cluster.dashboard", getattr(cluster, "dashboard", None)),
                    AddressSource("cluster.address", getattr(cluster, "address", None), only_http=True)]
    sources += [AddressSource("RAY_API_SERVER_ADDRESS", environ.get("RAY_API_SERVER_ADDRESS")),
                AddressSource("RAY_ADDRESS", environ.get("RAY_ADDRESS"), only_http=True)]
    return sources


@contextlib.contextmanager
def _address_env_hidden() -> Iterator[None]:
    """Ray's SDK replaces an explicit address with RAY_API_SERVER_ADDRESS / RAY_ADDRESS; hide them while it reads."""
    saved = {k: os.environ.pop(k) for k in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS") if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _probe(address: str) -> None:
    """Fail in one line, within CONNECT_TIMEOUT_S, when no Ray dashboard answers (the SDK itself waits forever)."""
    import requests

    hint = "is the cluster up (`ganforge stack up` starts a local one) and the address its dashboard (port 8265)?"
    try:
        resp = requests.get(f"{address}/api/version", timeout=CONNECT_TIMEOUT_S)
    except requests.exceptions.Timeout:
        raise ClusterError(f"cannot reach a Ray cluster at {address}: no answer within {CONNECT_TIMEOUT_S:.0f} s; {hint}") from None
    except requests.exceptions.RequestException as exc:
        reason = "unknown host" if "resolve" in str(exc).lower() or "name or service" in str(exc).lower() else "connection refused"
        raise ClusterError(f"cannot reach a Ray cluster at {address}: {reason}; {hint}") from None
    if resp.status_code == 200:
        try:
            resp.json()["ray_version"]
        except (ValueError, KeyError, TypeError):
            raise ClusterError(f"{address} answers, but not as a Ray dashboard (no ray_version at /api/version)") from None


# Ray's SDK logs every upload and websocket close at INFO through its own stderr handler; ganforge prints its own
# one-line summaries, so those stay quiet unless --debug turned the root logger to DEBUG.
_RAY_SDK_LOGGERS = ("ray.dashboard.modules.dashboard_sdk", "ray.dashboard.modules.job.sdk")


def connect(address: str):
    """A JobSubmissionClient for `address`, or a one-line ClusterError."""
    from ray.job_submission import JobSubmissionClient

    if logging.getLogger().level > logging.DEBUG:
        for name in _RAY_SDK_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    _probe(address)
    with _address_env_hidden():
        try:
            return JobSubmissionClient(address)
        except (ConnectionError, RuntimeError, OSError) as exc:
            raise ClusterError(f"Ray cluster at {address} refused the connection: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def job_url(address: str, submission_id: str) -> str:
    return f"{address}/#/jobs/{submission_id}"


# ------------------------------------------------------------------ package
def upload_limit_bytes() -> int:
    """The largest working_dir the Jobs API accepts: the dashboard's HTTP body limit (100 MiB in Ray 2.60), below the
    GCS's own package limit (512 MiB, `RAY_max_grpc_message_size`). Both are read from the installed Ray."""
    from ray._private import ray_constants
    from ray._private.runtime_env.packaging import GCS_STORAGE_MAX_SIZE

    return min(ray_constants.DASHBOARD_CLIENT_MAX_SIZE, GCS_STORAGE_MAX_SIZE)


def project_root() -> Optional[Path]:
    """The source checkout ganforge runs from, or None when it is installed (the cluster's image then provides it)."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() and (root / "trainers").is_dir() else None


@dataclass
class JobPackage:
    path: Path  # the zip uploaded as runtime_env working_dir
    size: int
    job_file: str  # the job YAML's path inside the package, relative to the entrypoint's working directory


def _mib(n: int) -> str:
    return f"{n / 1024**2:.1f} MiB"


def _largest_entries(zip_path: Path, top: int = 3) -> list[tuple[str, int]]:
    sizes: dict[str, int] = {}
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            head, sep, _ = info.filename.partition("/")
            key = head + sep  # "data/" for a folder, the file name for a top-level file
            sizes[key] = sizes.get(key, 0) + info.compress_size
    return sorted(sizes.items(), key=lambda kv: -kv[1])[:top]


def build_package(job_text: str, job_filename: str, dest_dir: Path, *, project: Optional[Path] = None,
                  excludes: list[str] = PROJECT_EXCLUDES, limit: Optional[int] = None) -> JobPackage:
    """Zip the project (Ray's own packager, so .gitignore/.rayignore apply as Ray applies them) plus the job YAML.

    Measuring the zip we upload, rather than letting the dashboard reject it, turns Ray's "413" into an error that
    names the biggest folders and the fix.
    """
    from ray._private.runtime_env.packaging import create_package

    limit = upload_limit_bytes() if limit is None else limit
    zip_path = Path(dest_dir) / "ganforge-job.zip"
    if project is not None:
        include_gitignore = os.environ.get("RAY_RUNTIME_ENV_IGNORE_GITIGNORE", "0") != "1"  # as Ray's SDK does
        create_package(str(project), zip_path, include_gitignore=include_gitignore, excludes=list(excludes), logger=log)
    job_file = f"{JOB_DIR_IN_PACKAGE}/{Path(job_filename).name}"
    with zipfile.ZipFile(zip_path, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(job_file, job_text)
    size = zip_path.stat().st_size
    if size >= limit:
        biggest = ", ".join(f"{name} ({_mib(n)})" for name, n in _largest_entries(zip_path))
        raise ClusterInputError(
            f"the job package from {project} is {_mib(size)}, over Ray's {_mib(limit)} upload limit; largest: "
            f"{biggest}. Exclude them in .rayignore or .gitignore, or put data on S3 (data.uri: s3://...)"
        )
    return JobPackage(zip_path, size, job_file)


# ------------------------------------------------------------------ entrypoints
def cli_entrypoint(command: str, job_file: str, overrides: list[str]) -> str:
    """`python -m orchestrator.cli COMMAND JOB --set ...`: the cluster's own python, no console script needed."""
    argv = ["python", "-m", "orchestrator.cli", command, job_file]
    for item in overrides:
        argv += ["--set", item]
    return shlex.join(argv)


def retry_entrypoint(job_file: str, overrides: list[str]) -> str:
    """Resume from storage; when the failed attempt died before writing any run (`resume` exits 2), start afresh."""
    resume, run = cli_entrypoint("resume", job_file, overrides), cli_entrypoint("run", job_file, overrides)
    return f"{resume}; rc=$?; if [ $rc -eq 2 ]; then exec {run}; fi; exit $rc"


def portability_warnings(spec: Any) -> list[str]:
    """Settings that work on a laptop but lose results on a cluster, where the job runs in a temporary directory."""
    warnings = []

    def relative_local(uri: Optional[str]) -> bool:
        return bool(uri) and "://" not in uri and ":" not in uri.split("/", 1)[0] and not uri.startswith("/")

    storage = spec.storage.uri
    if storage is None or relative_local(storage):
        warnings.append(f"storage.uri is {storage or 'unset'}: results stay in the job's temporary directory on the "
                        "cluster and --max-retries cannot resume; use s3://... or a path all nodes share")
    tracking = spec.registry.tracking_uri
    if spec.registry.enabled and (tracking is None or tracking.startswith("sqlite:///") and not tracking.startswith("sqlite:////")):
        warnings.append(f"registry.tracking_uri is {tracking or 'unset'}: unless the cluster sets MLFLOW_TRACKING_URI, "
                        "the model is registered in a SQLite file inside the job's temporary directory")
    if relative_local(spec.data.uri):
        warnings.append(f"data.uri {spec.data.uri} is a relative path: the cluster resolves it inside the uploaded "
                        "project, which leaves out /data; use s3://... or an absolute path all nodes share")
    return warnings


# ------------------------------------------------------------------ job operations
def _sdk_call(what: str, address: str, fn, *args, **kwargs):
    """Run an SDK call; an unknown id is bad input (exit 2), anything else a cluster error (exit 1)."""
    try:
        return fn(*args, **kwargs)
    except RuntimeError as exc:
        if "status code 404" in str(exc):
            job = args[0] if args else "?"
            raise ClusterInputError(f"no job {job} on {address}; `ganforge jobs list` shows the jobs there") from None
        raise ClusterError(f"{what} failed on {address}: {_first_line(exc)}") from None
    except (ConnectionError, OSError) as exc:
        raise ClusterError(f"{what} failed: lost the Ray cluster at {address}: {_first_line(exc)}") from None


class JobsClient:
    """The cluster side of `ganforge submit` and `ganforge jobs`, for one address."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sdk = connect(address)

    def submit(self, *, entrypoint: str, runtime_env: dict, submission_id: str, metadata: dict[str, str]) -> str:
        return _sdk_call("submitting the job", self.address, self.sdk.submit_job, entrypoint=entrypoint,
                         runtime_env=runtime_env, submission_id=submission_id, metadata=metadata)

    def info(self, submission_id: str):
        return _sdk_call("reading the job", self.address, self.sdk.get_job_info, submission_id)

    def status(self, submission_id: str) -> str:
        return str(_sdk_call("reading the job status", self.address, self.sdk.get_job_status, submission_id))

    def logs(self, submission_id: str) -> str:
        return _sdk_call("reading the job logs", self.address, self.sdk.get_job_logs, submission_id)

    def list(self) -> list:
        jobs = _sdk_call("listing jobs", self.address, self.sdk.list_jobs)
        return sorted((j for j in jobs if j.submission_id), key=lambda j: j.start_time or 0, reverse=True)

    def stop(self, submission_id: str) -> bool:
        """Ask the cluster to stop the job; False when it had already ended."""
        return bool(_sdk_call("stopping the job", self.address, self.sdk.stop_job, submission_id))

    def wait(self, submission_id: str, poll_s: float = POLL_S) -> str:
        """Block until the job ends; returns SUCCEEDED, FAILED or STOPPED."""
        while (status := self.status(submission_id)) not in TERMINAL:
            time.sleep(poll_s)
        return status

    def follow(self, submission_id: str, out: TextIO) -> str:
        """Stream the job's logs to `out` until it ends; returns its final status.

        Uses the SDK's websocket tail; if that drops (head restart, proxy timeout) it falls back to polling the full
        log and printing what is new, so no line is printed twice.
        """
        printed = 0

        async def tail() -> None:
            nonlocal printed
            async for chunk in self.sdk.tail_job_logs(submission_id):
                out.write(chunk)
                out.flush()
                printed += len(chunk)

        try:
            asyncio.run(tail())
        except Exception as exc:  # aiohttp and the SDK raise a variety of errors for a dropped websocket
            if "status code 404" in str(exc):
                raise ClusterInputError(f"no job {submission_id} on {self.address}") from None
            log.debug("log tail dropped (%s); polling instead", exc)
            while True:
                status = self.status(submission_id)
                text = self.logs(submission_id)
                out.write(text[printed:])
                out.flush()
                printed = len(text)
                if status in TERMINAL:
                    return status
                time.sleep(POLL_S)
        return self.wait(submission_id)


# ------------------------------------------------------------------ submit
def new_submission_id(job_name: str) -> str:
    return f"ganforge-{job_name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def _say(err: TextIO, message: str) -> None:
    print(f"ganforge: {message}", file=err, flush=True)


@dataclass
class Submission:
    """One job as the cluster sees it: the same package for every attempt, a first and a retry command."""

    name: str
    runtime_env: dict
    entrypoint: str
    retry_entrypoint: str
    metadata: dict[str, str]
    package_size: int = 0


def submit_job(path: str | Path, overrides: list[str] = (), *, address: Optional[str] = None, wait: bool = True,
               max_retries: int = 0, out: Optional[TextIO] = None, err: Optional[TextIO] = None) -> str:
    """Validate, package, submit and (by default) follow a job YAML. Returns the last submission id.

    Raises SpecError for a bad YAML, ClusterError when the cluster cannot take the job, JobFailedError when it ends
    FAILED or STOPPED (after `max_retries` resubmissions of a FAILED job, each resuming from storage).
    """
    from orchestrator.spec import load_job

    err = err or sys.stderr  # looked up per call: tests and callers may swap sys.stderr
    if max_retries < 0:
        raise ClusterInputError(f"--max-retries must be 0 or more, got {max_retries}")
    if max_retries and not wait:
        raise ClusterInputError("--max-retries watches the job to resubmit it; it cannot be combined with --no-wait")
    overrides = list(overrides)
    job = load_job(path, overrides)  # fail here, not after an upload, on a bad YAML
    target = resolve_address(address_sources(address, job.spec.cluster))
    for warning in portability_warnings(job.spec):
        _say(err, f"warning: {warning}")
    client = JobsClient(target)
    with tempfile.TemporaryDirectory(prefix="ganforge-submit-") as staging:
        package = build_package(job.text, Path(path).name, Path(staging), project=project_root())
        submission = Submission(
            name=job.spec.name,
            runtime_env={"working_dir": str(package.path)},
            entrypoint=cli_entrypoint("run", package.job_file, overrides),
            retry_entrypoint=retry_entrypoint(package.job_file, overrides),
            metadata={"ganforge.job": job.spec.name, "ganforge.file": Path(path).name},
            package_size=package.size,
        )
        return run_attempts(client, submission, wait=wait, max_retries=max_retries, out=out, err=err)


def run_attempts(client: "JobsClient", submission: Submission, *, wait: bool = True, max_retries: int = 0,
                 out: Optional[TextIO] = None, err: Optional[TextIO] = None) -> str:
    """Submit, follow, and resubmit a FAILED job with its retry command up to `max_retries` times.

    Returns the submission id that SUCCEEDED (or, without `wait`, the one submitted); raises JobFailedError when the
    last attempt ends FAILED or STOPPED. A STOPPED job is never resubmitted: someone meant to stop it.
    """
    out, err = out or sys.stdout, err or sys.stderr
    base_id = new_submission_id(submission.name)
    entrypoint = submission.entrypoint
    for attempt in range(max_retries + 1):
        submission_id = base_id if attempt == 0 else f"{base_id}-retry{attempt}"
        metadata = {**submission.metadata, "ganforge.attempt": str(attempt + 1)}
        client.submit(entrypoint=entrypoint, runtime_env=submission.runtime_env, submission_id=submission_id,
                      metadata=metadata)
        _say(err, f"submitted {submission_id} ({_mib(submission.package_size)} package) to {client.address}")
        _say(err, f"dashboard: {job_url(client.address, submission_id)}")
        if not wait:
            print(submission_id, file=out, flush=True)
            return submission_id
        status = _follow_or_detach(client, submission_id, out, err)
        if status == "SUCCEEDED":
            _say(err, f"job {submission_id} SUCCEEDED")
            return submission_id
        if status != "FAILED" or attempt == max_retries:
            break
        _say(err, f"job {submission_id} FAILED; resubmitting to resume from storage (retry {attempt + 1} of {max_retries})")
        entrypoint = submission.retry_entrypoint
    reason = short_message(client.info(submission_id).message)
    raise JobFailedError(f"job {submission_id} {status}{': ' + reason if reason else ''} "
                         f"(logs: ganforge jobs logs {submission_id} --address {client.address})")


def short_message(message: Optional[str]) -> str:
    """Ray's job message cut to its first clause: for a failed job Ray appends up to 20,000 characters of logs."""
    lines = (message or "").strip().splitlines()
    return lines[0].split(", last available logs", 1)[0].rstrip(":. ") if lines else ""


def _follow_or_detach(client: JobsClient, submission_id: str, out: TextIO, err: TextIO) -> str:
    try:
        return client.follow(submission_id, out)
    except KeyboardInterrupt:
        _say(err, f"stopped following; {submission_id} keeps running. Follow again with "
                  f"`ganforge jobs logs {submission_id} --follow`, stop it with `ganforge jobs stop {submission_id}`")
        raise
