"""Registered models and their versions as the other registry rooms find them: model references (NAME@ALIAS,
NAME/VERSION), version lookups with did-you-mean errors, the alias holder, the version tags ganforge writes, and a
version's artifacts (listed and checked before anything is downloaded)."""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from orchestrator.errors import ModelNotFoundError, RegistryError, RegistryUsageError
from orchestrator.tracking.client import call, safe_uri

GENERATOR_ARTIFACT = "generator"  # must match orchestrator/tracking/pyfunc_model.py
GRID_FILE = "grid.png"
JOB_FILE = "job.yaml"
LINEAGE_FILE = "lineage.json"

# Model-version tags (plain names: they are what people read in the MLflow UI and in `models describe`).
TAG_JOB, TAG_TRIAL, TAG_RUN = "job", "trial_id", "run_id"
TAG_METRIC, TAG_VALUE, TAG_MODE = "metric", "metric_value", "metric_mode"
TAG_CHALLENGER, TAG_PARAM_PREFIX = "challenger", "hp."

_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_ALIAS_OK = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str | None = None
    alias: str | None = None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}@{self.alias}" if self.alias else f"models:/{self.name}/{self.version}"

    def __str__(self) -> str:
        return f"{self.name}@{self.alias}" if self.alias else f"{self.name}/{self.version}"


def parse_model_uri(text: str) -> ModelRef:
    """"NAME@ALIAS", "NAME/VERSION", "models:/NAME@ALIAS" or "models:/NAME/VERSION" (VERSION may be "latest")."""
    raw = text.strip()
    body = raw[len("models:/"):] if raw.startswith("models:/") else raw
    usage = f"model URI {text!r} is not NAME@ALIAS, NAME/VERSION or models:/NAME@ALIAS"
    if "@" in body:
        name, alias = body.rsplit("@", 1)
        if not _NAME_OK.match(name) or not _ALIAS_OK.match(alias):
            raise ModelNotFoundError(usage)
        return ModelRef(name=name, alias=alias)
    if "/" in body:
        name, version = body.rsplit("/", 1)
        if version.lower().startswith("v") and version[1:].isdigit():
            version = version[1:]
        if not _NAME_OK.match(name) or not (version.isdigit() or version == "latest"):
            raise ModelNotFoundError(usage)
        return ModelRef(name=name, version=version)
    raise ModelNotFoundError(usage)


def check_name(name: str, what: str = "model name") -> str:
    if not _NAME_OK.match(name or ""):
        raise RegistryUsageError(f"{what} {name!r} must start with a letter or digit and hold only letters, digits, '.', '_' or '-'")
    return name


def check_alias(alias: str) -> str:
    if not _ALIAS_OK.match(alias or "") or re.fullmatch(r"[vV]\d+", alias):
        raise RegistryUsageError(f"alias {alias!r} must be letters, digits, '_' or '-' and not of the reserved form v<number>")
    return alias


def not_found(exc: BaseException) -> bool:
    code = getattr(exc, "error_code", "")
    return code == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(exc).lower() or "does not exist" in str(exc).lower()


def registered_names(client) -> list[str]:
    return sorted(m.name for m in all_pages(lambda token: client.search_registered_models(max_results=200, page_token=token)))


def all_pages(fetch) -> list:
    items, token = [], None
    while True:
        page = fetch(token)
        items += list(page)
        token = getattr(page, "token", None)
        if not token:
            return items


def resolve_version(client, ref: ModelRef, tracking_uri: str):
    """The ModelVersion a reference names, or ModelNotFoundError naming what is missing."""
    from mlflow.exceptions import MlflowException

    def lookup():
        try:
            model = client.get_registered_model(ref.name)
        except MlflowException as exc:
            if not not_found(exc):
                raise
            known = registered_names(client)
            close = difflib.get_close_matches(ref.name, known, n=1)
            listed = ", ".join(known[:10]) + (", ..." if len(known) > 10 else "")
            hint = f"; did you mean {close[0]!r}?" if close else (f" (registered: {listed})" if known else " (none registered yet)")
            raise ModelNotFoundError(f"no model named {ref.name!r} at {safe_uri(tracking_uri)}{hint}") from None
        if ref.alias:
            aliases = dict(getattr(model, "aliases", {}) or {})
            if ref.alias not in aliases:
                have = ", ".join(sorted(aliases)) or "none"
                raise ModelNotFoundError(f"model {ref.name!r} has no alias {ref.alias!r} (aliases: {have})")
            return client.get_model_version(ref.name, str(aliases[ref.alias]))
        if ref.version == "latest":
            versions = versions_of(client, ref.name)
            if not versions:
                raise ModelNotFoundError(f"model {ref.name!r} has no versions")
            return versions[-1]
        try:
            return client.get_model_version(ref.name, ref.version)
        except MlflowException as exc:
            if not not_found(exc):
                raise
            raise ModelNotFoundError(f"model {ref.name!r} has no version {ref.version}") from None

    return call(tracking_uri, f"looking up {ref}", lookup)


def versions_of(client, name: str) -> list:
    found = all_pages(lambda token: client.search_model_versions(f"name = '{name}'", max_results=200, page_token=token))
    return sorted(found, key=lambda mv: int(mv.version))


def alias_holder(client, name: str, alias: str):
    """The version `alias` points at, or None when it points at none."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if not_found(exc):
            return None
        raise


def logged_model_id(mv) -> str | None:
    """The logged model behind a version (the REST API leaves `model_id` empty; the source still names it)."""
    if getattr(mv, "model_id", None):
        return mv.model_id
    source = mv.source or ""
    if source.startswith("models:/m-") and "/" not in source[len("models:/"):]:
        return source[len("models:/"):]
    return None


def version_artifact_repo(client, tracking_uri: str, mv):
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    model_id = logged_model_id(mv)
    if model_id:
        location = call(tracking_uri, f"locating {mv.name}/{mv.version}", lambda: client.get_logged_model(model_id).artifact_location)
    else:
        location = call(tracking_uri, f"locating {mv.name}/{mv.version}", lambda: client.get_model_version_download_uri(mv.name, mv.version))
    return get_artifact_repository(location, tracking_uri=tracking_uri)


def list_files(repo, path: str = "") -> list[str]:
    files = []
    for info in repo.list_artifacts(path or None):
        if info.is_dir:
            files += list_files(repo, info.path)
        else:
            files.append(info.path)
    return files


def check_artifact_paths(paths: list[str], what: str) -> None:
    for rel in paths:
        parts = PurePosixPath(rel).parts
        if rel.startswith("/") or "\\" in rel or ".." in parts or any(":" in p for p in parts):
            raise RegistryError(f"{what}: refusing artifact path {rel!r} (absolute or escaping the model folder)")


def read_version_file(client, tracking_uri: str, mv, rel: str, dst_dir: Path) -> Path | None:
    """Download one artifact of a version (e.g. artifacts/lineage.json); None when the version has none."""
    what = f"{mv.name}/{mv.version}"
    check_artifact_paths([rel], what)
    repo = version_artifact_repo(client, tracking_uri, mv)
    parent = str(PurePosixPath(rel).parent)
    listing = call(tracking_uri, f"listing {what}", lambda: [f.path for f in repo.list_artifacts(None if parent == "." else parent)])
    if rel not in listing:
        return None
    local = call(tracking_uri, f"downloading {rel} of {what}", lambda: repo.download_artifacts(rel, dst_path=str(dst_dir)))
    return Path(local)
