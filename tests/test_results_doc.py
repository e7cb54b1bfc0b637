"""docs/results.md's generated tables are what `make results` makes from the committed inputs (bench/results/: each
job's frozen outcome and the protocol run log), so no figure there can drift from the runs behind it. Nothing trains
here: a run missing from the log fails the check."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_job_champion_tables_are_what_the_committed_log_gives():
    check = subprocess.run([sys.executable, str(ROOT / "bench" / "job_champions.py"), "--check",
                            str(ROOT / "docs" / "results.md")], capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
