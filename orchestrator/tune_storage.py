"""The filesystem Tune writes a job's object storage through: it uploads a file only when its bytes changed.

Tune syncs its experiment folder to storage by copying the driver's whole staging folder every time (every ~10 s,
and at the end): the experiment state, and every trial's result.json and params files, finished trials' included,
each with its folder markers. Over a search that is trials x syncs uploads, which grows with the square of the
search (bench/search_scale.py: 105 S3 requests per trial at 50 trials, 211 at 200). Through this filesystem a file
whose bytes were already uploaded from this process to the same path is not sent again, and a folder marker is
made once, so a sync costs what changed since the last one.

Only small files are compared (up to COMPARED_BYTES, held in memory until closed); larger ones, checkpoints of big
networks, stream straight through as before. A new process (a resumed driver, a trial) starts with nothing known
and uploads everything once. Nothing else writes a run's folder while its driver runs, so "uploaded from here
before" is "there now"; deletions and moves through this filesystem forget what they touch.

Writes go through a copy of the S3 filesystem made for writing: uploads leave synchronously in the calling thread
(background writes off: pyarrow's copy_files runs its copies on the IO thread pool, and an S3 stream closing there
would wait on that same pool, apache/arrow#32372, why Ray copies to S3 single-threaded), and with delayed open, so
a small file is one PutObject instead of a multipart upload's three requests. Reads, listings and deletions use the
filesystem as given.
"""
from __future__ import annotations

import hashlib
import io
import threading

import pyarrow as pa
import pyarrow.fs as pafs

COMPARED_BYTES = 8 * 1024 * 1024


def tune_filesystem(fs: pafs.FileSystem) -> pafs.FileSystem:
    """What Tune gets as `storage_filesystem`: object stores through ChangedOnlyHandler, local folders as they are."""
    if isinstance(fs, pafs.LocalFileSystem):
        return fs
    return pafs.PyFileSystem(ChangedOnlyHandler(fs))


class _Known:
    """What this process uploaded: path -> digest of its bytes, and folders made. Shared by a handler's copies."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.digests: dict[str, bytes] = {}
        self.folders: set[str] = set()

    def forget(self, path: str) -> None:
        """Forget `path` and everything under it ("" is the whole filesystem)."""
        prefix = path.rstrip("/") + "/" if path else ""
        with self.lock:
            for known in [p for p in self.digests if p == path or p.startswith(prefix)]:
                del self.digests[known]
            self.folders = {f for f in self.folders if f != path and not f.startswith(prefix)}


class _UploadIfChanged(io.RawIOBase):
    """Holds what is written; on close uploads it unless the same bytes went to the same path before. Past
    COMPARED_BYTES it opens the real upload and streams the rest through."""

    def __init__(self, inner: pafs.FileSystem, path: str, metadata, known: _Known) -> None:
        super().__init__()  # inner: the filesystem that writes
        self.inner, self.path, self.metadata, self.known = inner, path, metadata, known
        self.held: bytearray | None = bytearray()
        self.stream = None

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        size = len(memoryview(data))
        if self.held is not None:
            self.held += data
            if len(self.held) <= COMPARED_BYTES:
                return size
            self.stream = self.inner.open_output_stream(self.path, metadata=self.metadata)
            self.stream.write(self.held)
            self.held = None
            return size
        self.stream.write(data)
        return size

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self.stream is not None:  # streamed: its bytes were never compared
                self.stream.close()
                self.known.forget(self.path)
                return
            digest = hashlib.blake2b(self.held, digest_size=16).digest()
            with self.known.lock:
                if self.known.digests.get(self.path) == digest:
                    return
            with self.inner.open_output_stream(self.path, metadata=self.metadata) as out:
                out.write(self.held)
            with self.known.lock:
                self.known.digests[self.path] = digest
        finally:
            super().close()


class ChangedOnlyHandler(pafs.FileSystemHandler):
    """Everything as the wrapped filesystem does it, except that unchanged files and known folders are not written
    again. Pickles as the wrapped filesystem plus an empty memory (a copy in another process knows nothing)."""

    def __init__(self, fs: pafs.FileSystem) -> None:
        self.fs = fs
        self.writer = _writing_copy(fs)
        self.known = _Known()

    def __reduce__(self):
        return ChangedOnlyHandler, (self.fs,)

    def __eq__(self, other) -> bool:
        return isinstance(other, ChangedOnlyHandler) and self.fs.equals(other.fs)

    def get_type_name(self) -> str:
        return f"changed-only+{self.fs.type_name}"

    def normalize_path(self, path: str) -> str:
        return self.fs.normalize_path(path)

    def get_file_info(self, paths):
        return self.fs.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.fs.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        with self.known.lock:
            if path in self.known.folders:
                return
        self.fs.create_dir(path, recursive=recursive)
        with self.known.lock:
            self.known.folders.add(path)

    def delete_dir(self, path: str) -> None:
        self.known.forget(path)
        self.fs.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self.known.forget(path)
        self.fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        self.known.forget("")
        self.fs.delete_dir_contents("/", accept_root_dir=True)

    def delete_file(self, path: str) -> None:
        self.known.forget(path)
        self.fs.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self.known.forget(src)
        self.known.forget(dest)
        self.fs.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        self.known.forget(dest)
        self.fs.copy_file(src, dest)

    def open_input_stream(self, path: str):
        return self.fs.open_input_stream(path)

    def open_input_file(self, path: str):
        return self.fs.open_input_file(path)

    def open_output_stream(self, path: str, metadata):
        return pa.PythonFile(_UploadIfChanged(self.writer, path, metadata, self.known), mode="w")

    def open_append_stream(self, path: str, metadata):
        self.known.forget(path)
        return self.fs.open_append_stream(path, metadata=metadata)


def _writing_copy(fs: pafs.FileSystem) -> pafs.FileSystem:
    """The same S3 filesystem with background writes off and delayed open on (see the module's note)."""
    from trainers.data.fs import RetryingS3FileSystem, _rebuild_s3_filesystem

    if not isinstance(fs, pafs.S3FileSystem):
        return fs
    writing = {"background_writes": False, "allow_delayed_open": True}
    if isinstance(fs, RetryingS3FileSystem):  # keeps its retry policy
        _, (max_attempts, kwargs) = fs.__reduce__()
        return _rebuild_s3_filesystem(max_attempts, {**kwargs, **writing})
    rebuild, (kwargs,) = fs.__reduce__()
    return rebuild({**kwargs, **writing})
