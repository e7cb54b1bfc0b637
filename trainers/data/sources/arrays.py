"""`.npz` and `.npy` arrays: (N,H,W[,C]) / (N,C,H,W) images or (N,D) points, with optional labels in the npz."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from trainers.data.errors import DataError
from trainers.data.sources.base import SOURCE_FORMATS, SourceData, array_source, default_name, file_fingerprint

SAMPLE_KEYS = ("images", "x", "X", "data", "samples", "points", "arr_0")
LABEL_KEYS = ("labels", "y", "Y", "targets", "label")


@SOURCE_FORMATS.register("npz")
class NpzFormat:
    description = "NumPy .npz with an images/x/data array and optional labels/y array"

    def sniff(self, path: Path) -> bool:
        return path.is_file() and path.suffix == ".npz"

    def open(self, path: Path) -> SourceData:
        try:
            archive = np.load(path, allow_pickle=False)  # never unpickle user files
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: not a readable .npz ({exc})") from None
        with archive:
            keys = list(archive.keys())
            sample_key = next((k for k in SAMPLE_KEYS if k in keys), None)
            if sample_key is None:
                raise DataError(f"{path}: no samples array (looked for {', '.join(SAMPLE_KEYS)}; found {', '.join(keys) or 'nothing'})")
            label_key = next((k for k in LABEL_KEYS if k in keys), None)
            samples = archive[sample_key]
            labels = archive[label_key] if label_key else None
        return array_source(
            default_name(path),
            samples,
            labels,
            where=f"{path}[{sample_key}]",
            provenance={"importer": "npz", "source": str(path.absolute()), "arrays": [sample_key, label_key]},
            fingerprint=file_fingerprint([path]),
        )


@SOURCE_FORMATS.register("npy")
class NpyFormat:
    description = "NumPy .npy array of samples (unlabelled)"

    def sniff(self, path: Path) -> bool:
        return path.is_file() and path.suffix == ".npy"

    def open(self, path: Path) -> SourceData:
        try:
            samples = np.load(path, allow_pickle=False, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: not a readable .npy ({exc})") from None
        return array_source(
            default_name(path),
            np.asarray(samples),
            None,
            where=str(path),
            provenance={"importer": "npy", "source": str(path.absolute())},
            fingerprint=file_fingerprint([path]),
        )
