"""The shape of every URI a job holds, checked before anything starts: a known scheme, and the parts it needs.

One rule set per spec field (a registry of schemes each); a scheme that no rule knows is named in the error with
the ones that work there. Whether the place exists or answers is preflight's job (orchestrator/preflight.py).
"""
from __future__ import annotations

from typing import Callable, Optional
from urllib.parse import urlsplit

from trainers.catalog import BUILTIN_KINDS

# A check returns what is wrong with a URI of its scheme, or None.
Rule = Callable[[str], Optional[str]]


def scheme_of(uri: str) -> str:
    if uri.startswith("builtin:"):
        return "builtin"
    return urlsplit(uri).scheme.lower() if "://" in uri else ""


def _local(uri: str) -> Optional[str]:
    return None if uri.strip() else "is empty"


def _builtin(uri: str) -> Optional[str]:
    if uri in BUILTIN_KINDS:
        return None
    known = ", ".join(sorted(BUILTIN_KINDS))
    return f"unknown built-in data set {uri!r} (known: {known})"


def _file(uri: str) -> Optional[str]:
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        return f"file:// URIs must be local (file:///abs/path), not on host {parts.netloc!r}"
    return None if parts.path else "file:// needs a path (file:///abs/path)"


def _bucket(uri: str) -> Optional[str]:
    parts = urlsplit(uri)
    if "@" in parts.netloc:
        return "credentials in a URI are not accepted; use the AWS environment or a profile"
    if not parts.netloc:
        return f"{parts.scheme}:// needs a bucket ({parts.scheme}://bucket/prefix)"
    return "query options are not accepted; configure S3 with the standard AWS environment" if parts.query else None


def _host(uri: str) -> Optional[str]:
    parts = urlsplit(uri)
    if not parts.hostname:
        return f"{parts.scheme}:// needs a host ({parts.scheme}://host:port)"
    try:
        parts.port
    except ValueError:
        return f"{parts.netloc!r} has no valid port"
    return None


def _sqlite(uri: str) -> Optional[str]:
    return None if uri.startswith("sqlite:///") and len(uri) > len("sqlite:///") else "use sqlite:///path/to/file.db"


def _ray_gcs(uri: str) -> Optional[str]:
    """A bare GCS address `host:port`, or `auto`/`local` (ray.init's words)."""
    if uri in ("auto", "local"):
        return None
    host, sep, port = uri.rpartition(":")
    return None if sep and host and port.isdigit() else "use ray://host:10001, host:6379, auto or an http(s):// URL"


_DATABASES = {db: _host for db in ("postgresql", "mysql", "mssql")}

URI_RULES: dict[tuple[str, ...], dict[str, Rule]] = {
    ("data", "uri"): {"": _local, "builtin": _builtin, "file": _file, "s3": _bucket},
    ("storage", "uri"): {"": _local, "file": _file, "s3": _bucket, "gs": _bucket},
    ("registry", "tracking_uri"): {"": _local, "file": _file, "sqlite": _sqlite, "http": _host, "https": _host,
                                   "databricks": lambda uri: None, **_DATABASES},
    ("cluster", "address"): {"": _ray_gcs, "ray": _host, "http": _host, "https": _host},
    ("cluster", "dashboard"): {"http": _host, "https": _host},
}


def uri_problem(path: tuple[str, ...], uri: str) -> Optional[str]:
    """What is wrong with `uri` as the value of spec field `path`, or None."""
    rules = URI_RULES[path]
    scheme = scheme_of(uri).split("+")[0]  # postgresql+psycopg2:// names a driver
    rule = rules.get(scheme)
    if rule is None:
        shown = [{"": "a local path", "builtin": "builtin:NAME"}.get(s, f"{s}://") for s in rules]
        what = f"scheme {scheme + '://'!r}" if scheme else "a plain path"
        return f"{what} is not supported here; use {', '.join(shown)}"
    return rule(uri)
