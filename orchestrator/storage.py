"""Where a job's results live: a local folder or an object-store URI.

Results go through the same filesystem resolver as data sets (trainers.data.fs): one place decides how an s3:// URI
becomes a pyarrow filesystem, with the same AWS environment, retries and timeouts for Tune's state, checkpoints and
the run record as for data reads, and the same refusal of credentials written inside a URI.
"""
from __future__ import annotations

import os
from typing import Optional

import pyarrow.fs as pafs

from orchestrator.errors import StorageError

RUN_RECORD = "ganforge-run.json"  # beside Tune's state in every run folder
LATEST = "LATEST"  # at the storage root: the name of the newest run


def storage_root(spec) -> str:
    uri = spec.storage.uri or os.path.join("ganforge-results", spec.name)
    return uri if "://" in uri else os.path.abspath(uri)


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a storage URI or local path: what Tune's storage_filesystem takes."""
    from trainers.data import DataError
    from trainers.data.fs import resolve

    try:
        location = resolve(uri)
    except DataError as exc:
        raise StorageError(f"storage.uri: {exc}") from None
    return location.filesystem, location.root


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode())


def read_text(uri: str) -> Optional[str]:
    data = read_bytes(uri)
    return None if data is None else data.decode()


def write_bytes(uri: str, data: bytes) -> None:
    fs, path = filesystem(uri)
    fs.create_dir(os.path.dirname(path), recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(data)


def read_bytes(uri: str) -> Optional[bytes]:
    fs, path = filesystem(uri)
    try:
        with fs.open_input_stream(path) as f:
            return f.read()
    except (FileNotFoundError, OSError):
        return None


def list_names(uri: str) -> list[str]:
    """The names of the entries directly under folder `uri` (empty when it does not exist)."""
    fs, path = filesystem(uri)
    try:
        return sorted(info.base_name for info in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)))
    except (FileNotFoundError, OSError):
        return []


def latest_run_path(spec) -> Optional[str]:
    root = storage_root(spec)
    name = (read_text(f"{root}/{LATEST}") or "").strip()
    return f"{root}/{name}" if name else None
