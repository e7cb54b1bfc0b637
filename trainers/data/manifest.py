"""The JSON manifest beside a data set's Parquet shards: schema, shapes, labels, per-shard checksums, provenance.

A data set is complete exactly when its manifest exists: importers write the manifest last.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import pyarrow.fs as pafs

from trainers.data.errors import DataError
from trainers.data.fs import Location, write_bytes_atomically
from trainers.data.info import DataInfo, DataKind

MANIFEST_NAME = "manifest.json"
FORMAT = "ganforge-dataset"
FORMAT_VERSION = 1

# How samples are stored: raw uint8 tensors (images up to 128 px), PNG/JPEG bytes (larger images), float points.
Encoding = Literal["tensor", "encoded", "points"]


@dataclass(frozen=True)
class ShardEntry:
    path: str  # relative to the data set root
    rows: int
    bytes: int
    sha256: str


@dataclass
class Manifest:
    name: str
    kind: DataKind
    shape: tuple[int, ...]
    encoding: Encoding
    dtype: str  # of the stored samples: uint8 for images, float32 for points
    shards: list[ShardEntry]
    labels: list[str] | None = None  # class names by label id; None = unlabelled
    schema: list[dict[str, str]] = field(default_factory=list)  # Arrow columns as stored: [{"name", "type"}]
    row_group_rows: int = 0
    source: dict[str, Any] = field(default_factory=dict)  # how it was made: importer, source, options, versions
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. {"mixture": {...}} for mode-coverage metrics

    @property
    def num_rows(self) -> int:
        return sum(s.rows for s in self.shards)

    @property
    def num_classes(self) -> int:
        return len(self.labels) if self.labels else 0

    @property
    def checksum(self) -> str:
        """Content checksum: same samples, same layout -> same value, whenever and however it was imported."""
        content = {
            "kind": self.kind,
            "shape": list(self.shape),
            "encoding": self.encoding,
            "dtype": self.dtype,
            "labels": self.labels,
            "shards": [[s.rows, s.sha256] for s in self.shards],
            "extra": self.extra,
        }
        return "sha256:" + hashlib.sha256(_canonical(content)).hexdigest()

    def info(self) -> DataInfo:
        return DataInfo(
            name=self.name,
            kind=self.kind,
            shape=tuple(self.shape),
            num_rows=self.num_rows,
            num_classes=self.num_classes,
            checksum=self.checksum,
            extra=dict(self.extra),
        )

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **d, "num_rows": self.num_rows, "checksum": self.checksum}

    @classmethod
    def from_json(cls, d: dict[str, Any], where: str) -> "Manifest":
        if d.get("format") != FORMAT:
            raise DataError(f"{where}: not a ganforge manifest (format={d.get('format')!r})")
        if d.get("format_version") != FORMAT_VERSION:
            raise DataError(f"{where}: manifest format_version {d.get('format_version')} is not supported (expected {FORMAT_VERSION})")
        try:
            manifest = cls(
                name=d["name"],
                kind=d["kind"],
                shape=tuple(int(v) for v in d["shape"]),
                encoding=d["encoding"],
                dtype=d["dtype"],
                shards=[ShardEntry(**s) for s in d["shards"]],
                labels=d.get("labels"),
                schema=d.get("schema", []),
                row_group_rows=int(d.get("row_group_rows", 0)),
                source=d.get("source", {}),
                extra=d.get("extra", {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{where}: malformed manifest ({type(exc).__name__}: {exc})") from None
        if d.get("checksum") not in (None, manifest.checksum):
            raise DataError(f"{where}: manifest checksum does not match its content (edited or corrupted)")
        if not manifest.shards:
            raise DataError(f"{where}: manifest lists no shards")
        return manifest


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def read_manifest(location: Location) -> Manifest:
    """Load and check a data set's manifest, with a one-line error for each way it can be missing."""
    path = location.path(MANIFEST_NAME)
    where = location.uri_of(MANIFEST_NAME)
    try:
        with location.filesystem.open_input_stream(path) as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(_why_missing(location)) from None
    except OSError as exc:
        raise DataError(f"{where}: cannot read manifest ({_one_line(exc)})") from None
    try:
        d = json.loads(raw)
    except ValueError as exc:
        raise DataError(f"{where}: manifest is not valid JSON ({exc})") from None
    if not isinstance(d, dict):
        raise DataError(f"{where}: manifest is not a JSON object")
    return Manifest.from_json(d, where)


def write_manifest(location: Location, manifest: Manifest) -> None:
    write_bytes_atomically(location, MANIFEST_NAME, json.dumps(manifest.to_json(), indent=2).encode())


def check_bucket(location: Location) -> str | None:
    """A one-line problem if `location` is in an object-store bucket that is missing or unreachable, else None."""
    if not (location.is_remote and isinstance(location.filesystem, pafs.S3FileSystem)):
        return None
    bucket = location.root.split("/", 1)[0]
    try:
        if location.filesystem.get_file_info(bucket).type == pafs.FileType.NotFound:
            return f"{location.uri}: bucket {bucket!r} does not exist"
    except OSError as exc:
        return f"{location.uri}: cannot reach bucket {bucket!r} ({_one_line(exc)})"
    return None


def _why_missing(location: Location) -> str:
    """Tell apart a missing bucket, a missing prefix and a prefix with files but no manifest."""
    fs = location.filesystem
    bucket_problem = check_bucket(location)
    if bucket_problem:
        return bucket_problem
    try:
        info = fs.get_file_info(location.root)
        listed = (
            fs.get_file_info(pafs.FileSelector(location.root, recursive=False, allow_not_found=True))
            if info.type == pafs.FileType.Directory or location.is_remote
            else []
        )
    except OSError as exc:
        return f"{location.uri}: cannot list ({_one_line(exc)})"
    if info.type == pafs.FileType.File:
        return f"{location.uri}: is a file, not a data set directory (expected shards plus {MANIFEST_NAME})"
    if not listed and info.type == pafs.FileType.NotFound:
        return f"{location.uri}: no data set here (nothing at this path or prefix)"
    return f"{location.uri}: no {MANIFEST_NAME} (not a ganforge data set, or its import did not finish; run `ganforge data import`)"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
