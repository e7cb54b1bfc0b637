"""`ganforge report`: the search report of a finished or running run, one self-contained HTML file."""
from __future__ import annotations

import argparse

from orchestrator.errors import SpecError


def _run_path(args: argparse.Namespace):
    """(job or None, results path): --path wins; else the job's newest run."""
    if args.job is None:
        if not args.path:
            raise SpecError("give the job YAML (its newest run is reported) or --path RESULTS_PATH")
        return None, args.path
    from orchestrator.cli.job import _stored_run

    return _stored_run(args)


def cmd_report(args: argparse.Namespace) -> int:
    from orchestrator.report.publish import write_report

    job, path = _run_path(args)
    print(f"ganforge: report of {path} written to {write_report(path, args.out, job)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="build the search report of a run: one self-contained HTML page")
    p.add_argument("job", nargs="?", help="job YAML (default run: its newest); omit with --path")
    p.add_argument("--path", help="results path of the run (local or s3://)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec field of JOB, as for `ganforge run`")
    p.add_argument("--out", default="report.html", help="where to write the page (local path or s3://; "
                                                        "default: report.html)")
    p.set_defaults(handler=cmd_report)
