"""Read a stored run (local or s3://) into a `ReportData`: the run record, Tune's results ranked exactly as the run
ranks them (orchestrator.results), PBT's exploit log and the sample grids. Reads storage only: no Ray, no MLflow."""
from __future__ import annotations

import json
import logging
import math
import os
import time
from typing import Any, Optional

from orchestrator.errors import SpecError
from orchestrator.report.data import ReportData, TrialRecord
from orchestrator.report.grids import stored_grids
from orchestrator.report.sections import samples
from orchestrator.search_kinds import scheduler_info
from orchestrator.storage import RUN_RECORD, read_text

REPORT_FOLDER = "report"  # under the run folder: the page and the grids it shows
# Tune's bookkeeping columns: not training metrics.
_BOOKKEEPING = {"timestamp", "time_this_iter_s", "time_total_s", "pid", "done", "training_iteration",
                "time_since_restore", "iterations_since_restore", "checkpoint_dir_name", "should_checkpoint",
                "fingerprint", "restored_fingerprint", "restored_step"}
_RUNNING = {"RUNNING", "PENDING", "PAUSED"}


def load_record(run_path: str) -> dict[str, Any]:
    text = read_text(f"{run_path}/{RUN_RECORD}")
    if not text:
        raise SpecError(f"{run_path}: no ganforge run record ({RUN_RECORD}); pass the results path of a run "
                        "(`ganforge run` prints it) or the job YAML")
    return json.loads(text)


def job_of(record: dict[str, Any], run_path: str):
    """The job as the run was started: its YAML and --set overrides from the record."""
    from orchestrator.spec import load_job_text

    return load_job_text(record.get("job_yaml") or "", f"{run_path}/{RUN_RECORD}", record.get("overrides") or [])


def collect(run_path: str, job=None, live: Optional[dict[str, list[dict[str, Any]]]] = None) -> ReportData:
    """Everything the report shows about the run at `run_path`; `job` (a LoadedJob) defaults to the recorded one.

    While a search runs, Tune keeps each trial's result history on the driver and syncs it to storage only now and
    then; `live` (trial id -> results seen so far, from publish.RefreshReport) stands in for a history not yet stored.
    """
    from orchestrator.search import SearchPlan

    if "://" not in run_path:
        run_path = os.path.abspath(run_path)  # Tune resolves a relative experiment path against its own storage root
    record = load_record(run_path)
    job = job or job_of(record, run_path)
    spec, plan = job.spec, SearchPlan.from_spec(job.spec)
    metric, mode = record.get("metric", plan.metric), record.get("mode", plan.mode)
    trials, tune_status, champion_id = _ranked_trials(run_path, plan, metric, mode)
    report_storage = f"{run_path}/{REPORT_FOLDER}"
    with_grids = 0
    for t in trials:  # best first
        if with_grids < samples.MAX_TRIALS:  # a page shows the best few trials' grids: read no others (1,000s of trials)
            t.grids = stored_grids(report_storage, t.trial_id)
            with_grids += bool(t.grids)
        if not t.history and live and live.get(t.trial_id):
            t.history = [_numeric(row) for row in live[t.trial_id]]
        if tune_status.get(t.trial_id) in _RUNNING:
            t.status, t.reason = "running", f"running: {t.iterations} evaluations so far (step {t.step})"
    outcome = record.get("outcome") or {}
    recorded = outcome.get("champion") or {}  # the run's own pick wins over a re-ranking of what storage holds
    started, ended = _span(trials)
    return ReportData(
        name=spec.name, metric=metric, mode=mode, trials=trials, champion=recorded.get("trial_id", champion_id),
        champion_value=recorded.get("value"),
        search=spec.search.model_dump(mode="json", exclude={"space"}),
        space={k: d.kind for k, d in spec.search.space.items()},
        floors=_floors(trials), dataset=record.get("data") or {"uri": spec.data.uri},
        eval_samples=spec.train.eval_samples, eval_every=spec.train.eval_every, steps=spec.train.steps,
        started_at=record.get("started_at") or started, ended_at=outcome.get("finished_at") or ended,
        running=any(s in _RUNNING for s in tune_status.values()) or not outcome,
        registered=outcome.get("registered"), pbt_records=_pbt(run_path, spec),
        job_yaml=_redacted_yaml(job), resolved_spec=_redacted_spec(job), overrides=list(job.overrides),
        git_commit=record.get("git_commit"), ganforge_version=record.get("ganforge_version", ""),
        run_path=run_path, built_at=time.time(),
    )


def _ranked_trials(run_path: str, plan, metric: str,
                   mode: str) -> tuple[list[TrialRecord], dict[str, str], Optional[str]]:
    """The trials ranked by orchestrator.results, their Tune statuses, and the champion's id."""
    from ray.tune import ExperimentAnalysis, ResultGrid

    from orchestrator.results import champion, rank

    quiet = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level, _ = quiet.level, quiet.setLevel(logging.ERROR)  # "failed to fetch metrics" of a running search's trials
    try:
        analysis = ExperimentAnalysis(run_path)
    except (ValueError, FileNotFoundError, OSError):  # no experiment state yet: the search has just started
        return [], {}, None
    finally:
        quiet.setLevel(level)
    grid = ResultGrid(analysis)
    ranking = rank(grid, metric, mode, plan.evaluations_per_trial, plan.spec.search.score)
    best = champion(ranking, mode)
    statuses = {t.trial_id: t.status for t in analysis.trials}
    return [_trial_record(o, plan, metric) for o in ranking], statuses, best.trial_id if best else None


def _trial_record(outcome, plan, metric: str) -> TrialRecord:
    from orchestrator.search import TRIAL_INDEX

    history = _history(outcome.result.metrics_dataframe)
    last = outcome.result.metrics or {}
    scores = {k: float(v) for k, v in (outcome.checkpoint_metrics or (history[-1] if history else {})).items()
              if _number(v) and k not in _BOOKKEEPING}
    return TrialRecord(
        trial_id=outcome.trial_id, status=outcome.status, reason=_reason(outcome, plan, last),
        params={k: v for k, v in outcome.params.items() if k != TRIAL_INDEX}, value=outcome.value,
        iterations=outcome.iterations, step=outcome.step, history=history, scores=scores,
        configuration=outcome.configuration,
    )


def _history(frame) -> list[dict[str, float]]:
    if frame is None or len(frame) == 0:
        return []
    keep = [c for c in frame.columns if not str(c).startswith("config/") and c not in _BOOKKEEPING - {"timestamp",
            "time_total_s"}]
    return [_numeric(row) for row in frame[keep].to_dict("records")]


def _numeric(row: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in row.items() if _number(v) and k not in _BOOKKEEPING - {"timestamp", "time_total_s"}}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


def _reason(outcome, plan, last: dict[str, Any]) -> str:
    """Why the trial ended, in the words of the scheduler that ended it."""
    search = plan.spec.search
    at = f"after {outcome.iterations} of {plan.evaluations_per_trial} evaluations (step {outcome.step})"
    if outcome.status == "done":
        return f"ran to the end: {plan.evaluations_per_trial} evaluations (step {outcome.step})"
    if outcome.status == "diverged":
        why = last.get("diverged_reason") or "a loss exploded or became NaN/Inf"
        return f"diverged at step {outcome.step}: {why}"
    if outcome.status == "error":
        first = str(outcome.result.error).strip().splitlines()
        return f"failed: {first[-1] if first else 'unknown error'}"[:300]
    explain = scheduler_info(search.scheduler).stop_reason
    return explain(search, outcome.iterations, at) if explain else f"stopped {at}"


def _floors(trials: list[TrialRecord]) -> dict[str, float]:
    for t in trials:
        for row in t.history:
            floors = {k: v for k, v in row.items() if k.endswith("_floor")}
            if floors:
                return floors
    return {}


def _span(trials: list[TrialRecord]) -> tuple[Optional[float], Optional[float]]:
    starts = [r["timestamp"] - r.get("time_total_s", 0.0) for t in trials for r in t.history[:1] if "timestamp" in r]
    ends = [r["timestamp"] for t in trials for r in t.history[-1:] if "timestamp" in r]
    return (min(starts) if starts else None), (max(ends) if ends else None)


def _pbt(run_path: str, spec) -> list[dict[str, Any]]:
    if not scheduler_info(spec.search.scheduler).exploit_log:
        return []
    from orchestrator.pbt_lineage import collect_policy

    return collect_policy(run_path)


def _redacted_yaml(job) -> str:
    from orchestrator.tracking.client import Redactor

    return Redactor.from_environment(job.text).text(job.text)


def _redacted_spec(job) -> dict[str, Any]:
    """The resolved spec with `${VAR}` values shown as references (JobSpec's own redaction), then any secret value
    of the environment masked, as MLflow's copy is."""
    from orchestrator.tracking.client import Redactor

    return Redactor.from_environment(job.text).value(job.redacted())
