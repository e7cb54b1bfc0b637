"""Trial checkpoints: the whole training state in one file, written atomically and read without unpickling code.

`torch.load(weights_only=True)` only rebuilds tensors and plain containers, so a checkpoint from shared storage
cannot execute anything when a trial resumes from it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

STATE_FILE = "state.pt"


def save_state(directory: str | os.PathLike, state: dict[str, Any]) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / STATE_FILE
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a truncated checkpoint behind
    return path


def load_state(directory: str | os.PathLike, device: torch.device | str = "cpu") -> dict[str, Any]:
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no training state at {path}")
    return torch.load(path, map_location=device, weights_only=True)


def fingerprint(module: torch.nn.Module) -> float:
    """A cheap digest of a module's weights: equal digests across trials mean a copied state."""
    with torch.no_grad():
        return float(sum(p.double().sum() * (i + 1) for i, p in enumerate(module.parameters())))
