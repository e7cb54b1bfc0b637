"""Re-hash a data set's shards against its manifest (`ganforge data inspect --verify`)."""
from __future__ import annotations

from trainers.data.dataset import Dataset
from trainers.data.errors import DataError
from trainers.data.writer import file_sha256


def verify_shards(ds: Dataset) -> None:
    """Raise DataError naming the first shard that is missing or whose SHA-256 differs from the manifest."""
    for entry in ds.manifest.shards:
        actual = file_sha256(ds.location, entry.path)
        uri = ds.location.uri_of(entry.path)
        if actual is None:
            raise DataError(f"{uri}: shard listed in the manifest is missing")
        if actual != entry.sha256:
            raise DataError(f"{uri}: checksum mismatch (sha256 {actual[:12]}..., manifest says {entry.sha256[:12]}...)")
