"""A trial's MLflow run, written from the trial's own process: a child of the job run that survives tracking-server
outages.

Trials log from their own processes because Ray Train V2 rejects Tune logger callbacks. A trial never stalls on
the tracking server: each request gets a short timeout and no urllib3 retries, and what fails is buffered
(metrics in memory, artifacts copied to a spool folder) and sent again later; `finish()` flushes. SQLite's
"database is locked", when several trial processes write one file, is retried the same way.
"""
from __future__ import annotations

import contextlib
import logging
import math
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.tracking.client import (MAX_BATCH, MAX_METRIC_BATCH, KIND_TAG, PARENT_TAG, REDACT_TAG,
                                          TRIAL_HTTP_POLICY, TRIAL_TAG, Redactor, check_status, client_for,
                                          first_line, flatten, fs_name, http_policy, is_number, is_transient,
                                          log_params, mlflow_key, now_ms, param_value, quote, registry_error,
                                          safe_artifact_path, safe_uri, with_retries)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrackingTarget:
    """Where a trial's run goes: the job run it is a child of."""

    uri: str
    experiment: str
    parent_run_id: str


def open_trial_tracker(target: "TrackingTarget | None", trial_id: str, params: dict) -> "TrialTracker | None":
    """The trial's run, or None without tracking: tracking must never kill training (the driver reports missing
    runs)."""
    if target is None:
        return None
    try:
        return TrialTracker(target.uri, target.experiment, target.parent_run_id, trial_id, params)
    except Exception as exc:
        log.warning("MLflow tracking unavailable for %s: %s", trial_id, exc)
        return None


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
                        safe_uri(tracking_uri), first_line(exc))
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
        query = f"tags.`{PARENT_TAG}` = '{parent_run_id}' and tags.`{TRIAL_TAG}` = '{quote(self.trial_id)}'"
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
        log_params(self.client, self.run_id, new)
        for start in range(0, len(changed), MAX_BATCH):
            self.client.log_batch(self.run_id, tags=changed[start : start + MAX_BATCH])

    # ---- logging (queue only; the sender thread delivers)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        ts = now_ms()
        items = [Metric(mlflow_key(k), float(v), ts, int(step)) for k, v in metrics.items() if is_number(v)]
        with self._lock:
            self._metrics += items
        self._kick()

    def log_report(self, metrics: dict[str, Any], step: int) -> None:
        """One report of the trial: its finite numbers (a diverged loss or a reason in words is not a metric)."""
        self.log_metrics({k: v for k, v in metrics.items() if is_number(v) and math.isfinite(v)}, step)

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
        status = check_status(status)
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
                        log.warning("trial %s: could not end its MLflow run: %s", self.trial_id, first_line(exc))
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
                        batch = self._metrics[:MAX_METRIC_BATCH]
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
                log.warning("trial %s: tracking server %s unreachable (%s); buffering", self.trial_id, safe_uri(self.tracking_uri), first_line(exc))
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
            log.warning("trial %s: MLflow refused its run or parameters: %s", self.trial_id, first_line(exc))
            self._params = {}
            if self.run_id is None:
                with self._lock:
                    self._metrics.clear()
                    self._artifacts.clear()

    def _drop_head(self, exc: BaseException) -> None:
        with self._lock:
            if self._metrics:
                dropped = self._metrics[:MAX_METRIC_BATCH]
                del self._metrics[: len(dropped)]
                what, path = f"{len(dropped)} metric(s)", None
            else:
                path, _ = self._artifacts.pop(0)
                what = f"artifact {path.name}"
        if path is not None:
            _remove(path)
        log.warning("trial %s: MLflow refused %s: %s", self.trial_id, what, first_line(exc))

    def _spool_copy(self, path: Path) -> Path:
        if self._spool is None:
            self._spool = Path(tempfile.mkdtemp(prefix=f"ganforge-trial-{fs_name(self.trial_id)}-"))
        slot = Path(tempfile.mkdtemp(dir=self._spool))
        target = slot / path.name
        if path.is_dir():
            shutil.copytree(path, target)
        else:
            shutil.copy2(path, target)
        return target


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        path.parent.rmdir()
