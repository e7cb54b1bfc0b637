"""Every generated table in docs/results.md and the committed command that makes it, in one list.

Each script rewrites its `<!-- generated: SCRIPT NAME -->` blocks (generated_blocks.py) from a committed run log in
bench/results/: a run in the log is reused, a missing one trains (deterministically on CPU). `--update` regenerates
them all (what `make results` runs); `--check` trains nothing and fails when a table differs from what its log gives
(tests/test_results_doc.py), so no figure there can drift from the runs behind it.

    .venv/bin/python bench/doc_tables.py --update docs/results.md [--only NAME]
    .venv/bin/python bench/doc_tables.py --check docs/results.md
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
# The protocol script's mixture rows: no search of its own (the jobs are the search, scored by job_champions.py on
# the same seeds), 5 seeds for wgan-gp (5 critic steps + GP: ~10x a gan run).
MIXTURE_PROTOCOL = ["--skip-digits", "--search-configs", "0", "--wgan-gp-seeds", "5"]

# name -> (script and its arguments, extra arguments when it may train). One thread per run; filling the logs took
# about 55 minutes (each mixture, three processes on two cores), 27 (digits), 4 (translation), the job champions
# 2 x 40 runs.
TABLES: dict[str, tuple[list[str], list[str]]] = {
    "job champions": (["job_champions.py"], ["--workers", "2"]),
    "ring8 protocol": (["pacgan_protocol.py", "--datasets", "ring8", *MIXTURE_PROTOCOL,
                        "--log", str(RESULTS / "ring8-protocol.jsonl")], []),
    "grid25 protocol": (["pacgan_protocol.py", "--datasets", "grid25", *MIXTURE_PROTOCOL,
                         "--log", str(RESULTS / "grid25-protocol.jsonl")], []),
    "digits": (["pacgan_protocol.py", "--datasets", "", "--log", str(RESULTS / "digits.jsonl")], []),
    "translation": (["translation_baselines.py", "--log", str(RESULTS / "translation.jsonl"),
                     "--outcome-pix2pix", str(RESULTS / "digits-edges-pix2pix-job.json"),
                     "--outcome-cyclegan", str(RESULTS / "digits-cyclegan-job.json")], []),
}


def command(name: str, doc: Path, check: bool) -> list[str]:
    script, training = TABLES[name]
    return [sys.executable, str(HERE / script[0]), *script[1:], *([] if check else training),
            "--check" if check else "--update", str(doc)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--update", type=Path, help="regenerate the tables in this markdown file")
    mode.add_argument("--check", type=Path, help="train nothing; exit 1 if a table differs from its log's")
    parser.add_argument("--only", choices=sorted(TABLES), action="append", help="these tables only (default: all)")
    args = parser.parse_args()
    failed = [name for name in args.only or TABLES
              if subprocess.run(command(name, args.update or args.check, check=bool(args.check))).returncode]
    if failed:
        print(f"doc_tables: {', '.join(failed)} failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
