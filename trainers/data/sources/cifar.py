"""CIFAR-10 binary batches: records of 1 label byte + 3x32x32 pixels (CHW); a .bin file or a folder of them."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from trainers.data.errors import DataError
from trainers.data.sources.base import SOURCE_FORMATS, SourceData, array_source, file_fingerprint

RECORD = 1 + 3 * 32 * 32
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _batches(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(path.glob("data_batch_*.bin")) or sorted(path.glob("test_batch.bin"))


@SOURCE_FORMATS.register("cifar10-binary")
class Cifar10Format:
    description = "CIFAR-10 binary version: data_batch_N.bin files, or a folder holding them (train batches only)"

    def sniff(self, path: Path) -> bool:
        if path.is_file():
            return path.suffix == ".bin" and path.stat().st_size % RECORD == 0 and path.stat().st_size > 0
        return path.is_dir() and bool(_batches(path))

    def open(self, path: Path) -> SourceData:
        files = _batches(path)
        if not files:
            raise DataError(f"{path}: no CIFAR-10 batches (data_batch_*.bin) here")
        records = []
        for f in files:
            raw = np.fromfile(f, dtype=np.uint8)
            if raw.size == 0 or raw.size % RECORD:
                raise DataError(f"{f}: size {raw.size} is not a whole number of {RECORD}-byte CIFAR-10 records")
            records.append(raw.reshape(-1, RECORD))
        data = np.concatenate(records)
        labels = data[:, 0].astype(np.int64)
        if labels.max() >= len(CIFAR10_CLASSES):
            raise DataError(f"{path}: label {labels.max()} is out of CIFAR-10's range 0..9")
        images = data[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        names = _class_names(path if path.is_dir() else path.parent)
        return array_source(
            "cifar10",
            np.ascontiguousarray(images),
            labels,
            where=str(path),
            label_names=names,
            provenance={"importer": "cifar10-binary", "source": str(path.absolute()), "files": [f.name for f in files]},
            fingerprint=file_fingerprint(files),
        )


def _class_names(folder: Path) -> list[str]:
    meta = folder / "batches.meta.txt"
    if meta.is_file():
        names = [line.strip() for line in meta.read_text().splitlines() if line.strip()]
        if len(names) == len(CIFAR10_CLASSES):
            return names
    return list(CIFAR10_CLASSES)
