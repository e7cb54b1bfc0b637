"""MNIST-style IDX files (gzipped or not): an images file, with its labels file found beside it by name."""
from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np

from trainers.data.errors import DataError
from trainers.data.sources.base import SOURCE_FORMATS, SourceData, array_source, default_name, file_fingerprint

IDX_UBYTE = 0x08
GZIP_MAGIC = b"\x1f\x8b"


def _open(path: Path):
    with open(path, "rb") as f:
        gz = f.read(2) == GZIP_MAGIC
    return gzip.open(path, "rb") if gz else open(path, "rb")


def _header(path: Path) -> tuple[int, int]:
    """(dtype code, number of dimensions) from the IDX magic number, or (0, 0) if it is not one."""
    try:
        with _open(path) as f:
            magic = f.read(4)
    except (OSError, EOFError):
        return 0, 0
    if len(magic) != 4 or magic[:2] != b"\0\0":
        return 0, 0
    return magic[2], magic[3]


def read_idx(path: Path) -> np.ndarray:
    dtype, ndim = _header(path)
    if dtype != IDX_UBYTE:
        raise DataError(f"{path}: not an unsigned-byte IDX file")
    try:
        with _open(path) as f:
            f.read(4)
            dims = np.frombuffer(f.read(4 * ndim), dtype=">u4").astype(int)
            data = np.frombuffer(f.read(), dtype=np.uint8)
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read IDX data ({exc})") from None
    expected = int(np.prod(dims))
    if data.size != expected:
        raise DataError(f"{path}: truncated IDX file ({data.size} bytes of data, header promises {expected})")
    return data.reshape(dims)


def labels_beside(path: Path) -> Path | None:
    """train-images-idx3-ubyte[.gz] -> train-labels-idx1-ubyte[.gz], if it exists."""
    name = re.sub(r"images?", "labels", path.name, count=1).replace("idx3", "idx1")
    for candidate in (path.with_name(name), path.with_name(name.removesuffix(".gz")), path.with_name(name + ".gz")):
        if candidate != path and candidate.is_file() and _header(candidate) == (IDX_UBYTE, 1):
            return candidate
    return None


@SOURCE_FORMATS.register("mnist-idx")
class IdxFormat:
    description = "MNIST IDX images file (e.g. train-images-idx3-ubyte[.gz]); labels file picked up beside it"

    def sniff(self, path: Path) -> bool:
        return path.is_file() and _header(path) == (IDX_UBYTE, 3)

    def open(self, path: Path) -> SourceData:
        images = read_idx(path)
        if images.ndim != 3:
            raise DataError(f"{path}: expected a 3-dimensional IDX images file, got {images.ndim} dimensions")
        label_path = labels_beside(path)
        labels = read_idx(label_path) if label_path else None
        files = [path] + ([label_path] if label_path else [])
        return array_source(
            default_name(path),
            images,
            labels,
            where=str(path),
            label_names=[str(i) for i in range(10)] if labels is not None and labels.max() < 10 else None,
            provenance={"importer": "mnist-idx", "source": str(path.absolute()), "labels": str(label_path) if label_path else None},
            fingerprint=file_fingerprint(files),
        )
