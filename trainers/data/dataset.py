"""Dataset: an opened manifest plus its location; the entry point for streams and fixed real-sample sets."""
from __future__ import annotations

import math
import os
from functools import cached_property
from typing import Any

import numpy as np
import torch

from trainers.data.builtins import materialise_builtin
from trainers.data.errors import DataError
from trainers.data.fs import Location, resolve
from trainers.data.info import DataInfo
from trainers.data.layout import STORED_DTYPE, DecodeError, decode
from trainers.data.manifest import Manifest, read_manifest
from trainers.data.shards import ShardCorrupt, ShardReader
from trainers.data.sources.builtin import BUILTIN_SCHEME
from trainers.data.resident import ResidentStream
from trainers.data.stream import BatchStream, StreamOptions
from trainers.data.tensors import images_to_model_range

_REAL_SAMPLES_STREAM = 0x5EED_0003


class Dataset:
    def __init__(self, uri: str, location: Location, manifest: Manifest) -> None:
        self.uri = uri
        self.location = location
        self.manifest = manifest

    @cached_property
    def info(self) -> DataInfo:
        return self.manifest.info()

    def stream(self, options: StreamOptions | None = None, /, **fields: Any) -> BatchStream:
        """Batches in the seeded order, as `options` (or the StreamOptions `fields`: batch_size=, seed=, ...) say.
        A data set whose decoded rows fit in `resident_bytes` is held on `device` (a ResidentStream: same order, no
        reads or host copies per batch), any other one is streamed."""
        if options is None:
            options = StreamOptions(**fields)
        elif fields:
            raise TypeError("give StreamOptions or its fields, not both")
        if 0 < self.decoded_bytes <= options.resident_bytes:
            return ResidentStream(self, options)
        return BatchStream(self, options)

    @property
    def decoded_bytes(self) -> int:
        """Memory of every row decoded as the models take them (uint8 pixels, float32 points)."""
        return self.info.num_rows * math.prod(self.info.shape) * np.dtype(STORED_DTYPE[self.manifest.encoding]).itemsize

    def real_samples(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`n` seeded rows in model range (distinct unless n exceeds the data set), reading only the row groups
        that hold them."""
        if n < 1:
            raise DataError(f"{self.uri}: real_samples needs n >= 1, got {n}")
        total = self.info.num_rows
        rng = np.random.default_rng([_REAL_SAMPLES_STREAM, seed])
        rows = rng.choice(total, size=n, replace=n > total)
        return self.rows(np.asarray(rows, dtype=np.int64))

    def rows(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The given rows (int64 indices) in model range, with their labels or None."""
        samples, labels = self._read_rows(rows)
        x = torch.from_numpy(samples)
        y = torch.from_numpy(labels) if labels is not None else None
        return (images_to_model_range(x) if self.info.is_image else x), y

    def _read_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        shard_starts = np.concatenate([[0], np.cumsum([s.rows for s in self.manifest.shards])])
        shard_of = np.searchsorted(shard_starts, rows, side="right") - 1
        samples: np.ndarray | None = None
        labels: np.ndarray | None = None
        for shard in np.unique(shard_of):
            picked = np.flatnonzero(shard_of == shard)
            local = rows[picked] - shard_starts[shard]
            reader = ShardReader(self.location, self.manifest, int(shard))
            try:
                starts = np.array([b for b, _ in reader.row_group_bounds] + [reader.entry.rows])
                group_of = np.searchsorted(starts, local, side="right") - 1
                groups = np.unique(group_of)
                table = reader.read_row_groups([int(g) for g in groups])
                # Where each wanted row sits inside the concatenation of just the row groups read.
                group_offsets = np.concatenate([[0], np.cumsum(starts[groups + 1] - starts[groups])])
                index = group_offsets[np.searchsorted(groups, group_of)] + (local - starts[group_of])
                x, y = decode(table.take(index), self.manifest)
            except DecodeError as exc:
                raise ShardCorrupt(f"{reader.uri}: {exc}") from None
            finally:
                reader.close()
            if samples is None:
                samples = np.empty((len(rows), *x.shape[1:]), dtype=x.dtype)
                labels = np.empty(len(rows), dtype=np.int64) if y is not None else None
            samples[picked] = x
            if labels is not None:
                labels[picked] = y
        assert samples is not None
        return samples, labels

    def __repr__(self) -> str:
        i = self.info
        return f"Dataset({self.uri!r}, kind={i.kind}, shape={i.shape}, rows={i.num_rows}, classes={i.num_classes})"


def open_dataset(uri: str, cache_dir: str | os.PathLike | None = None) -> Dataset:
    """Open a data set by URI: builtin:NAME (materialised under the cache on first use), a path, file:// or s3://."""
    if not isinstance(uri, str) or not uri.strip():
        raise DataError(f"data.uri must be a non-empty string, got {uri!r}")
    uri = uri.strip()
    if uri.startswith(BUILTIN_SCHEME):
        location = resolve(materialise_builtin(uri[len(BUILTIN_SCHEME):], cache_dir))
    else:
        location = resolve(uri)
    return Dataset(uri, location, read_manifest(location))
