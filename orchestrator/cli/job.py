"""Job commands: validate, run (with --dry-run), resume, register, schema.

`validate`, `run` and `submit` load a job through the same `load_job` (every check of orchestrator/spec/checks.py);
`run`, `submit` and `validate --preflight` then run orchestrator/preflight.py before anything starts.
"""
from __future__ import annotations

import argparse
import json
import sys

from orchestrator.errors import GanforgeError, SpecError


def load_job(path, overrides):
    from orchestrator.spec import load_job as load  # pydantic models: built on first use, not for --help

    return load(path, overrides)


def checked_job(args: argparse.Namespace, on_cluster: bool = False):
    """The job, validated, and preflighted unless --no-preflight."""
    job = load_job(args.job, args.overrides)
    if getattr(args, "preflight", True):
        from orchestrator.preflight import preflight

        preflight(job, on_cluster=on_cluster)
    return job


def add_preflight_flag(p: argparse.ArgumentParser, default: bool = True) -> None:
    p.add_argument("--preflight", dest="preflight", action=argparse.BooleanOptionalAction, default=default,
                   help="check that the data set, storage and MLflow server answer before starting "
                        f"(default: {'on' if default else 'off'})")


def _add_job_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("job", help="job YAML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec field, e.g. --set search.num_samples=8 (repeatable)")


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        job = checked_job(args)
    except GanforgeError as exc:
        if not args.json:
            raise
        print(json.dumps({"file": args.job, "ok": False, "job": None, "errors": str(exc).splitlines()}, indent=2))
        return exc.exit_code
    if args.json:
        print(json.dumps({"file": args.job, "ok": True, "job": job.spec.name, "errors": []}, indent=2))
    else:
        print(f"{args.job}: ok (job {job.spec.name}{', preflight passed' if args.preflight else ''})")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    if args.markdown:
        from orchestrator.spec.reference import markdown

        print(markdown())
    else:
        from orchestrator.spec import JobSpec

        print(json.dumps(JobSpec.model_json_schema(), indent=2))
    return 0


def print_plan(job, out=None, as_json: bool = False) -> None:
    from orchestrator.storage import storage_root
    from orchestrator.search import SearchPlan
    from orchestrator.tracking import Redactor, resolve_tracking_uri

    out = out or sys.stdout  # looked up per call: tests and callers may swap sys.stdout
    plan = SearchPlan.from_spec(job.spec)
    described = plan.describe()
    described.update({
        "data": job.spec.data.uri,
        "family": job.spec.model.family,
        "features": job.spec.metrics.features,
        "steps_per_trial": job.spec.train.steps,
        "results": storage_root(job.spec),
        "tracking_uri": resolve_tracking_uri(job.spec.registry.tracking_uri),
        "registered_model": (f"{job.spec.model_name}@{job.spec.registry.alias}" if job.spec.registry.enabled else "(registry disabled)"),
        "ray": job.spec.cluster.address or "embedded (local)",
    })
    described = Redactor.for_job(job).value(described)  # a plan is printed: no ${VAR} value or password in it
    if as_json:
        print(json.dumps(described, indent=2, default=str), file=out)
        return
    width = max(len(k) for k in described)
    for key, value in described.items():
        shown = json.dumps(value) if isinstance(value, (dict, list)) else value
        print(f"{key:<{width}}  {shown}", file=out)


def cmd_run(args: argparse.Namespace) -> int:
    job = checked_job(args)
    if args.dry_run:
        print_plan(job, as_json=args.json)
        return 0
    from orchestrator.runner import run_job

    run_job(job)
    return 0


def _stored_run(args: argparse.Namespace):
    """The job and the run to continue: --path, else the newest run under the job's storage."""
    from orchestrator.storage import latest_run_path

    job = load_job(args.job, args.overrides)
    path = args.path or latest_run_path(job.spec)
    if not path:
        raise SpecError(f"{args.job}: no stored run found under its storage; start one with `ganforge run` "
                        "or pass --path RESULTS_PATH")
    return job, path


def cmd_resume(args: argparse.Namespace) -> int:
    from orchestrator.runner import run_job

    job, path = _stored_run(args)
    run_job(job, resume_path=path)  # says what it resumes, without the secrets a path may hold
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    from orchestrator.runner import register_from_storage

    job, path = _stored_run(args)
    register_from_storage(job, path)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check a job YAML (exit 0 valid, 2 invalid)",
                       description="Check a job YAML: every field, name, URI and search setting; all errors at once. "
                                   "With --preflight, also check the data set, storage and MLflow server it uses.")
    _add_job_args(p)
    add_preflight_flag(p, default=False)
    p.add_argument("--json", action="store_true", help='print {"file", "ok", "job", "errors": [...]} on stdout')
    p.set_defaults(handler=cmd_validate)

    p = sub.add_parser("run", help="run a job's search and register the best generator")
    _add_job_args(p)
    p.add_argument("--dry-run", action="store_true", help="print the resolved plan without starting Ray")
    p.add_argument("--json", action="store_true", help="with --dry-run: print the plan as one JSON object")
    add_preflight_flag(p)
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("resume", help="finish a job whose driver died, without re-running finished trials")
    _add_job_args(p)
    p.add_argument("--path", help="results path of the run to resume (default: the job's latest run)")
    p.set_defaults(handler=cmd_resume)

    p = sub.add_parser("register", help="register the best stored checkpoint of a finished run (e.g. after an MLflow outage)")
    _add_job_args(p)
    p.add_argument("--path", help="results path of the run (default: the job's latest run)")
    p.set_defaults(handler=cmd_register)

    p = sub.add_parser("schema", help="print the job spec's JSON Schema")
    p.add_argument("--markdown", action="store_true", help="print the YAML reference table instead")
    p.set_defaults(handler=cmd_schema)
