"""`ganforge` command line. Each command group lives in its own module with a `register(subparsers)` function.

Start-up stays fast: command modules import only argparse-level code at the top, and each handler imports what
its command needs (torch, Ray Tune, MLflow) when it runs, so `--help`, `validate`, `schema` and `jobs list` load
none of them (tests/test_cli.py checks).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Sequence

from orchestrator import __version__
from orchestrator.cli.examples import add_examples
from orchestrator.errors import GanforgeError

# Command-group modules, in help order. Each adds sub-parsers whose `handler(args) -> int` runs the command.
COMMAND_MODULES = (
    "orchestrator.cli.job",      # validate, run, resume, schema
    "orchestrator.cli.models",   # models list/pull/describe/promote/compare, sample, register
    "orchestrator.cli.translate",  # translate
    "orchestrator.cli.evaluate",  # evaluate
    "orchestrator.cli.data",     # data import/inspect
    "orchestrator.cli.cluster",  # submit, jobs, stack
    "orchestrator.cli.report",   # report
    "orchestrator.cli.shell",    # completion
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ganforge", description="Distributed batch training of GANs on Ray.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs (also after the command)")
    parser.add_argument("--version", action="version", version=f"ganforge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real import error inside the module, not an absent group
                raise
            continue
        module.register(sub)
    add_examples(parser)
    return parser


def _pop_debug(argv: list[str]) -> tuple[list[str], bool]:
    """`--debug` is accepted anywhere before `--`, e.g. `ganforge validate job.yaml --debug`."""
    end = argv.index("--") if "--" in argv else len(argv)
    debug = "--debug" in argv[:end]
    return [a for i, a in enumerate(argv) if not (i < end and a == "--debug")], debug


def main(argv: Sequence[str] | None = None) -> int:
    argv, debug = _pop_debug(list(sys.argv[1:] if argv is None else argv))
    if not debug:
        # MLflow's INFO lines (schema migrations, signature checks) are noise at a terminal; set before it loads.
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    parser = build_parser()
    if "_ARGCOMPLETE" in os.environ:  # a shell asking for completions (see `ganforge completion`)
        import argcomplete

        argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    args.debug = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except GanforgeError as exc:
        if debug:
            raise
        for line in str(exc).splitlines() or [""]:  # several problems: one line each
            print(f"ganforge: error: {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("ganforge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
