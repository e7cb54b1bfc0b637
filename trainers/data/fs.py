"""Data set URIs -> a pyarrow FileSystem plus a path inside it.

S3 settings come from the standard AWS environment and config files only (AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL,
AWS_REGION / AWS_DEFAULT_REGION, AWS_PROFILE, keys, instance roles): credentials are never accepted inside a URI
or a YAML file, and never logged.
"""
from __future__ import annotations

import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

from trainers.data.errors import DataError
from trainers.registry import Registry, UnknownComponentError

# Per-request retries inside the AWS SDK (503 SlowDown, throttling, dropped connections). A read that still breaks
# mid-stream is reopened by the shard reader, which continues at the same row.
# GANFORGE_S3_MAX_ATTEMPTS overrides the per-request attempts (e.g. fewer, to fail fast on a dead endpoint).
S3_REQUEST_ATTEMPTS = 8
S3_CONNECT_TIMEOUT_S = 5.0
S3_REQUEST_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Location:
    """Where a data set lives: a filesystem, the root path inside it, and the URI users see in messages."""

    filesystem: pafs.FileSystem
    root: str
    uri: str

    def path(self, name: str) -> str:
        return f"{self.root}/{name}" if self.root else name

    def uri_of(self, name: str) -> str:
        return f"{self.uri.rstrip('/')}/{name}"

    @property
    def is_remote(self) -> bool:
        return not isinstance(self.filesystem, pafs.LocalFileSystem)


SCHEMES: Registry = Registry("data URI scheme")


@SCHEMES.register("file")
def _file_location(uri: str) -> Location:
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise DataError(f"{uri}: file:// URIs must be local (file:///abs/path), not on host {parts.netloc!r}")
    return _local_location(parts.path, uri)


@SCHEMES.register("")
def _path_location(uri: str) -> Location:
    return _local_location(uri, uri)


def _local_location(path: str, uri: str) -> Location:
    root = str(Path(path).expanduser().absolute())
    return Location(pafs.LocalFileSystem(), root.rstrip("/") or "/", uri)


@SCHEMES.register("s3")
def _s3_location(uri: str) -> Location:
    parts = urlsplit(uri)
    if "@" in parts.netloc:
        raise DataError(f"{_redact(uri)}: credentials in a URI are not accepted; use the AWS environment or a profile")
    if parts.query:
        raise DataError(f"{uri}: query options are not accepted; configure S3 with the standard AWS environment")
    bucket = parts.netloc
    if not bucket:
        raise DataError(f"{uri}: an s3:// URI needs a bucket (s3://bucket/prefix)")
    prefix = parts.path.strip("/")
    return Location(s3_filesystem(), f"{bucket}/{prefix}" if prefix else bucket, uri.rstrip("/"))


def resolve(uri: str | os.PathLike) -> Location:
    """Map a data set URI (local path, file://, s3://) to its Location."""
    text = os.fspath(uri)
    scheme = urlsplit(text).scheme if "://" in text else ""
    try:
        locate = SCHEMES.get(scheme)
    except UnknownComponentError as exc:
        raise DataError(f"{text}: {exc}") from None
    return locate(text)


def _redact(uri: str) -> str:
    parts = urlsplit(uri)
    host = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://***@{host}{parts.path}"


# One S3FileSystem per distinct AWS environment: creating one costs a credentials lookup.
_S3_CACHE: dict[tuple, pafs.S3FileSystem] = {}
_S3_LOCK = threading.Lock()


_CONFIG_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE",
               "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ACCESS_KEY_ID", "GANFORGE_S3_MAX_ATTEMPTS")
DEFAULT_REGION = "us-east-1"


def s3_settings() -> tuple[str | None, str | None]:
    """(endpoint URL, region) from the environment, then from the active AWS profile's config.

    Environment first, service-specific first (AWS_ENDPOINT_URL_S3 over AWS_ENDPOINT_URL), as the AWS SDKs do.
    The profile's `endpoint_url` / `region` (and its `s3 =` services section) are read through botocore.
    """
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
    if endpoint is None or region is None:
        profile = _profile_config()
        endpoint = endpoint or profile.get("s3", {}).get("endpoint_url") or profile.get("endpoint_url")
        region = region or profile.get("region")
    return endpoint, region


def _profile_config() -> dict:
    try:
        import botocore.session
        from botocore.exceptions import BotoCoreError
    except ImportError:  # botocore ships with boto3; without it only the environment counts
        return {}
    try:
        session = botocore.session.Session()
        config = dict(session.get_scoped_config())
        services = config.get("services")
        if services:  # [services NAME] section: s3 = endpoint_url = ...
            config.update(session.full_config.get("services", {}).get(services, {}))
        return config
    except BotoCoreError as exc:  # e.g. AWS_PROFILE names a profile that does not exist
        raise DataError(f"AWS configuration: {exc}") from None


def s3_filesystem() -> pafs.S3FileSystem:
    # The key holds which configuration is in play, never the secrets themselves.
    key = tuple(os.environ.get(name) for name in _CONFIG_ENV)
    with _S3_LOCK:
        fs = _S3_CACHE.get(key)
        if fs is None:
            endpoint, region = s3_settings()
            fs = _S3_CACHE[key] = _new_s3_filesystem(endpoint, region)
        return fs


def _request_attempts() -> int:
    raw = os.environ.get("GANFORGE_S3_MAX_ATTEMPTS")
    try:
        return max(1, int(raw)) if raw else S3_REQUEST_ATTEMPTS
    except ValueError:
        raise DataError(f"GANFORGE_S3_MAX_ATTEMPTS must be an integer, got {raw!r}") from None


def sdk_retry_environment() -> dict[str, str]:
    """The same retry policy for boto3/botocore clients (e.g. MLflow's S3 artifact store), which read it from the
    standard AWS environment: standard mode retries 5xx, throttling and dropped connections with backoff."""
    return {"AWS_RETRY_MODE": "standard", "AWS_MAX_ATTEMPTS": str(_request_attempts())}


class RetryingS3FileSystem(pafs.S3FileSystem):
    """pyarrow's S3FileSystem whose retry policy survives pickling. pyarrow pickles endpoint, region and timeouts but
    not the retry strategy, so a copy (Ray ships Tune's storage filesystem to every trial and into the experiment
    state) would fall back to 3 attempts: one 503 burst on a HEAD then loses a trial's results on resume."""

    def __init__(self, max_attempts: int, **kwargs) -> None:
        super().__init__(retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=max_attempts), **kwargs)
        self.max_attempts = max_attempts

    def __reduce__(self):
        _, (kwargs,) = super().__reduce__()  # no keys in it: the SDK's default chain finds them in each process
        return _rebuild_s3_filesystem, (self.max_attempts, kwargs)


def _rebuild_s3_filesystem(max_attempts: int, kwargs: dict) -> RetryingS3FileSystem:
    return RetryingS3FileSystem(max_attempts, **kwargs)


def _new_s3_filesystem(endpoint: str | None, region: str | None) -> pafs.S3FileSystem:
    kwargs: dict = dict(
        # With no region anywhere the SDK would probe the EC2 metadata service; S3-compatible stores ignore it.
        region=region or DEFAULT_REGION,
        connect_timeout=S3_CONNECT_TIMEOUT_S,
        request_timeout=S3_REQUEST_TIMEOUT_S,
    )
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        kwargs.update(endpoint_override=parts.netloc, scheme=parts.scheme or "https")
    # Keys, session tokens and profiles are picked up by the AWS SDK's default chain; we never pass them.
    return RetryingS3FileSystem(_request_attempts(), **kwargs)


def write_bytes_atomically(location: Location, name: str, data: bytes | pa.Buffer) -> None:
    """Store `data` as `name` whole or not at all (a local temp file renamed; an object store's upload)."""
    fs = location.filesystem
    final = location.path(name)
    try:
        if location.is_remote:
            # An object store publishes an object only when its upload completes: already atomic.
            with fs.open_output_stream(final) as out:
                out.write(data)
            return
        fs.create_dir(location.root, recursive=True)
        temp = f"{final}.tmp-{uuid.uuid4().hex[:8]}"
        with fs.open_output_stream(temp) as out:
            out.write(data)
        fs.move(temp, final)
    except OSError as exc:
        raise DataError(f"{location.uri_of(name)}: cannot write ({' '.join(str(exc).split())})") from None
