"""The job's MLflow run (driver side): the spec as params, the job YAML and resolved spec as artifacts, the final
ranking as a table and job-level metrics. Trials log to child runs of it (trial_run.py)."""
from __future__ import annotations

import csv
import io
import json
from typing import Callable, TypeVar

from orchestrator import __version__, git_commit
from orchestrator.errors import RegistryError
from orchestrator.tracking.client import (JOB_TAG, KIND_TAG, PARENT_TAG, REDACT_TAG, TRIAL_TAG, Redactor, call,
                                          check_status, client_for, ensure_experiment, flatten, is_number, log_params,
                                          log_text, mlflow_key, now_ms, quote, referenced_env_names)

T = TypeVar("T")


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
        return call(self.tracking_uri, what, fn, self.retry_s)

    def start(
        self, job_name: str, job_yaml_text: str, resolved_spec: dict, tags: dict | None = None, run_id: str | None = None
    ) -> str:
        """Open the job's parent run and return its id; with `run_id` (a resumed job) reopen that run instead."""
        self.redactor = Redactor.from_environment(job_yaml_text)
        self.experiment_id = self._call("creating MLflow experiment", lambda: ensure_experiment(self.client, self.experiment, self.tracking_uri))
        if run_id and self._call("reopening the job's MLflow run", lambda: self._reopen(run_id)):
            self.run_id = run_id
            return run_id
        run_tags = {JOB_TAG: job_name, KIND_TAG: "job", "ganforge.version": __version__, **(tags or {})}
        if referenced := referenced_env_names(job_yaml_text):
            # Names only: trial processes read them to redact the same values, even from non-secret-looking names.
            run_tags[REDACT_TAG] = ",".join(referenced)
        if commit := git_commit():
            run_tags["ganforge.git_commit"] = commit
        run_tags = {k: self.redactor.text(str(v)) for k, v in run_tags.items()}
        run = self._call("starting the job's MLflow run", lambda: self.client.create_run(self.experiment_id, tags=run_tags, run_name=job_name))
        self.run_id = run.info.run_id
        spec = self.redactor.value(resolved_spec)
        self._call("logging job parameters", lambda: log_params(self.client, self.run_id, flatten(spec)))
        self._call("logging the job YAML", lambda: log_text(self.client, self.run_id, self.redactor.text(job_yaml_text), "job.yaml"))
        self._call("logging the resolved spec", lambda: log_text(self.client, self.run_id, json.dumps(spec, indent=2, default=str), "resolved_spec.json"))
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
        query = f"tags.`{PARENT_TAG}` = '{run_id}' and tags.`{TRIAL_TAG}` = '{quote(str(trial_id))}'"
        found = self._call("finding the trial's MLflow run", lambda: self.client.search_runs([self.experiment_id], filter_string=query, max_results=1))
        return found[0].info.run_id if found else None

    def log_summary(self, table_rows: list[dict], metrics: dict) -> None:
        """The ranked trial table as `trials.json` + `trials.csv`, and job-level metrics (e.g. best score)."""
        from mlflow.entities import Metric

        run_id = self._require_run()
        rows = self.redactor.value(table_rows)
        self._call("logging the trial table", lambda: log_text(self.client, run_id, json.dumps(rows, indent=2, default=str), "trials.json"))
        self._call("logging the trial table", lambda: log_text(self.client, run_id, _csv(rows), "trials.csv"))
        ts = now_ms()
        items = [Metric(mlflow_key(k), float(v), ts, 0) for k, v in metrics.items() if is_number(v)]
        if items:
            self._call("logging job metrics", lambda: self.client.log_batch(run_id, metrics=items))

    def end(self, status: str = "FINISHED") -> None:
        run_id, status = self._require_run(), check_status(status)
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
