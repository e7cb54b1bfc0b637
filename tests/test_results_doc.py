"""docs/results.md's generated tables are what `make results` makes from the committed inputs (bench/results/: each
job's frozen outcome and the protocol run logs), so no figure there can drift from the runs behind it. Nothing trains
here: a run missing from a log fails the check."""
import importlib.util
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_TABLES = ROOT / "bench" / "doc_tables.py"
_spec = importlib.util.spec_from_file_location("doc_tables", DOC_TABLES)
doc_tables = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(doc_tables)


@pytest.mark.parametrize("name", sorted(doc_tables.TABLES))
def test_generated_tables_are_what_the_committed_logs_give(name):
    check = subprocess.run(doc_tables.command(name, ROOT / "docs" / "results.md", check=True), capture_output=True,
                           text=True, timeout=300, cwd=ROOT)
    assert check.returncode == 0, check.stdout + check.stderr
