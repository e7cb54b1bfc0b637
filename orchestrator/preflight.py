"""Preflight: before `run` or `submit` starts anything, check that what the job points at is there and answers.

Each check belongs to one spec field: the data set exists and its manifest reads (and fits the family and metric),
`storage.uri` is writable (on S3 a probe object is written and removed; a local folder is not created), the MLflow
tracking server answers and the model name is usable there. Each remote call has a short timeout and a single
attempt, and says on stderr what it waits for when it takes more than a second. Every failure is one line naming
the field and the endpoint; nothing is left behind. `--no-preflight` skips it all.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TextIO

from orchestrator.errors import PreflightError
from orchestrator.spec.checks import kind_issues
from orchestrator.spec.load import LoadedJob
from orchestrator.storage import storage_root
from orchestrator.tracking import Redactor, resolve_tracking_uri, safe_uri
from trainers.catalog import BUILTIN_KINDS

HTTP_TIMEOUT_S = 3.0  # MLflow: connect and read, one attempt (MLflow's own client retries for minutes)
S3_ATTEMPTS = "1"  # S3 reads: one attempt, trainers.data.fs's 5 s connect timeout (probe writes: HTTP_TIMEOUT_S)
SLOW_AFTER_S = 1.0  # a check that takes longer says what it is waiting for


class Failed(Exception):
    """A check's one-line finding (without the field, which the check's entry supplies)."""


@dataclass
class Context:
    """What a check is given besides the job: where it runs, and how to announce a slow remote call."""

    field: str
    on_cluster: bool  # submit: local paths are the cluster's, not checked here
    err: TextIO
    redact: Redactor

    @contextlib.contextmanager
    def waiting_for(self, what: str) -> Iterator[None]:
        """Around one remote call: if it takes over SLOW_AFTER_S, say on stderr what it waits for (once)."""
        line = self.redact.text(f"ganforge: preflight: waiting for {what} ({self.field}) ...")
        timer = threading.Timer(SLOW_AFTER_S, lambda: print(line, file=self.err, flush=True))
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()


# Each check is about one spec field; it returns when all is well and raises Failed otherwise.
CHECKS: dict[str, Callable[[LoadedJob, Context], None]] = {}


def check(field: str) -> Callable:
    def decorator(fn: Callable[[LoadedJob, Context], None]) -> Callable:
        CHECKS[field] = fn
        return fn

    return decorator


@contextlib.contextmanager
def _one_s3_attempt() -> Iterator[None]:
    """trainers.data.fs reads GANFORGE_S3_MAX_ATTEMPTS per filesystem it builds (and caches by it)."""
    previous = os.environ.get("GANFORGE_S3_MAX_ATTEMPTS")
    os.environ["GANFORGE_S3_MAX_ATTEMPTS"] = S3_ATTEMPTS
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("GANFORGE_S3_MAX_ATTEMPTS", None)
        else:
            os.environ["GANFORGE_S3_MAX_ATTEMPTS"] = previous


def _is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


# ------------------------------------------------------------------------------------------------ data.uri
@check("data.uri")
def data_set(job: LoadedJob, ctx: Context) -> None:
    uri = job.spec.data.uri
    if uri in BUILTIN_KINDS or (ctx.on_cluster and _is_local(uri)):
        return  # built-ins are made on first use; a local path is the cluster's to resolve
    from trainers.data.errors import DataError
    from trainers.data.fs import resolve
    from trainers.data.manifest import read_manifest

    try:
        with _one_s3_attempt(), ctx.waiting_for(f"the data set's manifest at {uri}"):
            manifest = read_manifest(resolve(uri))
    except DataError as exc:
        raise Failed(str(exc)) from None
    issues = list(kind_issues(job.spec, manifest.kind))
    if issues:
        raise Failed(issues[0].message)


# ------------------------------------------------------------------------------------------------ metrics.weights
@check("metrics.weights")
def feature_weights(job: LoadedJob, ctx: Context) -> None:
    """A feature space with pretrained weights finds its file here (or downloads it once into the cache)."""
    from trainers.metrics.declared import FEATURE_SPACES

    metrics = job.spec.metrics
    if ctx.on_cluster or not FEATURE_SPACES.get(metrics.features).weights_file:
        return  # the cluster's workers resolve their own paths
    from trainers.data.builtins import cache_root
    from trainers.metrics.weights import InceptionWeightsMissing, find_weights

    try:
        with ctx.waiting_for("the Inception weights"):
            find_weights(metrics.weights, cache_root())
    except InceptionWeightsMissing as exc:
        raise Failed(str(exc)) from None


# ------------------------------------------------------------------------------------------------ storage.uri
@check("storage.uri")
def storage_writable(job: LoadedJob, ctx: Context) -> None:
    root = storage_root(job.spec)
    if not _is_local(root):
        with ctx.waiting_for(f"a probe write to {root}"):
            _probe_object(root)
    elif not ctx.on_cluster:
        _local_writable(Path(root.removeprefix("file://")))


def _local_writable(path: Path) -> None:
    """The folder, or the nearest existing parent it would be created in, is writable; nothing is created."""
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise Failed(f"{existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise Failed(f"{existing} is not writable")


def _probe_object(root: str) -> None:
    """Write one small object under the S3 prefix and delete it (boto3: exactly that key, no folder markers).

    Other object stores (gs://) are left to the run itself."""
    if not root.startswith("s3://"):
        return
    import boto3
    import botocore.config
    import botocore.exceptions

    from trainers.data.errors import DataError
    from trainers.data.fs import DEFAULT_REGION, s3_settings

    bucket, _, prefix = root[len("s3://"):].partition("/")
    key = f"{prefix.strip('/')}/.ganforge-preflight-{uuid.uuid4().hex}".lstrip("/")
    try:
        endpoint, region = s3_settings()
        config = botocore.config.Config(connect_timeout=HTTP_TIMEOUT_S, read_timeout=HTTP_TIMEOUT_S,
                                        retries={"total_max_attempts": 1})
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region or DEFAULT_REGION, config=config)
        s3.put_object(Bucket=bucket, Key=key, Body=b"ganforge preflight probe; safe to delete\n")
        s3.delete_object(Bucket=bucket, Key=key)
    except (DataError, botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise Failed(f"{root} is not writable: {str(exc).splitlines()[0]}") from None


# ------------------------------------------------------------------------------------------------ registry
@check("registry.tracking_uri")
def tracking_server(job: LoadedJob, ctx: Context) -> None:
    uri = resolve_tracking_uri(job.spec.registry.tracking_uri)
    if uri.startswith(("http://", "https://")):
        with ctx.waiting_for(f"MLflow at {safe_uri(uri)}"):
            _http_get(uri, "/health")
            if job.spec.registry.enabled:
                _model_name_usable(uri, job.spec.model_name)
    elif uri.startswith("sqlite:///") and not ctx.on_cluster:
        _local_writable(Path(uri[len("sqlite:///"):]).parent)  # the database file is created on first use


def _auth_headers(url_user: str | None, url_password: str | None) -> dict[str, str]:
    """MLflow's standard credentials, as its own client sends them: user:password in the URI, else the environment."""
    if url_user:
        return _basic(urllib.parse.unquote(url_user), urllib.parse.unquote(url_password or ""))
    if token := os.environ.get("MLFLOW_TRACKING_TOKEN"):
        return {"Authorization": f"Bearer {token}"}
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    return _basic(user, password) if user and password else {}


def _basic(user: str, password: str) -> dict[str, str]:
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _http_get(base: str, path: str) -> tuple[int, bytes]:
    """One GET with HTTP_TIMEOUT_S and no retries; HTTP error statuses are returned, not raised."""
    parts = urllib.parse.urlsplit(base.rstrip("/") + path)
    # urllib would take user:password@ for part of the host name: it travels as a header instead.
    netloc = parts.netloc.rpartition("@")[2]
    url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    request = urllib.request.Request(url, headers=_auth_headers(parts.username, parts.password))
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Failed(f"MLflow at {safe_uri(base)} does not answer ({reason}; waited at most {HTTP_TIMEOUT_S:g} s)") \
            from None


def _model_name_usable(base: str, name: str) -> None:
    query = urllib.parse.urlencode({"name": name})
    status, body = _http_get(base, f"/api/2.0/mlflow/registered-models/get?{query}")
    if status == 200 or (status == 404 and b"RESOURCE_DOES_NOT_EXIST" in body):
        return
    if status in (401, 403):
        raise Failed(f"MLflow at {safe_uri(base)} refused the credentials (HTTP {status}); "
                     "set MLFLOW_TRACKING_USERNAME/PASSWORD or MLFLOW_TRACKING_TOKEN")
    try:
        detail = json.loads(body).get("message", "")
    except ValueError:
        detail = body[:200].decode(errors="replace")
    raise Failed(f"MLflow at {safe_uri(base)} cannot use model name {name!r} (HTTP {status}: {detail})")


# ------------------------------------------------------------------------------------------------ run them
def preflight(job: LoadedJob, *, on_cluster: bool = False, err: TextIO | None = None) -> None:
    """Run every check; raise PreflightError listing each failure on its own line (`field: endpoint problem`).

    `on_cluster`: the job will run on a Ray cluster (submit), so local paths are the cluster's, not checked here."""
    redact = Redactor.from_environment(job.text)
    failures = []
    for field, run in CHECKS.items():
        try:
            run(job, Context(field, on_cluster, err or sys.stderr, redact))
        except Failed as exc:
            failures.append(redact.text(f"{field}: {exc} (--no-preflight skips this check)"))
    if failures:
        raise PreflightError("\n".join(failures))
