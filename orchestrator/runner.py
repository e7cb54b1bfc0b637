"""Run a job: start or join Ray, run the Tune search, rank trials, register the champion in MLflow.

Every run keeps a small record (`ganforge-run.json`) beside Tune's own state in storage, so `ganforge resume` can
finish an experiment whose driver died and `ganforge register` can register from stored checkpoints later.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, TextIO

from orchestrator import __version__, git_commit
from orchestrator.errors import ClusterError, DataSourceError, JobFailedError, RegistryError
from orchestrator.report.collect import REPORT_FOLDER
from orchestrator.results import TrialOutcome, champion as pick_champion, format_table, rank, rank_configurations
from orchestrator.search import SearchPlan
from orchestrator.spec import LoadedJob
from orchestrator.search_kinds import SCHEDULER_INFO
from orchestrator.storage import LATEST, RUN_RECORD, filesystem, read_text, storage_root, write_text
from orchestrator.trial import TrialContext, run_trial
from orchestrator.tune_storage import tune_filesystem
from orchestrator.warmup import prestart_trial_workers
from trainers.metrics.declared import scoring_plan



@dataclass
class JobOutcome:
    run_path: str
    ranking: list[TrialOutcome]
    registered: Any = None  # orchestrator.tracking.register.RegisteredVersion


# ---------------------------------------------------------------- ray
def init_ray(address: Optional[str], plan: Optional[SearchPlan] = None) -> None:
    """Join the cluster at `address` (or RAY_ADDRESS), else start an embedded one and, given the job's plan, start
    its trial processes right away (orchestrator.warmup), beside the rest of the driver's setup."""
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS") or address
    try:
        if address:
            ray.init(address=address, log_to_driver=True, logging_level="WARNING")
        else:
            # "local" always starts a fresh embedded cluster, never a stray one found on the machine.
            ray.init(address="local", include_dashboard=False, logging_level="WARNING",
                     runtime_env={"env_vars": {"RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")},
                                  "worker_process_setup_hook": "orchestrator.warmup.preload"})
            if plan is not None:
                prestart_trial_workers(plan.trial_slots(_cluster_cpus()))
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterError(f"cannot join Ray cluster at {address}: {str(exc).splitlines()[0]}") from None
    except Exception as exc:  # noqa: BLE001 - Ray raises a bare Exception when its raylet misses a 30 s start-up window
        where = f"the Ray cluster at {address}" if address else "an embedded Ray"
        raise ClusterError(f"cannot start {where}: {str(exc).splitlines()[0]} (an overloaded machine: retry when "
                           "it is quieter)") from None


# ---------------------------------------------------------------- the run
def prepare_data(job: LoadedJob, cache_dir: Optional[str]):
    """Open (and for built-ins, materialise) the data set once in the driver: a bad URI fails before Ray starts."""
    from trainers.data import DataError, open_dataset

    try:
        return open_dataset(job.spec.data.uri, cache_dir=cache_dir).info
    except DataError as exc:
        raise DataSourceError(f"data.uri: {exc}") from None


def _quiet_tune() -> None:
    """Our trial table replaces Tune's console output; keep the console to what a user acts on."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # legacy reporter, silent at verbose=0
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")


def run_job(job: LoadedJob, *, resume_path: Optional[str] = None, stream: Optional[TextIO] = None,
            cache_dir: Optional[str] = None) -> JobOutcome:
    from ray import tune

    from orchestrator.progress import TrialTable
    from orchestrator.tracking.client import Redactor, safe_uri
    from orchestrator.tracking.job_run import JobTracker
    from orchestrator.tracking.trial_run import TrackingTarget
    from orchestrator.tune_logs import result_loggers

    stream = stream or sys.stdout  # at call time: a default bound at import outlives a replaced stdout
    spec = job.spec
    shown = Redactor.for_job(job)
    plan = SearchPlan.from_spec(spec)
    info = prepare_data(job, cache_dir)
    root = storage_root(spec)
    storage_fs, root_in_fs = filesystem(root)
    record: dict[str, Any] = json.loads(read_text(f"{resume_path}/{RUN_RECORD}") or "{}") if resume_path else {}
    run_name = record.get("run_name") or time.strftime("run-%Y%m%d-%H%M%S")
    run_path = f"{root}/{run_name}"

    tracking_uri = _tracking_uri(record.get("tracking_uri"), spec.registry.tracking_uri, shown)

    def open_tracking() -> tuple[JobTracker, str]:
        tracker = JobTracker(tracking_uri, spec.experiment)
        run_id = tracker.start(spec.name, job.text, job.redacted(), run_id=record.get("parent_run_id"),
                               tags={"ganforge.run_path": run_path, "ganforge.version": __version__})
        return tracker, run_id

    # Opening MLflow (a new SQLite store migrates its schema) and starting Ray each take seconds: overlap them.
    with ThreadPoolExecutor(max_workers=1) as pool:
        started = pool.submit(open_tracking)
        _quiet_tune()
        _retry_sdk_requests()
        init_ray(spec.cluster.address, plan)
        try:
            tracker, parent_run_id = started.result()
        except Exception as exc:
            raise RegistryError(f"MLflow at {safe_uri(tracking_uri)} is not usable: {str(exc).splitlines()[0]}") from None
    # Storage is no place for secrets: the record keeps the tracking URI without credentials (resume and register
    # take today's from the environment) and the YAML with its ${VAR} references unresolved.
    record = shown.value({"run_name": run_name, "run_path": run_path, "tracking_uri": tracking_uri,
                          "parent_run_id": parent_run_id, "metric": plan.metric, "mode": plan.mode,
                          "job_yaml": job.text, "overrides": job.overrides,
                          "started_at": record.get("started_at") or time.time(),
                          "git_commit": git_commit(), "ganforge_version": __version__,
                          "data": {"uri": spec.data.uri, "name": info.name, "kind": info.kind,
                                   "rows": info.num_rows, "checksum": info.checksum},
                          "scoring": scoring_plan(info.kind, spec.metrics.features, spec.metrics.weights,
                                                  spec.train.eval_samples, info.num_rows)})
    write_text(f"{run_path}/{RUN_RECORD}", json.dumps(record, indent=2))
    write_text(f"{root}/{LATEST}", run_name)
    print(f"ganforge: job {spec.name}: {plan.total_trials} trials, metric {plan.metric} ({plan.mode}); "
          f"results in {shown.text(run_path)}", file=stream, flush=True)

    try:
        gpus = check_gpus(spec)
    except ClusterError:
        tracker.end("FAILED")  # the job's MLflow run must not stay RUNNING forever
        raise
    ctx = TrialContext(
        base={k: getattr(spec, k).model_dump() for k in ("data", "model", "train", "metrics")},
        metric=plan.metric, mode=plan.mode, cpus_per_trial=spec.resources.cpus_per_trial, cache_dir=cache_dir,
        tracking=TrackingTarget(tracking_uri, spec.experiment, parent_run_id),
        workers_per_trial=spec.resources.workers_per_trial, gpus_per_trial=gpus,
        max_failures=spec.resources.max_failures, train_storage=f"{run_path}/train",
        report_storage=f"{run_path}/{REPORT_FOLDER}" if spec.report.enabled else None,
    )
    trainable = make_trainable(plan, ctx)
    table = TrialTable(plan.metric, plan.mode, plan.total_trials, stream=stream)
    run_in_fs = f"{root_in_fs}/{run_name}"
    if resume_path and tune.Tuner.can_restore(run_in_fs, storage_filesystem=storage_fs):
        tuner = restore_tuner(storage_fs, run_in_fs, trainable, resume_unfinished=True, resume_errored=True)
        finished = tuner.get_results().num_terminated  # trials the searcher had yet to create are still to run
        print(f"ganforge: resuming {shown.text(run_path)}: {finished} finished, "
              f"{plan.total_trials - finished} to run", file=stream, flush=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=plan.param_space(),
            tune_config=plan.tune_config(cluster_cpus=_cluster_cpus()),
            run_config=tune.RunConfig(
                name=run_name,
                storage_path=root_in_fs,
                storage_filesystem=tune_filesystem(storage_fs),  # each sync uploads only what changed
                failure_config=tune.FailureConfig(max_failures=spec.resources.max_failures),
                checkpoint_config=tune.CheckpointConfig(
                    num_to_keep=_checkpoints_to_keep(spec, plan.evaluations_per_trial),
                    checkpoint_score_attribute=plan.metric,
                    checkpoint_score_order=plan.mode,
                ),
                callbacks=[table, *result_loggers(), *_report_refresh(job, run_path)],  # result.json only: orchestrator/tune_logs.py
                verbose=0,
            ),
        )
    grid = tuner.fit()
    ranking = rank(grid, plan.metric, plan.mode, plan.evaluations_per_trial, plan.spec.search.score)
    outcome = JobOutcome(run_path=run_path, ranking=ranking)
    if SCHEDULER_INFO.get(spec.search.scheduler).exploit_log:
        _log_pbt_policy(tracker, run_path)
    floor = _floor(ranking, plan.metric)
    print("\n" + format_table(ranking, plan.metric, plan.mode, floor), file=stream, flush=True)
    configurations = rank_configurations(ranking, plan.mode)
    tracker.log_summary([o.row(plan.metric) for o in ranking] + [c.row(plan.metric) for c in configurations],
                        _summary_metrics(ranking, plan.metric))

    champion = pick_champion(ranking, plan.mode)
    if champion is None:
        _publish_report(job, run_path, tracker, None, None, stream)
        tracker.end("FAILED")
        raise JobFailedError(f"no trial produced a usable {plan.metric} (see {shown.text(run_path)}); "
                             "nothing was registered")
    if spec.registry.enabled:
        try:
            outcome.registered = register_outcome(job, plan, champion, ranking, info, tracking_uri, run_path,
                                                  run_id=tracker.trial_run_id(champion.trial_id))
        except Exception as exc:
            tracker.end("FAILED")
            raise RegistryError(f"registration failed: {str(exc).splitlines()[0]}; run "
                                f"`ganforge register {job.path or 'JOB.yaml'}` once MLflow is reachable") from None
        r = outcome.registered
        verdict = f"alias @{r.alias} moved to it" if r.promoted else f"kept as challenger; @{r.alias} stays"
        print(f"ganforge: registered {r.name} version {r.version} ({plan.metric}={champion.value:.4g}); {verdict}",
              file=stream, flush=True)
    _publish_report(job, run_path, tracker, champion, outcome.registered, stream)
    tracker.end("FINISHED")
    return outcome


def _report_refresh(job: LoadedJob, run_path: str) -> list:
    from orchestrator.report.publish import RefreshReport

    every = job.spec.report.every_s
    return [RefreshReport(run_path, job, every)] if job.spec.report.enabled and every > 0 else []


def _publish_report(job: LoadedJob, run_path: str, tracker, champion, registered, stream: TextIO) -> None:
    """The search report beside the run and in MLflow; a failure to write it costs the page, not the run."""
    if not job.spec.report.enabled:
        return
    from orchestrator.report.publish import publish

    try:
        print(f"ganforge: report {publish(run_path, job, tracker, champion, registered)}", file=stream, flush=True)
    except Exception as exc:  # noqa: BLE001
        print(f"ganforge: warning: the search report was not written: {str(exc).splitlines()[0]}", file=sys.stderr)


def _tracking_uri(recorded: Optional[str], configured: Optional[str], shown) -> str:
    """The MLflow a run uses: the one it recorded, with today's credentials when it is the same server (the record
    never holds them), else today's resolution for a new run or a record that could not name it without a secret."""
    from orchestrator.tracking.client import REDACTED, resolve_tracking_uri

    current = resolve_tracking_uri(configured)
    if not recorded or shown.text(current) == recorded or REDACTED in recorded:
        return current
    return recorded


def _retry_sdk_requests() -> None:
    """boto3 (MLflow's S3 artifact client) in the driver and the trial processes of an embedded Ray, which inherit
    its environment, retries as the S3 filesystem does, unless the AWS environment already says how."""
    from trainers.data.fs import sdk_retry_environment

    for name, value in sdk_retry_environment().items():
        os.environ.setdefault(name, value)


class _UnstartedTrialsNote(logging.Filter):
    """Tune's restore loads every trial's results and warns with one FileNotFoundError line per trial that never
    started; a trial without results is simply still to run, which the resume line says. Any other failure to read
    results (storage refusing, say) is still shown."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith("Failed to fetch metrics for"):
            return True
        failures = [line for line in message.splitlines()[1:] if line.startswith("- ")]
        return not all("FileNotFoundError(" in line for line in failures)


def restore_tuner(storage_fs, run_in_fs: str, trainable, **resume):
    from ray import tune

    log = logging.getLogger("ray.tune.analysis.experiment_analysis")
    note = _UnstartedTrialsNote()
    log.addFilter(note)
    try:
        return tune.Tuner.restore(run_in_fs, trainable, storage_filesystem=tune_filesystem(storage_fs), **resume)
    finally:
        log.removeFilter(note)


def make_trainable(plan: SearchPlan, ctx: TrialContext):
    from ray import tune

    if plan.distributed:
        from orchestrator.ddp_trial import run_ddp_trial as function
    else:
        function = run_trial
    # The checked GPU share, not the spec's: after a CPU fallback a GPU request could never be placed.
    return tune.with_resources(tune.with_parameters(function, ctx=ctx), plan.resources(ctx.gpus_per_trial))


def _checkpoints_to_keep(spec, evaluations_per_trial: int) -> Optional[int]:
    """None (keep all) for a scheduler that needs every checkpoint (PBT: see orchestrator/search_kinds.py).

    A trial that never writes more checkpoints than are kept loses none either way; but a bound makes Tune force an
    experiment-state sync whenever a trial has written that many since the last one (about once per trial), and
    each sync re-uploads every trial's result files: S3 requests growing with trials² (bench/search_scale.py)."""
    keep = spec.storage.checkpoints_to_keep
    keeps_all = SCHEDULER_INFO.get(spec.search.scheduler).keeps_all_checkpoints
    return None if keeps_all or keep >= evaluations_per_trial else keep


def _cluster_cpus() -> float:
    import ray

    return float(ray.cluster_resources().get("CPU", 0.0))


def check_gpus(spec) -> float:
    """GPUs per trial (or worker) to request: the spec's, unless the cluster has none."""
    import ray

    wanted = spec.resources.gpus_per_trial
    if wanted <= 0:
        return 0.0
    available = float(ray.cluster_resources().get("GPU", 0.0))
    if available > 0:
        return wanted
    if spec.resources.allow_cpu_fallback:
        print(f"ganforge: warning: resources.gpus_per_trial={wanted:g} but the Ray cluster has no GPUs; "
              "training on CPU (resources.allow_cpu_fallback)", file=sys.stderr)
        return 0.0
    raise ClusterError(f"resources.gpus_per_trial={wanted:g} but the Ray cluster has no GPUs; join a GPU cluster "
                       "(cluster.address), set gpus_per_trial: 0, or allow_cpu_fallback: true")


def _log_pbt_policy(tracker, run_path: str) -> None:
    """Keep PBT's exploit log and its lineage drawing with the job's MLflow run."""
    from orchestrator.pbt_lineage import collect_policy, draw_lineage

    records = collect_policy(run_path)
    if not records:
        return
    with tempfile.TemporaryDirectory(prefix="ganforge-pbt-") as tmp:
        log_path = Path(tmp) / "pbt_policy.json"
        log_path.write_text(json.dumps(records, indent=2, default=str))
        draw_lineage(records, Path(tmp) / "pbt_lineage.png")
        for path in (log_path, Path(tmp) / "pbt_lineage.png"):
            try:
                tracker.client.log_artifact(tracker.run_id, str(path), artifact_path="pbt")
            except Exception as exc:  # the run still succeeded; say what is missing
                print(f"ganforge: warning: could not log {path.name} to MLflow: {exc}", file=sys.stderr)


def _floor(ranking: list[TrialOutcome], metric: str) -> Optional[float]:
    for o in ranking:
        value = (o.result.metrics or {}).get(f"{metric}_floor")
        if value is not None:
            return value
    return None


def _summary_metrics(ranking: list[TrialOutcome], metric: str) -> dict[str, float]:
    scored = [o.value for o in ranking if o.value is not None]
    out = {f"trials_{s}": float(sum(o.status == s for o in ranking)) for s in ("done", "stopped", "diverged", "error")}
    if scored:
        out[f"best_{metric}"] = scored[0]
    return out


def register_outcome(job: LoadedJob, plan: SearchPlan, champion: TrialOutcome, ranking: list[TrialOutcome],
                     info, tracking_uri: str, run_path: str, run_id: Optional[str] = None):
    from orchestrator.tracking.register import Candidate, register_champion

    checkpoint, metrics = champion.checkpoint, champion.checkpoint_metrics or {}
    with tempfile.TemporaryDirectory(prefix="ganforge-champion-") as tmp:
        local = Path(checkpoint.to_directory(tmp))
        lineage = {
            "job": job.spec.name,
            "run_path": run_path,
            "trial_id": champion.trial_id,
            "trial_config": {k: v for k, v in champion.params.items()},
            "resolved_spec": job.redacted(),
            "top_k": [o.row(plan.metric) for o in ranking[:5]],
            "metric": plan.metric,
            "mode": plan.mode,
            "value": champion.value,
            "floor": metrics.get(f"{plan.metric}_floor"),
            "scoring": scoring_plan(info.kind, job.spec.metrics.features, job.spec.metrics.weights,
                                    job.spec.train.eval_samples, info.num_rows),
            "data_uri": job.spec.data.uri,
            "data_checksum": info.checksum,
            "ganforge_version": __version__,
            "git_commit": git_commit(),
        }
        candidate = Candidate(trial_id=champion.trial_id, run_id=run_id, metric=plan.metric, value=champion.value,
                              mode=plan.mode, params=champion.params, checkpoint_dir=local)
        return register_champion(tracking_uri, job.spec.model_name, job.spec.registry.alias, candidate, job.text,
                                 lineage, margin=job.spec.registry.margin)


def register_from_storage(job: LoadedJob, run_path: str, stream: Optional[TextIO] = None):
    """Register the best stored checkpoint of a finished run (after MLflow was down when the job ended)."""
    from ray import tune

    from orchestrator.tracking.client import Redactor

    stream = stream or sys.stdout
    shown = Redactor.for_job(job)
    record = json.loads(read_text(f"{run_path}/{RUN_RECORD}") or "{}")
    if not record:
        raise JobFailedError(f"{shown.text(run_path)}: no ganforge run record ({RUN_RECORD}); "
                             "is this a ganforge results path?")
    plan = SearchPlan.from_spec(job.spec)
    info = prepare_data(job, None)
    _quiet_tune()
    _retry_sdk_requests()
    grid = restore_tuner(*filesystem(run_path), run_trial).get_results()
    ranking = rank(grid, plan.metric, plan.mode, plan.evaluations_per_trial, plan.spec.search.score)
    champion = pick_champion(ranking, plan.mode)
    if champion is None:
        raise JobFailedError(f"{shown.text(run_path)}: no trial has a usable {plan.metric}; nothing to register")
    tracking_uri = _tracking_uri(record.get("tracking_uri"), job.spec.registry.tracking_uri, shown)
    registered = register_outcome(job, plan, champion, ranking, info, tracking_uri, run_path)
    verdict = f"alias @{registered.alias} moved to it" if registered.promoted else f"kept as challenger"
    print(f"ganforge: registered {registered.name} version {registered.version} "
          f"({plan.metric}={champion.value:.4g}) from {shown.text(run_path)}; {verdict}", file=stream)
    return registered
