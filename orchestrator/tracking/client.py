"""The MLflow client and everything every MLflow call of ganforge shares: which tracking URI, one client per URI,
retries of transient failures (with the HTTP policy that keeps an outage from stalling training) and their one-line
errors, redaction of secrets before anything is logged or stored, and the names and values MLflow accepts.

The job run (job_run.py), the trial runs (trial_run.py) and the model registry (versions.py, register.py, pull.py,
browse.py) call MLflow only through these.
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import tempfile
import threading
import time
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator, TypeVar

from orchestrator.errors import RegistryError

log = logging.getLogger(__name__)
T = TypeVar("T")

TRIAL_TAG = "ganforge.trial_id"
JOB_TAG = "ganforge.job"
KIND_TAG = "ganforge.kind"
PARENT_TAG = "mlflow.parentRunId"
REDACT_TAG = "ganforge.redact_env"  # names (never values) of the environment variables the job YAML refers to

# Per-request HTTP policy. MLflow's defaults (7 retries, exponential backoff, 120 s timeout) turn an outage into
# minutes of stall; we retry at our own level instead, where the buffer lives.
# Progress bars are off too: they would interleave with the live trial table.
TRIAL_HTTP_POLICY = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",  # one "View run" line per trial would bury the trial table
}
DRIVER_HTTP_POLICY = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # MLflow's "View run at: <tracking URI>/#/..." would print the URI with any user:password in it.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}

_MAX_PARAM_VALUE = 6000  # MLflow's limit on a param value
MAX_BATCH = 100  # params (and tags) per log_batch call
MAX_METRIC_BATCH = 1000


# --------------------------------------------------------------------------------------------------------------------
# Tracking URI


def resolve_tracking_uri(configured: str | None) -> str:
    """MLFLOW_TRACKING_URI > `registry.tracking_uri` > a SQLite file in the working directory.

    Local stores are made absolute, because Ray runs trials in other working directories.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    return absolute_local_uri(uri)


def absolute_local_uri(uri: str) -> str:
    """sqlite:///relative.db and plain paths made absolute; anything else unchanged."""
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///"):]
        if path and path != ":memory:" and not path.startswith("/"):
            return f"sqlite:///{Path(path).resolve()}"
        return uri
    if "://" not in uri and not uri.startswith(("databricks", "uc:")):
        return str(Path(uri).resolve())
    return uri


def safe_uri(uri: str) -> str:
    """A URI fit for messages and logs: user:password@ removed."""
    return re.sub(r"//[^/@\s]*@", "//", uri)


def _local_artifact_root(tracking_uri: str) -> str | None:
    """Artifacts of a SQLite store live next to the database file, wherever the process that logs them runs."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///"):])
        return (db.parent / "mlruns").as_uri()
    return None


@functools.lru_cache(maxsize=8)
def client_for(tracking_uri: str):
    """One client per URI and process: a SQLite store checks its schema on creation, which costs seconds, and
    reused trial processes would otherwise pay it for every trial."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


# --------------------------------------------------------------------------------------------------------------------
# Transient failures and retries


_TRANSIENT_TEXT = (
    "database is locked",
    "api request to",  # MLflow's wrapper around connection errors and timeouts
    "connection refused",
    "max retries exceeded",
    "timed out",
    "temporarily unavailable",
    "connection aborted",
    "remote end closed",
    "bad gateway",
    "service unavailable",
)


def is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying: the server or database is unreachable, overloaded or locked."""
    import requests

    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 10:
        if isinstance(current, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError, TimeoutError)):
            return True
        status = getattr(current, "http_status_code", None) or getattr(getattr(current, "response", None), "status_code", None)
        if isinstance(status, int) and (status >= 500 or status == 429):
            return True
        if any(text in str(current).lower() for text in _TRANSIENT_TEXT):
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False


_policy_lock = threading.Lock()
# Values held by open `http_policy` blocks: key -> [value, how many blocks rely on it]. Kept in this dict, never in
# os.environ: setenv/unsetenv while another thread's native code calls getenv is undefined behaviour in glibc (a
# trial crashed with SIGSEGV in getenv under instance norm while its MLflow sender thread toggled these variables).
_policy_held: dict[str, list] = {}


@functools.cache
def _mlflow_variables() -> dict[str, Any]:
    """MLflow's environment-variable objects by name, each made to read a value held here (unless the user set it)."""
    from mlflow import environment_variables as variables

    found = {v.name: v for v in vars(variables).values() if isinstance(v, variables._EnvironmentVariable)}
    for variable in found.values():
        variable.get = functools.partial(_policy_get, variable, variable.get)  # the instance's, not the class's
    return found


def _policy_get(variable: Any, read_environment: Callable[[], Any]) -> Any:
    held = _policy_held.get(variable.name)
    if held is None or variable.name in os.environ:  # a value the user set in the environment wins
        return read_environment()
    value = held[0]
    return value.lower() in ("true", "1") if variable.type is bool else variable.type(value)


@contextlib.contextmanager
def http_policy(policy: dict[str, str]) -> Iterator[None]:
    """Apply an MLflow HTTP policy for the calls inside (every thread of the process sees it while a block is open);
    a value the user set in the environment wins.

    MLflow reads these settings at each request. Blocks may overlap across threads (a trial's sender thread and its
    main thread): values are reference-counted, the first block's value holds until the last block using it ends.
    """
    variables = _mlflow_variables()
    unknown = set(policy) - set(variables)
    if unknown:  # a renamed MLflow setting would otherwise be ignored without a word
        raise RuntimeError(f"MLflow has no setting {', '.join(sorted(unknown))}")
    with _policy_lock:
        for key, value in policy.items():
            _policy_held.setdefault(key, [value, 0])[1] += 1
    try:
        yield
    finally:
        with _policy_lock:
            for key in policy:
                _policy_held[key][1] -= 1
                if not _policy_held[key][1]:
                    del _policy_held[key]


@contextlib.contextmanager
def quiet_mlflow_logs() -> Iterator[None]:
    """Hide MLflow's INFO chatter ("Validating input example...") unless ganforge runs with --debug."""
    logger = logging.getLogger("mlflow")
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        yield
        return
    previous = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(previous)


def with_retries(fn: Callable[[], T], *, what: str, deadline_s: float, policy: dict[str, str] = DRIVER_HTTP_POLICY) -> T:
    """Call `fn`, retrying transient failures with backoff until `deadline_s` has passed, then re-raise."""
    deadline = time.monotonic() + deadline_s
    delay = 0.2
    while True:
        try:
            with http_policy(policy):
                return fn()
        except Exception as exc:
            if not is_transient(exc) or time.monotonic() + delay > deadline:
                raise
            log.debug("%s failed (%s); retrying in %.1fs", what, first_line(exc), delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def first_line(exc: BaseException) -> str:
    """An exception's first line for a message or log, without any user:password@ it quotes."""
    text = str(exc).strip().splitlines()
    return safe_uri(text[0][:300]) if text else type(exc).__name__


def registry_error(what: str, tracking_uri: str, exc: BaseException) -> RegistryError:
    reason = "tracking server unreachable" if is_transient(exc) else first_line(exc)
    return RegistryError(f"{what} at {safe_uri(tracking_uri)} failed: {reason}")


def call(tracking_uri: str, what: str, fn: Callable[[], T], retry_s: float = 30.0) -> T:
    """Run one MLflow request with retries; what still fails becomes a one-line RegistryError naming `what`."""
    try:
        return with_retries(fn, what=what, deadline_s=retry_s)
    except RegistryError:  # ours already (ModelNotFoundError too): its message is for the user as it is
        raise
    except Exception as exc:
        raise registry_error(what, tracking_uri, exc) from exc


# --------------------------------------------------------------------------------------------------------------------
# Secrets

_SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|(^|_)(API_)?KEY($|_)|ACCESS_KEY", re.IGNORECASE)
_ENV_REFERENCE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
REDACTED = "***"


def referenced_env_names(job_yaml_text: str) -> list[str]:
    """Environment variables a job YAML refers to as ${NAME} (or $NAME)."""
    return sorted(set(_ENV_REFERENCE.findall(job_yaml_text or "")))


class Redactor:
    """Replaces secret values with *** in anything about to be logged or stored.

    Secrets are the values of environment variables with secret-looking names, plus every variable the job YAML
    refers to (`${NAME}`), since those are how a YAML keeps credentials out of its text. Short values are skipped:
    replacing "1" everywhere would mangle numbers, and a 1-char secret is no secret.
    """

    MIN_LENGTH = 6

    def __init__(self, secrets: set[str]) -> None:
        self.secrets = sorted((s for s in secrets if len(s) >= self.MIN_LENGTH), key=len, reverse=True)

    @classmethod
    def from_environment(cls, job_yaml_text: str = "", environ: dict[str, str] | None = None, extra_names=()) -> "Redactor":
        env = os.environ if environ is None else environ
        names = {name for name in env if _SECRET_NAME.search(name)} | set(referenced_env_names(job_yaml_text)) | set(extra_names)
        return cls({env[name] for name in names if env.get(name)})

    @classmethod
    def for_job(cls, job) -> "Redactor":
        """What a job's messages and records must not show: the values its YAML refers to, secret-looking env."""
        return cls.from_environment(job.text)

    def text(self, value: str) -> str:
        """`value` with every secret replaced by *** and any user:password@ in a URI removed."""
        for secret in self.secrets:
            value = value.replace(secret, REDACTED)
        return safe_uri(value)

    def value(self, obj: Any) -> Any:
        """Redact strings anywhere inside dicts, lists and tuples."""
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, dict):
            return {self.text(str(k)): self.value(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.value(v) for v in obj]
        return obj


# --------------------------------------------------------------------------------------------------------------------
# Names, values, experiments and batched logging


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr_g": 1e-4}} -> {"train.lr_g": 1e-4}; lists stay whole (JSON)."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: obj} if prefix else {}


def param_value(value: Any, limit: int = _MAX_PARAM_VALUE) -> str:
    """A param or tag value as MLflow stores it: strings as-is, the rest as JSON, cut to `limit` characters."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def safe_artifact_path(artifact_path: str | None) -> str | None:
    """Reject artifact paths that could escape the run's artifact folder."""
    if artifact_path in (None, ""):
        return None
    parts = PurePosixPath(artifact_path.replace("\\", "/")).parts
    if artifact_path.startswith(("/", "\\")) or any(p in ("..", "") for p in parts) or ":" in artifact_path:
        raise RegistryError(f"artifact path {artifact_path!r} is not a plain relative path")
    return "/".join(parts)


def ensure_experiment(client, name: str, tracking_uri: str) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            raise RegistryError(f"MLflow experiment {name!r} at {safe_uri(tracking_uri)} is deleted; restore it or choose another name")
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=_local_artifact_root(tracking_uri) and f"{_local_artifact_root(tracking_uri)}/{fs_name(name)}")
    except MlflowException as exc:  # another process created it first
        if "already exists" not in str(exc).lower():
            raise
        return client.get_experiment_by_name(name).experiment_id


def fs_name(name: str) -> str:
    """A name fit for a file or folder (an experiment's artifact folder, a spool, a cached model version)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "_"


def now_ms() -> int:
    return int(time.time() * 1000)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def quote(value: str) -> str:
    """A value inside single quotes of an MLflow filter string."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def check_status(status: str) -> str:
    if status not in ("FINISHED", "FAILED", "KILLED"):
        raise ValueError(f"run status must be FINISHED, FAILED or KILLED, got {status!r}")
    return status


def log_params(client, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(mlflow_key(k), param_value(v)) for k, v in params.items()]
    for start in range(0, len(items), MAX_BATCH):
        client.log_batch(run_id, params=items[start : start + MAX_BATCH])


def log_text(client, run_id: str, text: str, artifact_file: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / PurePosixPath(artifact_file).name
        path.write_text(text)
        client.log_artifact(run_id, str(path), str(PurePosixPath(artifact_file).parent) if "/" in artifact_file else None)


def mlflow_key(name: Any) -> str:
    """A param, metric or tag name MLflow accepts: letters, digits, _ - . : / and spaces; anything else becomes '_'.

    (A search space key such as "train.loss,train.n_critic" would otherwise fail the whole batch.)
    """
    return re.sub(r"[^A-Za-z0-9_\-.:/ ]", "_", str(name)) or "_"
