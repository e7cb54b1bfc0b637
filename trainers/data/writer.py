"""Writing shards and manifests: each object appears whole or not at all, with its SHA-256 known."""
from __future__ import annotations

import hashlib

import pyarrow as pa
import pyarrow.parquet as pq

from trainers.data.errors import DataError
from trainers.data.fs import Location, write_bytes_atomically
from trainers.data.manifest import ShardEntry

HASH_CHUNK = 8 << 20

# Page checksums let readers tell a corrupt page from a good one; snappy skips incompressible pages cheaply.
PARQUET_OPTIONS = dict(compression="snappy", write_page_checksum=True, write_statistics=False)


def write_shard(location: Location, name: str, table: pa.Table, row_group_rows: int) -> ShardEntry:
    """Serialise one shard in memory (so its checksum is of exactly the bytes stored) and store it atomically."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=max(1, row_group_rows), **PARQUET_OPTIONS)
    data = sink.getvalue()
    write_bytes_atomically(location, name, data)
    return ShardEntry(path=name, rows=table.num_rows, bytes=data.size, sha256=hashlib.sha256(data).hexdigest())


def file_sha256(location: Location, name: str) -> str | None:
    """SHA-256 of a stored object, or None when it does not exist."""
    h = hashlib.sha256()
    try:
        with location.filesystem.open_input_stream(location.path(name)) as f:
            while chunk := f.read(HASH_CHUNK):
                h.update(chunk)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DataError(f"{location.uri_of(name)}: cannot read ({' '.join(str(exc).split())})") from None
    return h.hexdigest()
