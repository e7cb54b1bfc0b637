"""Write the report where people look: beside the run in storage (local or s3://), as an artifact of the job's MLflow
run, or to a file; and refresh it while a search runs."""
from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

from ray.tune import Callback

from orchestrator.report.collect import REPORT_FOLDER, collect, load_record
from orchestrator.report.page import render_page
from orchestrator.storage import RUN_RECORD, write_text

log = logging.getLogger(__name__)
REPORT_FILE = "report.html"


def report_uri(run_path: str) -> str:
    return f"{run_path}/{REPORT_FOLDER}/{REPORT_FILE}"


def build_report(run_path: str, job=None, live: Optional[dict[str, list[dict]]] = None) -> str:
    """The report of the run at `run_path` as one HTML string."""
    return render_page(collect(run_path, job, live))


def write_report(run_path: str, out: Optional[str] = None, job=None,
                 live: Optional[dict[str, list[dict]]] = None) -> str:
    """Build the report and write it to `out` (a local path or storage URI; default: beside the run). Returns where."""
    target = out or report_uri(run_path)
    write_text(target, build_report(run_path, job, live))
    return target


def record_outcome(run_path: str, champion: Any = None, registered: Any = None) -> None:
    """Add how the search ended to the run record: the champion as the run picked it (a report rebuilt later from
    storage shows the same one and its score) and the registered version."""
    record = load_record(run_path)
    record["outcome"] = {"finished_at": time.time(), "champion": None if champion is None else {
        "trial_id": champion.trial_id, "value": champion.value}, "registered": None if registered is None else {
        "name": registered.name, "version": str(registered.version), "alias": registered.alias,
        "promoted": bool(registered.promoted)}}
    write_text(f"{run_path}/{RUN_RECORD}", json.dumps(record, indent=2))


def publish(run_path: str, job, tracker=None, champion: Any = None, registered: Any = None) -> str:
    """At the end of `ganforge run`: record the outcome, write the report beside the run and log it to MLflow."""
    record_outcome(run_path, champion, registered)
    html = build_report(run_path, job)
    target = report_uri(run_path)
    write_text(target, html)
    if tracker is not None and tracker.run_id:
        with tempfile.TemporaryDirectory(prefix="ganforge-report-") as tmp:
            path = Path(tmp) / REPORT_FILE
            path.write_text(html)
            tracker.client.log_artifact(tracker.run_id, str(path))
    return target


class RefreshReport(Callback):
    """Rebuilds the report every `every_s` seconds while Tune runs, in a background thread so the search never
    waits for it (a slow store only makes the page older)."""

    def __init__(self, run_path: str, job, every_s: float) -> None:
        self.run_path, self.job, self.every_s = run_path, job, every_s
        self._last = time.monotonic()
        self._thread: Optional[threading.Thread] = None
        self._live: dict[str, list[dict]] = {}  # trial id -> its results so far (storage gets them only later)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self._live.setdefault(trial.trial_id, []).append(dict(result))

    def on_step_end(self, iteration, trials, **info) -> None:
        if time.monotonic() - self._last < self.every_s or (self._thread is not None and self._thread.is_alive()):
            return
        self._last = time.monotonic()
        live = {k: list(v) for k, v in self._live.items()}  # a snapshot taken here, where Tune adds results
        self._thread = threading.Thread(target=self._write, args=(live,), name="ganforge-report", daemon=True)
        self._thread.start()

    def on_experiment_end(self, trials, **info) -> None:
        if self._thread is not None:
            self._thread.join()

    def _write(self, live: dict[str, list[dict]]) -> None:
        try:
            write_report(self.run_path, job=self.job, live=live)
        except Exception as exc:  # noqa: BLE001 - a report refresh must never end the search
            log.warning("could not refresh the search report: %s", exc)
