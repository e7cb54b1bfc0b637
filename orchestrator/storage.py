"""Where a job's results live: a local folder or an object-store URI.

Results go through the same filesystem resolver as data sets (trainers.data.fs): one place decides how an s3:// URI
becomes a pyarrow filesystem, with the same AWS environment, retries and timeouts for Tune's state, checkpoints and
the run record as for data reads, and the same refusal of credentials written inside a URI.
"""
from __future__ import annotations

import os
import time
from typing import Callable, Optional, TypeVar

import pyarrow.fs as pafs

from orchestrator.errors import StorageError

RUN_RECORD = "ganforge-run.json"  # beside Tune's state in every run folder
LATEST = "LATEST"  # at the storage root: the name of the newest run
T = TypeVar("T")


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
    """The object's bytes, or None when it does not exist. A read that fails for another reason (a dropped
    connection mid-body, which the SDK does not retry) is tried again, then reported: never taken for absence,
    which would tell `ganforge resume` there is no run to continue."""
    fs, path = filesystem(uri)

    def read() -> bytes:
        with fs.open_input_stream(path) as f:
            return f.read()

    return _read(fs, path, uri, read, missing=None)


def list_names(uri: str) -> list[str]:
    """The names of the entries directly under folder `uri` (empty when it does not exist)."""
    fs, path = filesystem(uri)

    def names() -> list[str]:
        return sorted(info.base_name for info in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)))

    return _read(fs, path, uri, names, missing=[])


_READ_ATTEMPTS = 4


def _read(fs: pafs.FileSystem, path: str, uri: str, read: Callable[[], T], missing: T) -> T:
    for attempt in range(_READ_ATTEMPTS):
        try:
            return read()
        except FileNotFoundError:
            return missing
        except OSError as exc:
            try:
                if fs.get_file_info(path).type == pafs.FileType.NotFound:
                    return missing
            except OSError:
                pass
            if attempt == _READ_ATTEMPTS - 1:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise StorageError(f"{uri}: cannot be read ({reason})") from None
            time.sleep(0.25 * 2**attempt)
    raise AssertionError("unreachable")


def latest_run_path(spec) -> Optional[str]:
    root = storage_root(spec)
    name = (read_text(f"{root}/{LATEST}") or "").strip()
    return f"{root}/{name}" if name else None
