"""`ganforge` command line. Each command group lives in its own module with a `register(subparsers)` function."""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Sequence

from orchestrator.errors import GanforgeError

# Command-group modules, in help order. Each adds sub-parsers whose `handler(args) -> int` runs the command.
COMMAND_MODULES = (
    "orchestrator.cli.job",      # validate, run, resume, schema
    "orchestrator.cli.models",   # models list/pull/describe/promote/compare, sample, register
    "orchestrator.cli.data",     # data import/inspect
    "orchestrator.cli.cluster",  # submit, jobs, stack
    "orchestrator.cli.report",   # report
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ganforge", description="Distributed batch training of GANs on Ray.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real import error inside the module, not an absent group
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--debug" not in argv:
        # MLflow's INFO lines (schema migrations, signature checks) are noise at a terminal; set before it loads.
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except GanforgeError as exc:
        if args.debug:
            raise
        print(f"ganforge: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("ganforge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
