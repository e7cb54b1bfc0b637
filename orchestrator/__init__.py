"""ganforge's orchestrator: job specs, Ray Tune searches, MLflow tracking and the model registry.

Where things live: spec/ (YAML -> JobSpec and its checks), search_kinds.py and search.py (what each search
algorithm, scheduler and distribution is, and how Tune builds it), runner.py (a search from start to champion),
trial.py and ddp_trial.py (what is Ray's in a trial: the evaluation cycle itself is trainers/cycle.py), tracking/
(MLflow: client, job run, trial runs, model registry), report/ (the HTML search report), cli/ (the commands).
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Optional

__version__ = "0.1.0"


def git_commit() -> Optional[str]:
    """The commit of ganforge's own checkout, when it runs from one (lineage; None otherwise)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
