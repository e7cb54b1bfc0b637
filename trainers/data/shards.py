"""Reading one shard's row groups: validated against the manifest, reopened after a broken read.

A transient failure (network, 503 after the SDK's own retries, a connection dropped mid-body) reopens the file and
re-reads the same row group, so the stream continues at the same row with none lost or repeated. A shard that is
truncated, fails its page checksums or does not match the manifest raises ShardCorrupt at once (retrying cannot
fix it).
"""
from __future__ import annotations

import logging
import os
import time
from concurrent.futures import Executor, Future
from typing import Callable, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from trainers.data.errors import DataError
from trainers.data.fs import Location
from trainers.data.layout import DecodeError, arrow_schema
from trainers.data.manifest import Manifest, ShardEntry

log = logging.getLogger("ganforge.data")

READ_ATTEMPTS = 6
# Remote shards up to this size are fetched whole, in one GET (the importer aims at 16 MiB shards); larger ones are
# read a row group at a time. GANFORGE_S3_WHOLE_SHARD_MAX_MB overrides it (0: always row group by row group).
WHOLE_OBJECT_MAX_BYTES = 64 << 20
BACKOFF_S = 0.05
BACKOFF_MAX_S = 2.0
# Words in an OSError that mean the bytes themselves are bad, not the connection.
_CORRUPTION_WORDS = ("checksum", "integrity", "corrupt", "deserialize", "magic bytes", "unexpected end")

T = TypeVar("T")


def _whole_object_max_bytes() -> int:
    raw = os.environ.get("GANFORGE_S3_WHOLE_SHARD_MAX_MB")
    try:
        return int(float(raw) * (1 << 20)) if raw else WHOLE_OBJECT_MAX_BYTES
    except ValueError:
        raise DataError(f"GANFORGE_S3_WHOLE_SHARD_MAX_MB must be a number, got {raw!r}") from None


class ShardCorrupt(DataError):
    """A shard's bytes are bad: truncated, failing page checksums, or not what the manifest promises."""


class ShardUnreadable(DataError):
    """A shard kept failing with transient-looking errors after every retry."""


class ShardReader:
    """One shard of one data set. Opens lazily; `read_row_group` retries and reopens; `close` is idempotent."""

    def __init__(
        self,
        location: Location,
        manifest: Manifest,
        index: int,
        *,
        attempts: int = READ_ATTEMPTS,
        on_retry: Callable[[], None] | None = None,
    ) -> None:
        self.location = location
        self.manifest = manifest
        self.index = index
        self.entry: ShardEntry = manifest.shards[index]
        self.uri = location.uri_of(self.entry.path)
        self.attempts = attempts
        self.on_retry = on_retry  # counts reopen-and-retry for the stream's stats
        self._file: pq.ParquetFile | None = None
        self._handle: pa.NativeFile | None = None
        self._bounds: list[tuple[int, int]] | None = None
        self._prefetched: Future | None = None
        self._bytes: pa.Buffer | None = None  # the whole shard, when it came down in one GET

    # ------------------------------------------------------------------------------------------------ opening

    def _ensure_open(self) -> pq.ParquetFile:
        if self._file is None:
            self._file = self._open_once()
        return self._file

    def _open_once(self) -> pq.ParquetFile:
        handle = self._open_handle()
        ranged_remote = self.location.is_remote and not isinstance(handle, pa.BufferReader)
        try:
            # Coalescing a row group's column chunks into one ranged GET matters on object stores.
            pf = pq.ParquetFile(handle, page_checksum_verification=True, pre_buffer=ranged_remote)
        except pa.ArrowInvalid as exc:
            handle.close()
            raise ShardCorrupt(f"{self.uri}: not a readable Parquet file ({_one_line(exc)})") from None
        self._handle = handle
        self._check_schema(pf)
        return pf

    def prefetch(self, pool: Executor) -> None:
        """Start downloading a whole remote shard in the background; `_open_handle` picks it up (or its error)."""
        if self._whole_object and self._file is None and self._prefetched is None:
            self._prefetched = pool.submit(self._fetch)

    @property
    def _whole_object(self) -> bool:
        return self.location.is_remote and self.entry.bytes <= _whole_object_max_bytes()

    def _open_handle(self) -> pa.NativeFile:
        if self._prefetched is not None:
            future, self._prefetched = self._prefetched, None
            handle = future.result()  # a failed prefetch raises here and is retried like any read
        else:
            handle = self._fetch()
        self._bytes = handle.read_buffer() if isinstance(handle, pa.BufferReader) else None
        if self._bytes is not None:
            handle.seek(0)
        return handle

    def _fetch(self) -> pa.NativeFile:
        try:
            handle = self.location.filesystem.open_input_file(self.location.path(self.entry.path))
        except FileNotFoundError:
            raise ShardCorrupt(f"{self.uri}: shard listed in the manifest is missing") from None
        size = handle.size()
        if size != self.entry.bytes:
            handle.close()
            raise ShardCorrupt(f"{self.uri}: truncated or replaced ({size} bytes, manifest says {self.entry.bytes})")
        if not self._whole_object:
            return handle
        # A shard of ordinary size comes down in one GET: object stores charge per request and serve large reads
        # best, and the row groups are then decoded from memory. A break mid-body re-fetches it on retry.
        try:
            data = handle.read_buffer(size)
        finally:
            handle.close()
        if data.size != size:
            raise OSError(f"short read: {data.size} of {size} bytes")  # transient: retried
        return pa.BufferReader(data)

    def _check_schema(self, pf: pq.ParquetFile) -> None:
        m = self.manifest
        expected = arrow_schema(m.encoding, m.shape, m.labels is not None)
        actual = pf.schema_arrow
        for field in expected:
            index = actual.get_field_index(field.name)
            if index < 0:
                raise ShardCorrupt(f"{self.uri}: column {field.name!r} is missing (columns: {', '.join(actual.names)})")
            if not actual.field(index).type.equals(field.type):
                raise ShardCorrupt(f"{self.uri}: column {field.name!r} is {actual.field(index).type}, manifest says {field.type}")
        if pf.metadata.num_rows != self.entry.rows:
            raise ShardCorrupt(f"{self.uri}: holds {pf.metadata.num_rows} rows, manifest says {self.entry.rows}")

    @property
    def row_group_bounds(self) -> list[tuple[int, int]]:
        """[start, stop) rows of each row group."""
        if self._bounds is None:
            meta = self._with_retries("open", self._ensure_open).metadata
            bounds, start = [], 0
            for i in range(meta.num_row_groups):
                stop = start + meta.row_group(i).num_rows
                bounds.append((start, stop))
                start = stop
            self._bounds = bounds
        return self._bounds

    # ------------------------------------------------------------------------------------------------ reading

    @property
    def _columns(self) -> list[str]:
        m = self.manifest
        return [f.name for f in arrow_schema(m.encoding, m.shape, m.labels is not None)]

    def read_row_group(self, i: int) -> pa.Table:
        columns = self._columns
        return self._with_retries(f"row group {i}", lambda: self._ensure_open().read_row_group(i, columns=columns, use_threads=False))

    @property
    def reads_in_parallel(self) -> bool:
        """Whether `read_row_group_alone` may run on other threads: the open shard's bytes are in memory (one GET)
        or on local disk. Ranged reads of a large remote shard stay on this reader's handle and its retries."""
        return self._file is not None and (self._bytes is not None or not self.location.is_remote)

    def read_row_group_alone(self, i: int) -> pa.Table:
        """Row group i through a ParquetFile of its own, so several run at once (Parquet decoding releases the GIL).
        Corruption raises ShardCorrupt as `read_row_group` does; any other failure is for the caller to retry there."""
        if self._bytes is not None:
            source = pa.BufferReader(self._bytes)
        else:
            source = self.location.filesystem.open_input_file(self.location.path(self.entry.path))
        try:
            pf = pq.ParquetFile(source, page_checksum_verification=True)
            return pf.read_row_group(i, columns=self._columns, use_threads=False)
        except (OSError, pa.ArrowException) as exc:
            corrupt = self._as_corrupt(f"row group {i}", exc)
            if corrupt is None:
                raise
            raise corrupt from None
        finally:
            source.close()

    def read_row_groups(self, indices: list[int]) -> pa.Table:
        return pa.concat_tables([self.read_row_group(i) for i in indices])

    def _with_retries(self, what: str, fn: Callable[[], T]) -> T:
        delay = BACKOFF_S
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except ShardCorrupt:
                raise
            except (DecodeError, OSError, pa.ArrowException) as exc:
                corrupt = self._as_corrupt(what, exc)
                if corrupt is not None:
                    raise corrupt from None
                message = _one_line(exc)
                if attempt == self.attempts:
                    raise ShardUnreadable(f"{self.uri}: {what} still failing after {self.attempts} attempts ({message})") from None
                log.debug("%s: %s failed (%s); reopening, attempt %d", self.uri, what, message, attempt + 1)
            # Reopen: the old handle may be mid-way through a broken HTTP body.
            if self.on_retry:
                self.on_retry()
            self.close()
            time.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_S)
        raise AssertionError("unreachable")

    def _as_corrupt(self, what: str, exc: BaseException) -> ShardCorrupt | None:
        """The ShardCorrupt a read's failure means, or None when it looks transient (an I/O error worth a retry)."""
        if isinstance(exc, DecodeError):
            return ShardCorrupt(f"{self.uri}: {what}: {exc}")
        if isinstance(exc, OSError):  # first: pyarrow's I/O errors are ArrowExceptions too
            message = _one_line(exc)
            if isinstance(exc, FileNotFoundError) or any(w in message.lower() for w in _CORRUPTION_WORDS):
                return ShardCorrupt(f"{self.uri}: {what} is corrupt ({message})")
            return None
        return ShardCorrupt(f"{self.uri}: {what} is corrupt ({_one_line(exc)})")

    def close(self) -> None:
        handle, self._handle, self._file, self._bytes = self._handle, None, None, None
        if self._prefetched is not None:
            self._prefetched.cancel()  # if already running, its buffer is simply dropped
            self._prefetched = None
        if handle is not None:
            try:
                handle.close()
            except Exception:  # closing a broken handle must not mask the original error
                pass


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
