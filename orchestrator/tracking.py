"""MLflow tracking: one parent run per job (driver side), one child run per trial (logged from the trial's process).

Trials log from their own processes because Ray Train V2 rejects Tune logger callbacks. A trial never stalls on
the tracking server: each request gets a short timeout and no urllib3 retries, and what fails is buffered
(metrics in memory, artifacts copied to a spool folder) and sent again later; `finish()` flushes. SQLite's
"database is locked", when several trial processes write one file, is retried the same way.
"""
from __future__ import annotations

import contextlib
import functools
import csv
import io
import json
import logging
import os
import re
import shutil
import subprocess
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
_MAX_BATCH = 100  # params (and tags) per log_batch call
_MAX_METRIC_BATCH = 1000


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
_policy_refs: dict[str, int] = {}  # keys we set, and how many open `http_policy` blocks rely on each


@contextlib.contextmanager
def http_policy(policy: dict[str, str]) -> Iterator[None]:
    """Apply an MLflow HTTP policy for the calls inside; a value the user set in the environment wins.

    MLflow reads these variables at each request. The blocks may overlap across threads (a trial's sender thread
    and its main thread), so keys are reference-counted and removed when the last block using them ends.
    """
    held = []
    with _policy_lock:
        for key, value in policy.items():
            if key in _policy_refs:
                _policy_refs[key] += 1
            elif key not in os.environ:
                os.environ[key] = value
                _policy_refs[key] = 1
            else:
                continue
            held.append(key)
    try:
        yield
    finally:
        with _policy_lock:
            for key in held:
                _policy_refs[key] -= 1
                if not _policy_refs[key]:
                    del _policy_refs[key]
                    os.environ.pop(key, None)


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
            log.debug("%s failed (%s); retrying in %.1fs", what, _first_line(exc), delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _first_line(exc: BaseException) -> str:
    """An exception's first line for a message or log, without any user:password@ it quotes."""
    text = str(exc).strip().splitlines()
    return safe_uri(text[0][:300]) if text else type(exc).__name__


def registry_error(what: str, tracking_uri: str, exc: BaseException) -> RegistryError:
    reason = "tracking server unreachable" if is_transient(exc) else _first_line(exc)
    return RegistryError(f"{what} at {safe_uri(tracking_uri)} failed: {reason}")


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
# Small helpers shared with the registry


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
        return client.create_experiment(name, artifact_location=_local_artifact_root(tracking_uri) and f"{_local_artifact_root(tracking_uri)}/{_slug(name)}")
    except MlflowException as exc:  # another process created it first
        if "already exists" not in str(exc).lower():
            raise
        return client.get_experiment_by_name(name).experiment_id


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "experiment"


def git_commit(cwd: str | os.PathLike | None = None) -> str | None:
    """The commit of the working tree, when it is a git checkout (lineage; None otherwise)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def ganforge_version() -> str:
    from orchestrator import __version__

    return __version__


def _now_ms() -> int:
    return int(time.time() * 1000)


def _log_params(client, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(mlflow_key(k), param_value(v)) for k, v in params.items()]
    for start in range(0, len(items), _MAX_BATCH):
        client.log_batch(run_id, params=items[start : start + _MAX_BATCH])


def _log_text(client, run_id: str, text: str, artifact_file: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / PurePosixPath(artifact_file).name
        path.write_text(text)
        client.log_artifact(run_id, str(path), str(PurePosixPath(artifact_file).parent) if "/" in artifact_file else None)


# --------------------------------------------------------------------------------------------------------------------
# Driver side


class JobTracker:
    """The parent run of one job: spec as params, job YAML and resolved spec as artifacts, the final ranking."""

    def __init__(self, tracking_uri: str, experiment: str, *, retry_s: float = 30.0) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.retry_s = retry_s
        self.client = client_for(tracking_uri)
        self.redactor = Redactor.from_environment()
        self.run_id: str | None = None
        self.experiment_id: str | None = None

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return with_retries(fn, what=what, deadline_s=self.retry_s)
        except RegistryError:
            raise
        except Exception as exc:
            raise registry_error(what, self.tracking_uri, exc) from exc

    def start(
        self, job_name: str, job_yaml_text: str, resolved_spec: dict, tags: dict | None = None, run_id: str | None = None
    ) -> str:
        """Open the job's parent run and return its id; with `run_id` (a resumed job) reopen that run instead."""
        self.redactor = Redactor.from_environment(job_yaml_text)
        self.experiment_id = self._call("creating MLflow experiment", lambda: ensure_experiment(self.client, self.experiment, self.tracking_uri))
        if run_id and self._call("reopening the job's MLflow run", lambda: self._reopen(run_id)):
            self.run_id = run_id
            return run_id
        run_tags = {JOB_TAG: job_name, KIND_TAG: "job", "ganforge.version": ganforge_version(), **(tags or {})}
        if referenced := referenced_env_names(job_yaml_text):
            # Names only: trial processes read them to redact the same values, even from non-secret-looking names.
            run_tags[REDACT_TAG] = ",".join(referenced)
        if commit := git_commit():
            run_tags["ganforge.git_commit"] = commit
        run_tags = {k: self.redactor.text(str(v)) for k, v in run_tags.items()}
        run = self._call("starting the job's MLflow run", lambda: self.client.create_run(self.experiment_id, tags=run_tags, run_name=job_name))
        self.run_id = run.info.run_id
        spec = self.redactor.value(resolved_spec)
        self._call("logging job parameters", lambda: _log_params(self.client, self.run_id, flatten(spec)))
        self._call("logging the job YAML", lambda: _log_text(self.client, self.run_id, self.redactor.text(job_yaml_text), "job.yaml"))
        self._call("logging the resolved spec", lambda: _log_text(self.client, self.run_id, json.dumps(spec, indent=2, default=str), "resolved_spec.json"))
        return self.run_id

    def _reopen(self, run_id: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(run_id)
        except MlflowException as exc:
            if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
                return False
            raise
        if run.info.lifecycle_stage == "deleted":
            return False
        self.client.update_run(run_id, status="RUNNING")
        return True

    def trial_run_id(self, trial_id: str) -> str | None:
        """The child run a trial logged to (for `Candidate.run_id`), or None if it has none."""
        run_id = self._require_run()
        query = f"tags.`{PARENT_TAG}` = '{run_id}' and tags.`{TRIAL_TAG}` = '{_quote(str(trial_id))}'"
        found = self._call("finding the trial's MLflow run", lambda: self.client.search_runs([self.experiment_id], filter_string=query, max_results=1))
        return found[0].info.run_id if found else None

    def log_summary(self, table_rows: list[dict], metrics: dict) -> None:
        """The ranked trial table as `trials.json` + `trials.csv`, and job-level metrics (e.g. best score)."""
        from mlflow.entities import Metric

        run_id = self._require_run()
        rows = self.redactor.value(table_rows)
        self._call("logging the trial table", lambda: _log_text(self.client, run_id, json.dumps(rows, indent=2, default=str), "trials.json"))
        self._call("logging the trial table", lambda: _log_text(self.client, run_id, _csv(rows), "trials.csv"))
        ts = _now_ms()
        items = [Metric(mlflow_key(k), float(v), ts, 0) for k, v in metrics.items() if _is_number(v)]
        if items:
            self._call("logging job metrics", lambda: self.client.log_batch(run_id, metrics=items))

    def end(self, status: str = "FINISHED") -> None:
        run_id, status = self._require_run(), _check_status(status)
        self._call("ending the job's MLflow run", lambda: self.client.set_terminated(run_id, status=status))

    def _require_run(self) -> str:
        if self.run_id is None:
            raise RegistryError("JobTracker.start() was not called")
        return self.run_id


def _csv(rows: list[dict]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in row.items()})
    return buf.getvalue()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_status(status: str) -> str:
    if status not in ("FINISHED", "FAILED", "KILLED"):
        raise ValueError(f"run status must be FINISHED, FAILED or KILLED, got {status!r}")
    return status


# --------------------------------------------------------------------------------------------------------------------
# Trial side


class TrialTracker:
    """The child run of one trial, written from the trial's own process; survives tracking-server outages.

    A trial restored after a failure calls this again with the same trial id and gets the same run back.
    `log_metrics` and `log_artifact` only queue (artifacts are copied first: the trial may overwrite them); a
    sender thread delivers the queue, so a slow or absent server never delays training. What fails transiently is
    retried every `retry_interval_s`; `finish()` keeps trying for `flush_timeout_s`, then gives up with a warning.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,  # the contract's; the child run goes to its parent's experiment
        parent_run_id: str,
        trial_id: str,
        params: dict,
        *,
        start_timeout_s: float = 5.0,
        retry_interval_s: float = 2.0,
        flush_timeout_s: float = 60.0,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.trial_id = str(trial_id)
        self.retry_interval_s = retry_interval_s
        self.flush_timeout_s = flush_timeout_s
        self.client = client_for(tracking_uri)
        self.redactor = Redactor.from_environment()
        self._metrics: list = []
        self._artifacts: list[tuple[Path, str | None]] = []
        self._spool: Path | None = None
        self._lock = threading.Lock()  # guards the two queues; only one thread sends at a time
        self._wake = threading.Event()
        self._sender: threading.Thread | None = None
        self._closing = False
        self._next_attempt = 0.0
        self._outage_reported = False

        self.run_id: str | None = None
        self._parent_run_id = parent_run_id
        self._params = params
        try:
            with_retries(self._open, what="opening the trial's MLflow run", deadline_s=start_timeout_s, policy=TRIAL_HTTP_POLICY)
        except Exception as exc:
            if not is_transient(exc):
                raise registry_error(f"opening the MLflow run of trial {self.trial_id}", tracking_uri, exc) from exc
            # The server is away: the run is opened by the sender once it is back, before anything queued is sent.
            log.warning("trial %s: tracking server %s unreachable (%s); buffering", self.trial_id,
                        safe_uri(tracking_uri), _first_line(exc))
            self._outage_reported = True

    def _open(self) -> None:
        """Find or create this trial's run and log its parameters (idempotent: a retry finds the same run)."""
        if self.run_id is None:
            parent = self.client.get_run(self._parent_run_id)
            names = [n for n in parent.data.tags.get(REDACT_TAG, "").split(",") if n]
            self.redactor = Redactor.from_environment(extra_names=names)
            self.run_id = self._find_or_create_run(parent.info.experiment_id, self._parent_run_id)
        self._log_new_params(self.redactor.value(flatten(self._params)))
        self._params = {}

    def _find_or_create_run(self, experiment_id: str, parent_run_id: str) -> str:
        query = f"tags.`{PARENT_TAG}` = '{parent_run_id}' and tags.`{TRIAL_TAG}` = '{_quote(self.trial_id)}'"
        found = self.client.search_runs([experiment_id], filter_string=query, max_results=1, order_by=["attributes.start_time ASC"])
        if found:
            run_id = found[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        tags = {PARENT_TAG: parent_run_id, TRIAL_TAG: self.trial_id, KIND_TAG: "trial"}
        return self.client.create_run(experiment_id, tags=tags, run_name=f"trial-{self.trial_id}").info.run_id

    def _log_new_params(self, params: dict[str, Any]) -> None:
        # MLflow params are write-once; a restored trial (or a PBT exploit) may carry changed values: those become
        # `ganforge.param.<name>` tags holding the latest value.
        from mlflow.entities import RunTag

        existing = self.client.get_run(self.run_id).data.params
        params = {mlflow_key(k): v for k, v in params.items()}
        new = {k: v for k, v in params.items() if k not in existing}
        changed = [RunTag(f"ganforge.param.{k}", param_value(v)) for k, v in params.items() if k in existing and existing[k] != param_value(v)]
        _log_params(self.client, self.run_id, new)
        for start in range(0, len(changed), _MAX_BATCH):
            self.client.log_batch(self.run_id, tags=changed[start : start + _MAX_BATCH])

    # ---- logging (queue only; the sender thread delivers)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        ts = _now_ms()
        items = [Metric(mlflow_key(k), float(v), ts, int(step)) for k, v in metrics.items() if _is_number(v)]
        with self._lock:
            self._metrics += items
        self._kick()

    def log_artifact(self, local_path, artifact_path: str | None = None) -> None:
        path = Path(local_path)
        artifact_path = safe_artifact_path(artifact_path)
        if not path.exists():
            log.warning("trial %s: artifact %s does not exist; not logged", self.trial_id, path)
            return
        copy = self._spool_copy(path)
        with self._lock:
            self._artifacts.append((copy, artifact_path))
        self._kick()

    @property
    def pending(self) -> int:
        """Metrics and artifacts not yet accepted by the tracking server."""
        with self._lock:
            return len(self._metrics) + len(self._artifacts)

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until the queue is delivered (True) or `timeout_s` passes (False; default flush_timeout_s)."""
        deadline = time.monotonic() + (self.flush_timeout_s if timeout_s is None else timeout_s)
        delay = 0.05
        while self.pending:
            if time.monotonic() + delay > deadline:
                return False
            self._wake.set()
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
        return True

    def finish(self, status: str = "FINISHED") -> None:
        """Deliver the queue (retrying through an outage for up to flush_timeout_s) and end the run."""
        status = _check_status(status)
        self._stop_sender()
        deadline = time.monotonic() + self.flush_timeout_s
        delay = 0.2
        while True:
            self._next_attempt = 0.0
            if self._send() and self.run_id is not None:
                try:
                    with http_policy(TRIAL_HTTP_POLICY):
                        self.client.set_terminated(self.run_id, status=status)
                    break
                except Exception as exc:
                    if not is_transient(exc):
                        log.warning("trial %s: could not end its MLflow run: %s", self.trial_id, _first_line(exc))
                        break
            if time.monotonic() + delay > deadline:
                log.warning(
                    "trial %s: tracking server %s still unreachable after %.0fs; %d metric(s)/artifact(s) not recorded in MLflow",
                    self.trial_id, safe_uri(self.tracking_uri), self.flush_timeout_s, self.pending,
                )
                break
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        if self._spool is not None:
            shutil.rmtree(self._spool, ignore_errors=True)
            self._spool = None
        with self._lock:
            self._artifacts.clear()

    # ---- delivery

    def _kick(self) -> None:
        if self._sender is None and not self._closing:
            self._sender = threading.Thread(target=self._sender_loop, name=f"ganforge-mlflow-{self.trial_id}", daemon=True)
            self._sender.start()
        self._wake.set()

    def _sender_loop(self) -> None:
        while not self._closing:
            self._wake.wait(timeout=self.retry_interval_s)
            self._wake.clear()
            if self._closing:
                return
            if time.monotonic() >= self._next_attempt:
                try:
                    self._send()
                except Exception:  # never let the thread die silently with records queued
                    log.exception("trial %s: MLflow sender failed", self.trial_id)

    def _stop_sender(self) -> None:
        self._closing = True
        self._wake.set()
        if self._sender is not None:
            self._sender.join(timeout=self.flush_timeout_s)

    def _send(self) -> bool:
        """Deliver the queue in order; True when nothing is left. Transient failures keep the rest for later."""
        try:
            with http_policy(TRIAL_HTTP_POLICY):
                if self.run_id is None or self._params:
                    self._open_or_give_up()
                    if self.run_id is None:
                        return True  # refused for good (already warned): nothing can be delivered
                while True:
                    with self._lock:
                        batch = self._metrics[:_MAX_METRIC_BATCH]
                        artifact = self._artifacts[0] if self._artifacts and not batch else None
                    if batch:
                        self.client.log_batch(self.run_id, metrics=batch)
                        with self._lock:
                            del self._metrics[: len(batch)]
                    elif artifact:
                        self.client.log_artifact(self.run_id, str(artifact[0]), artifact[1])
                        with self._lock:
                            self._artifacts.pop(0)
                        _remove(artifact[0])
                    else:
                        break
        except Exception as exc:
            if not is_transient(exc):
                # Retrying cannot fix a refusal, and tracking must not end a training run: drop what was refused.
                self._drop_head(exc)
                return self._send()
            self._next_attempt = time.monotonic() + self.retry_interval_s
            if not self._outage_reported:
                log.warning("trial %s: tracking server %s unreachable (%s); buffering", self.trial_id, safe_uri(self.tracking_uri), _first_line(exc))
                self._outage_reported = True
            return False
        if self._outage_reported:
            log.warning("trial %s: tracking server reachable again; buffered records sent", self.trial_id)
            self._outage_reported = False
        return True

    def _open_or_give_up(self) -> None:
        try:
            self._open()
        except Exception as exc:
            if is_transient(exc):
                raise
            log.warning("trial %s: MLflow refused its run or parameters: %s", self.trial_id, _first_line(exc))
            self._params = {}
            if self.run_id is None:
                with self._lock:
                    self._metrics.clear()
                    self._artifacts.clear()

    def _drop_head(self, exc: BaseException) -> None:
        with self._lock:
            if self._metrics:
                dropped = self._metrics[:_MAX_METRIC_BATCH]
                del self._metrics[: len(dropped)]
                what, path = f"{len(dropped)} metric(s)", None
            else:
                path, _ = self._artifacts.pop(0)
                what = f"artifact {path.name}"
        if path is not None:
            _remove(path)
        log.warning("trial %s: MLflow refused %s: %s", self.trial_id, what, _first_line(exc))

    def _spool_copy(self, path: Path) -> Path:
        if self._spool is None:
            self._spool = Path(tempfile.mkdtemp(prefix=f"ganforge-trial-{_slug(self.trial_id)}-"))
        slot = Path(tempfile.mkdtemp(dir=self._spool))
        target = slot / path.name
        if path.is_dir():
            shutil.copytree(path, target)
        else:
            shutil.copy2(path, target)
        return target


def mlflow_key(name: Any) -> str:
    """A param, metric or tag name MLflow accepts: letters, digits, _ - . : / and spaces; anything else becomes '_'.

    (A search space key such as "train.loss,train.n_critic" would otherwise fail the whole batch.)
    """
    return re.sub(r"[^A-Za-z0-9_\-.:/ ]", "_", str(name)) or "_"


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        path.parent.rmdir()


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
