"""What importers read from: a SourceData describes the samples and reads any row range of them.

File formats register a SourceFormat (sniff + open) in SOURCE_FORMATS; `open_source` (trainers.data.sources) asks
each to sniff the path unless a format is named. Built-in data sets are sources/builtin.py.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from trainers.data.errors import DataError
from trainers.data.info import DataKind
from trainers.registry import Registry

# read(start, stop) -> (samples, labels) for rows [start, stop): images (N, H, W, C) uint8 or, when `encoded`,
# a list of PNG/JPEG bytes; points (N, D) float32; labels int64 or None.
ReadRows = Callable[[int, int], tuple[np.ndarray | Sequence[bytes], np.ndarray | None]]


@dataclass
class SourceData:
    name: str
    kind: DataKind
    shape: tuple[int, ...]
    num_rows: int
    read: ReadRows
    labels: list[str] | None = None
    encoded: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)  # importer name and source, recorded in the manifest
    fingerprint: str = ""  # changes when the source's content may have changed; guards import resume
    # Rows kept out of training (a translation data set's test pairs): imported beside the data set, in the
    # sub-folder named by extra["translation"]["heldout"], with its own manifest.
    heldout: "SourceData | None" = None


class SourceFormat(Protocol):
    description: str

    def sniff(self, path: Path) -> bool: ...

    def open(self, path: Path) -> SourceData: ...


SOURCE_FORMATS: Registry[type[SourceFormat]] = Registry("import format")  # classes; instantiated per use


def file_fingerprint(paths: Sequence[Path]) -> str:
    """Cheap content guard: names, sizes and modification times."""
    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def array_source(
    name: str,
    samples: np.ndarray,
    labels: np.ndarray | None,
    *,
    where: str,
    label_names: list[str] | None = None,
    extra: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
    fingerprint: str = "",
) -> SourceData:
    """A SourceData over in-memory arrays: images (N,H,W[,C]) or points (N,D)."""
    samples, kind = normalise_samples(samples, where)
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if len(labels) != len(samples):
            raise DataError(f"{where}: {len(labels)} labels for {len(samples)} samples")
        if not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"{where}: labels must be integers, got {labels.dtype}")
        labels = labels.astype(np.int64)
        if labels.min() < 0:
            raise DataError(f"{where}: labels must be >= 0, found {labels.min()}")
        if label_names is None:
            label_names = [str(i) for i in range(int(labels.max()) + 1)]

    def read(start: int, stop: int):
        return samples[start:stop], (labels[start:stop] if labels is not None else None)

    return SourceData(
        name=name,
        kind=kind,
        shape=tuple(int(v) for v in samples.shape[1:]),
        num_rows=len(samples),
        read=read,
        labels=label_names,
        extra=extra or {},
        provenance=provenance or {},
        fingerprint=fingerprint,
    )


def normalise_samples(samples: np.ndarray, where: str) -> tuple[np.ndarray, DataKind]:
    """(N,D) floats -> points; (N,H,W), (N,H,W,C) or (N,C,H,W) images -> (N,H,W,C) uint8."""
    samples = np.asarray(samples)
    if samples.ndim == 2:
        if not np.issubdtype(samples.dtype, np.number):
            raise DataError(f"{where}: points must be numeric, got {samples.dtype}")
        return samples.astype(np.float32, copy=False), "points"
    if samples.ndim == 3:
        samples = samples[..., None]
    if samples.ndim != 4:
        raise DataError(f"{where}: expected (N,D) points or (N,H,W[,C]) images, got shape {samples.shape}")
    if samples.shape[-1] not in (1, 3) and samples.shape[1] in (1, 3):
        samples = samples.transpose(0, 2, 3, 1)  # NCHW -> NHWC
    if samples.shape[-1] not in (1, 3):
        raise DataError(f"{where}: images need 1 or 3 channels, got shape {samples.shape}")
    return _to_uint8(samples, where), "image"


def _to_uint8(samples: np.ndarray, where: str) -> np.ndarray:
    if samples.dtype == np.uint8:
        return np.ascontiguousarray(samples)
    if np.issubdtype(samples.dtype, np.floating):
        lo, hi = float(samples.min()), float(samples.max())
        if lo >= 0.0 and hi <= 1.0:
            return np.round(samples * 255.0).astype(np.uint8)
        if lo >= -1.0 and hi <= 1.0:
            return np.round((samples + 1.0) * 127.5).astype(np.uint8)
        raise DataError(f"{where}: float images must lie in [0, 1] or [-1, 1], found [{lo:g}, {hi:g}]")
    if np.issubdtype(samples.dtype, np.integer) and samples.min() >= 0 and samples.max() <= 255:
        return samples.astype(np.uint8)
    raise DataError(f"{where}: images must be uint8 (or floats in [0, 1]), got {samples.dtype}")


def default_name(path: Path) -> str:
    stem = path.name
    for suffix in (".gz", ".npz", ".npy", ".bin"):
        stem = stem.removesuffix(suffix)
    return stem or os.path.basename(os.path.dirname(str(path)))
