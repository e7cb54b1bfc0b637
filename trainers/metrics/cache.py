"""On-disk cache of metric state (feature networks, real statistics) as safetensors files.

Trials of one search run in separate processes and all want the same file at start-up, so a builder runs under an
exclusive file lock (the others wait, then load the file) and writes atomically (temp file + rename), so a reader never
sees half a file. safetensors holds tensors and string metadata only: nothing here unpickles.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

Tensors = dict[str, torch.Tensor]
Entry = tuple[Tensors, dict[str, Any]]  # tensors + JSON-able metadata


def digest(*parts: torch.Tensor | str | int | None) -> str:
    """A stable hex digest of tensors (dtype, shape and bytes) and plain values, for cache keys."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            t = part.detach().cpu().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update((t.float() if t.dtype == torch.bfloat16 else t).numpy().tobytes())
        else:
            h.update(repr(part).encode())
        h.update(b"\x00")
    return h.hexdigest()


def save_entry(path: Path, tensors: Tensors, meta: dict[str, Any]) -> None:
    """Write tensors + metadata to `path` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp, metadata={"json": json.dumps(meta)})
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def load_entry(path: Path) -> Entry | None:
    """Read an entry, or None when the file is missing or unreadable (a corrupt cache is rebuilt, not fatal)."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("json", "{}"))
        return load_file(str(path)), meta
    except (SafetensorError, OSError, ValueError) as exc:
        warnings.warn(f"ignoring unreadable metric cache file {path}: {exc}", stacklevel=3)
        return None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def load_or_build(
    path: Path | None, is_valid: Callable[[dict[str, Any]], bool], build: Callable[[], Entry]
) -> tuple[Entry, bool]:
    """Return (entry, loaded_from_file). Without a path, just build. `is_valid(meta)` rejects stale files."""
    if path is None:
        return build(), False

    def cached() -> Entry | None:
        entry = load_entry(path)
        return entry if entry is not None and is_valid(entry[1]) else None

    if (entry := cached()) is not None:  # fast path: no lock once the file exists
        return entry, True
    with _locked(path):
        if (entry := cached()) is not None:  # another process built it while we waited
            return entry, True
        entry = build()
        save_entry(path, *entry)
        return entry, False
