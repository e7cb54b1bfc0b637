"""Start-up latency of the CLI, side by side with `python -c pass` and `ray --help` in one run.

    .venv/bin/python bench/cli_latency.py [--repeat 5]

Each command runs `--repeat` times in a fresh process; the median wall time is reported. Ends with one line:
help_s=... validate_s=... python_s=... ray_help_s=...
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

COMMANDS = {
    "help_s": [str(BIN / "ganforge"), "--help"],
    "validate_s": [str(BIN / "ganforge"), "validate", "jobs/quickstart.yaml"],
    "schema_s": [str(BIN / "ganforge"), "schema"],
    "python_s": [sys.executable, "-c", "pass"],
    "ray_help_s": [str(BIN / "ray"), "--help"],
}


def median_seconds(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    results = {key: median_seconds(cmd, args.repeat) for key, cmd in COMMANDS.items()}
    for key, cmd in COMMANDS.items():
        shown = " ".join([Path(cmd[0]).name, *cmd[1:]])
        print(f"{key:<11} {results[key]:6.3f} s   {shown}")
    print(" ".join(f"{key}={value:.3f}" for key, value in results.items()))


if __name__ == "__main__":
    main()
