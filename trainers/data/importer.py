"""`import_dataset`: any source -> Parquet shards + manifest at a local path, file:// or s3:// URI.

Shards are deterministic slices of the source (shard i holds rows [i*R, (i+1)*R)). A journal beside them records
each finished shard's checksum, so re-running an interrupted import keeps every shard that still verifies and
writes only the rest; the manifest, written last, marks the data set complete.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Callable

import numpy as np
import pyarrow.fs as pafs

from trainers.data.errors import DataError
from trainers.data.fs import Location, resolve, write_bytes_atomically
from trainers.data.layout import STORED_DTYPE, arrow_schema, choose_encoding, schema_record, stored_row_bytes, to_table
from trainers.data.manifest import MANIFEST_NAME, Manifest, ShardEntry, check_bucket, read_manifest, write_manifest
from trainers.data.sources import SourceData, open_source
from trainers.data.writer import file_sha256, write_shard

log = logging.getLogger("ganforge.data")

JOURNAL_NAME = "_import_journal.json"
SHARD_TARGET_BYTES = 16 << 20  # small enough for many shards to shuffle, large enough for cheap S3 requests
ROW_GROUP_TARGET_BYTES = 1 << 20  # the reader's record batch: bounds readahead memory
MIN_SHARD_ROWS, MAX_SHARD_ROWS = 1024, 1_000_000
MIN_ROW_GROUP_ROWS, MAX_ROW_GROUP_ROWS = 64, 65536

Progress = Callable[[int, int], None]  # (rows done, rows total)


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.parquet"


def default_shard_rows(row_bytes: int) -> int:
    return int(np.clip(SHARD_TARGET_BYTES // max(1, row_bytes), MIN_SHARD_ROWS, MAX_SHARD_ROWS))


def default_row_group_rows(row_bytes: int) -> int:
    return int(np.clip(ROW_GROUP_TARGET_BYTES // max(1, row_bytes), MIN_ROW_GROUP_ROWS, MAX_ROW_GROUP_ROWS))


def import_dataset(
    source: str,
    dest: str,
    *,
    shard_rows: int | None = None,
    overwrite: bool = False,
    fmt: str | None = None,
    progress: Progress | None = None,
) -> Manifest:
    """Import `source` (builtin:NAME, a folder of images, .npz/.npy, MNIST IDX, CIFAR-10 binary) to `dest`."""
    if shard_rows is not None and shard_rows < 1:
        raise DataError(f"--shard-rows must be >= 1, got {shard_rows}")
    if dest.startswith("builtin:"):
        raise DataError(f"{dest}: built-in data sets are read-only; import to a path, file:// or s3:// URI")
    return import_source(open_source(source, fmt), dest, source, shard_rows=shard_rows, overwrite=overwrite,
                         progress=progress)


def import_source(
    src: SourceData,
    dest: str,
    source: str,
    *,
    shard_rows: int | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Manifest:
    """Write an opened source to `dest` (`source` names it in messages and the resume journal)."""
    location = resolve(dest)
    _check_destination(location, overwrite)

    encoding = choose_encoding(src.kind, src.shape)
    row_bytes = stored_row_bytes(encoding, src.shape)
    shard_rows = shard_rows or default_shard_rows(row_bytes)
    row_group_rows = max(1, min(shard_rows, src.num_rows, default_row_group_rows(row_bytes)))
    num_shards = max(1, -(-src.num_rows // shard_rows))
    journal_key = {"fingerprint": src.fingerprint or source, "shard_rows": shard_rows, "row_group_rows": row_group_rows}
    journal = {} if overwrite else _read_journal(location, journal_key)

    entries: list[ShardEntry] = []
    done = 0
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="ganforge-encode") as pool:
        for i in range(num_shards):
            start, stop = i * shard_rows, min((i + 1) * shard_rows, src.num_rows)
            name = shard_name(i)
            kept = _verified(location, journal.get(name))
            if kept is None:
                samples, labels = src.read(start, stop)
                _check_labels(src, labels, source, start)
                table = to_table(encoding, src.shape, samples, labels, pool)
                kept = write_shard(location, name, table, row_group_rows)
                journal[name] = asdict(kept)
                _write_journal(location, journal_key, journal)
            else:
                log.info("%s: kept (checksum verifies)", location.uri_of(name))
            entries.append(kept)
            done += stop - start
            if progress:
                progress(done, src.num_rows)

    manifest = Manifest(
        name=src.name,
        kind=src.kind,
        shape=tuple(src.shape),
        encoding=encoding,
        dtype=STORED_DTYPE[encoding],
        shards=entries,
        labels=src.labels,
        schema=schema_record(arrow_schema(encoding, src.shape, src.labels is not None)),
        row_group_rows=row_group_rows,
        source={
            **src.provenance,
            "shard_rows": shard_rows,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "ganforge": _version(),
        },
        extra=src.extra,
    )
    if src.heldout is not None:  # before the manifest: a complete data set has its held-out rows too
        import_source(src.heldout, location.uri_of(src.extra["translation"]["heldout"]), f"{source} (held out)",
                      overwrite=True)
    write_manifest(location, manifest)
    _remove(location, JOURNAL_NAME)
    _remove_stale_shards(location, num_shards)
    return manifest


def _check_destination(location: Location, overwrite: bool) -> None:
    bucket_problem = check_bucket(location)
    if bucket_problem:
        raise DataError(bucket_problem)
    try:
        existing = read_manifest(location)
    except DataError:
        return  # nothing complete there (an interrupted import resumes from its journal)
    if not overwrite:
        raise DataError(
            f"{location.uri}: already holds a data set ({existing.num_rows} rows of {existing.name}); "
            "pass --overwrite to replace it"
        )
    # Drop the manifest first: a crash mid-overwrite must not leave an old manifest over new shards.
    _remove(location, MANIFEST_NAME)


def _check_labels(src: SourceData, labels: np.ndarray | None, source: str, start: int) -> None:
    if labels is None or src.labels is None or not len(labels):
        return
    bad = np.flatnonzero((labels < 0) | (labels >= len(src.labels)))
    if bad.size:
        row = start + int(bad[0])
        raise DataError(f"{source}: row {row} has label {labels[bad[0]]}, outside 0..{len(src.labels) - 1}")


def _verified(location: Location, recorded: dict | None) -> ShardEntry | None:
    """The journal's entry for a shard if the stored object still hashes to it."""
    if not recorded:
        return None
    entry = ShardEntry(**recorded)
    return entry if file_sha256(location, entry.path) == entry.sha256 else None


def _read_journal(location: Location, key: dict) -> dict:
    try:
        with location.filesystem.open_input_stream(location.path(JOURNAL_NAME)) as f:
            d = json.loads(f.read())
    except (FileNotFoundError, ValueError):
        return {}
    except OSError:
        return {}
    if d.get("key") != key:  # another source or sharding: nothing to reuse
        return {}
    return dict(d.get("shards", {}))


def _write_journal(location: Location, key: dict, shards: dict) -> None:
    write_bytes_atomically(location, JOURNAL_NAME, json.dumps({"key": key, "shards": shards}).encode())


def _remove(location: Location, name: str) -> None:
    try:
        location.filesystem.delete_file(location.path(name))
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise DataError(f"{location.uri_of(name)}: cannot delete ({' '.join(str(exc).split())})") from None


def _remove_stale_shards(location: Location, num_shards: int) -> None:
    """Shards past the new count, left by an overwritten larger import."""
    selector = pafs.FileSelector(location.root, recursive=False, allow_not_found=True)
    keep = {shard_name(i) for i in range(num_shards)}
    for info in location.filesystem.get_file_info(selector):
        base = info.base_name
        if base.startswith("shard-") and base.endswith(".parquet") and base not in keep:
            location.filesystem.delete_file(info.path)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("ganforge")
    except Exception:
        return "unknown"
