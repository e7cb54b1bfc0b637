"""Cluster commands: `submit`, `jobs list|status|logs|stop`, `stack up|down|status`.

Exit codes: 0 success; 1 the job failed or was stopped, or the cluster cannot be reached (retrying later may work);
2 bad input (bad YAML or --set, malformed address, unknown submission id, package over Ray's upload limit).
Job logs go to stdout; ganforge's own messages to stderr, so `ganforge submit --no-wait` prints just the id.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from orchestrator import stack as local_stack
from orchestrator import submit
from orchestrator.cli.job import add_preflight_flag, checked_job


def _add_address(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", metavar="URL",
                   help="Ray dashboard / Jobs API URL, e.g. http://head:8265 "
                        "(default: RAY_API_SERVER_ADDRESS, then an http RAY_ADDRESS)")


def _jobs_client(args: argparse.Namespace) -> submit.JobsClient:
    return submit.JobsClient(submit.resolve_address(submit.address_sources(args.address)))


# ------------------------------------------------------------------ submit
def cmd_submit(args: argparse.Namespace) -> int:
    checked_job(args, on_cluster=True)  # validated and preflighted here, before anything is packaged or uploaded
    submit.submit_job(args.job, args.overrides, address=args.address, wait=not args.no_wait,
                      max_retries=args.max_retries)
    return 0


# ------------------------------------------------------------------ jobs
def _when(ms: int | None) -> str:
    return dt.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


def _duration(job) -> str:
    if not job.start_time:
        return "-"
    end = job.end_time or dt.datetime.now().timestamp() * 1000
    seconds = int((end - job.start_time) / 1000)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m{seconds % 60:02d}s" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def _job_json(job) -> dict:
    """The stable shape of `jobs list --json` rows and `jobs status --json` (times in ms since the epoch)."""
    return {"submission_id": job.submission_id, "status": str(job.status),
            "job": (job.metadata or {}).get("ganforge.job"), "entrypoint": job.entrypoint, "message": job.message,
            "start_time": job.start_time, "end_time": job.end_time}


def cmd_jobs_list(args: argparse.Namespace) -> int:
    jobs = _jobs_client(args).list()
    if args.json:
        print(json.dumps([_job_json(job) for job in jobs], indent=2))
        return 0
    if not jobs:
        print("no jobs", file=sys.stderr)
        return 0
    rows = [("SUBMISSION ID", "STATUS", "STARTED", "DURATION", "JOB")]
    for job in jobs:
        name = (job.metadata or {}).get("ganforge.job") or job.entrypoint
        rows.append((job.submission_id, str(job.status), _when(job.start_time), _duration(job), name))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    return 0


def cmd_jobs_status(args: argparse.Namespace) -> int:
    client = _jobs_client(args)
    job = client.info(args.id)
    if args.json:
        print(json.dumps(_job_json(job), indent=2))
        return 0
    print(f"{args.id}: {job.status}")
    if message := submit.short_message(job.message):
        print(f"  {message}")
    print(f"  started {_when(job.start_time)}, ran {_duration(job)}; {submit.job_url(client.address, args.id)}")
    return 0


def cmd_jobs_logs(args: argparse.Namespace) -> int:
    client = _jobs_client(args)
    if not args.follow:
        sys.stdout.write(client.logs(args.id))
        return 0
    status = client.follow(args.id, sys.stdout)
    print(f"ganforge: job {args.id} {status}", file=sys.stderr)
    return 0 if status == "SUCCEEDED" else 1


def cmd_jobs_stop(args: argparse.Namespace) -> int:
    client = _jobs_client(args)
    if not client.stop(args.id):
        print(f"ganforge: job {args.id} had already ended ({client.status(args.id)})", file=sys.stderr)
        return 0
    if args.no_wait:
        print(f"ganforge: asked {args.id} to stop", file=sys.stderr)
        return 0
    print(f"ganforge: job {args.id} {client.wait(args.id)}", file=sys.stderr)
    return 0


# ------------------------------------------------------------------ stack
def _stack(args: argparse.Namespace) -> local_stack.Stack:
    return local_stack.Stack(args.dir)


def _print_services(state: local_stack.StackState) -> None:
    for service in state.services:
        health = "up" if service.healthy() else "DOWN"
        print(f"  {service.name:<7} {health:<5} {service.url}  (pid {service.pid}, log {service.log})", file=sys.stderr)


def cmd_stack_up(args: argparse.Namespace) -> int:
    stack = _stack(args)
    state = stack.up(num_cpus=args.num_cpus, s3_port=args.s3_port, mlflow_port=args.mlflow_port,
                     ray_port=args.ray_port, dashboard_port=args.dashboard_port,
                     on_progress=lambda m: print(f"ganforge: {m}", file=sys.stderr, flush=True))
    print(f"ganforge: local stack up in {stack.root}:", file=sys.stderr)
    _print_services(state)
    print(f"ganforge: use it with  eval \"$(ganforge stack status --dir {stack.root})\"  "
          f"or  source {stack.root / local_stack.ENV_FILE}", file=sys.stderr)
    print(local_stack.format_exports(state.env))
    return 0


def cmd_stack_down(args: argparse.Namespace) -> int:
    stack = _stack(args)
    stopped = stack.down()
    print(f"ganforge: stopped {', '.join(stopped)}" if stopped else f"ganforge: no stack running in {stack.root}",
          file=sys.stderr)
    return 0


def cmd_stack_status(args: argparse.Namespace) -> int:
    """Exit 0 when every service is up (the exports go to stdout), 1 otherwise: `stack status || stack up` works."""
    stack = _stack(args)
    state = stack.state()
    if args.json:
        services = [{"name": s.name, "up": s.healthy(), "url": s.url, "pid": s.pid, "log": str(s.log)}
                    for s in (state.services if state else [])]
        up = bool(services) and all(s["up"] for s in services)
        print(json.dumps({"dir": str(stack.root), "up": up, "services": services}, indent=2))
        return 0 if up else 1
    if not state:
        print(f"ganforge: no stack in {stack.root}; start one with `ganforge stack up`", file=sys.stderr)
        return 1
    _print_services(state)
    if not all(s.healthy() for s in state.services):
        print("ganforge: the stack is not fully up; `ganforge stack down` then `ganforge stack up` restarts it",
              file=sys.stderr)
        return 1
    print(local_stack.format_exports(state.env))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("submit", help="submit a job YAML to a Ray cluster and follow its logs")
    p.add_argument("job", help="job YAML file (validated locally before anything is uploaded)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec field (repeatable); passed on to `ganforge run` on the cluster")
    _add_address(p)
    add_preflight_flag(p)
    p.add_argument("--no-wait", action="store_true", help="print the submission id and return without following")
    p.add_argument("--max-retries", type=int, default=0, metavar="N",
                   help="resubmit a FAILED job up to N times; each retry resumes from the job's storage")
    p.set_defaults(handler=cmd_submit)

    jobs = sub.add_parser("jobs", help="list, inspect, follow and stop jobs on a Ray cluster")
    actions = jobs.add_subparsers(dest="jobs_action", metavar="ACTION", required=True)
    p = actions.add_parser("list", help="jobs on the cluster, newest first")
    _add_address(p)
    p.add_argument("--json", action="store_true", help="print a JSON list of jobs (see docs/cli.md)")
    p.set_defaults(handler=cmd_jobs_list)
    p = _job_action(actions, "status", cmd_jobs_status, "a job's status and message")
    p.add_argument("--json", action="store_true", help="print the job as JSON (see docs/cli.md)")
    p = _job_action(actions, "logs", cmd_jobs_logs, "a job's logs")
    p.add_argument("--follow", "-f", action="store_true", help="stream until the job ends; exit 1 unless it SUCCEEDED")
    p = _job_action(actions, "stop", cmd_jobs_stop, "stop a job and wait until it has stopped")
    p.add_argument("--no-wait", action="store_true", help="return once the stop is requested")

    stack = sub.add_parser("stack", help="a local Ray head, MLflow server and S3 server on 127.0.0.1 (no Docker)")
    actions = stack.add_subparsers(dest="stack_action", metavar="ACTION", required=True)
    p = _stack_action(actions, "up", cmd_stack_up, "start the stack (or report the running one) and print its env")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs the Ray head offers (default: all)")
    for flag in ("s3-port", "mlflow-port", "ray-port", "dashboard-port"):
        p.add_argument(f"--{flag}", type=int, default=0, metavar="PORT", help=f"{flag.replace('-', ' ')} (default: a free one)")
    _stack_action(actions, "down", cmd_stack_down, "stop the stack")
    p = _stack_action(actions, "status", cmd_stack_status,
                      "show the services; print the env when all are up (else exit 1)")
    p.add_argument("--json", action="store_true",
                   help="print the services as JSON instead of the env (same exit codes)")


def _job_action(actions: argparse._SubParsersAction, name: str, handler, help_text: str) -> argparse.ArgumentParser:
    p = actions.add_parser(name, help=help_text)
    p.add_argument("id", help="submission id (printed by `ganforge submit`, listed by `ganforge jobs list`)")
    _add_address(p)
    p.set_defaults(handler=handler)
    return p


def _stack_action(actions: argparse._SubParsersAction, name: str, handler, help_text: str) -> argparse.ArgumentParser:
    p = actions.add_parser(name, help=help_text)
    p.add_argument("--dir", default=None, metavar="DIR",
                   help="state, logs and data of the stack (default: $GANFORGE_STACK_DIR or ~/.cache/ganforge/stack)")
    p.set_defaults(handler=handler)
    return p
