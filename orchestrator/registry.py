"""Pulling a registered generator from Python, at the path users import it from (README). The model registry
itself is orchestrator/tracking/ (register.py, pull.py, browse.py)."""
from orchestrator.tracking.pull import load_generator, pull_model

__all__ = ["load_generator", "pull_model"]
