"""The MLflow model registry: register a search's best generator with its lineage, promote it, pull it back safely.

A model version holds an MLflow models-from-code pyfunc (`orchestrator/pyfunc_model.py`, no cloudpickle) whose
artifacts are the generator (safetensors + JSON), the sample grid, the secret-stripped job YAML and a lineage
JSON. The alias (default `champion`) moves only when a candidate beats its holder on the job's metric by a margin;
otherwise the version is kept and tagged `challenger`. Pulling lists and checks every artifact path before
downloading, and loading reads tensors only.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from orchestrator.errors import ModelNotFoundError, RegistryError, RegistryUsageError
from orchestrator.tracking import (
    DRIVER_HTTP_POLICY,
    Redactor,
    client_for,
    ensure_experiment,
    ganforge_version,
    git_commit,
    http_policy,
    mlflow_key,
    param_value,
    quiet_mlflow_logs,
    registry_error,
    resolve_tracking_uri,
    safe_uri,
    with_retries,
)

log = logging.getLogger(__name__)

PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")
GENERATOR_ARTIFACT = "generator"  # must match orchestrator/pyfunc_model.py
GRID_FILE = "grid.png"
JOB_FILE = "job.yaml"
LINEAGE_FILE = "lineage.json"
REGISTRY_EXPERIMENT = "ganforge-registry"  # holds logged models registered without a trial run

# Model-version tags (plain names: they are what people read in the MLflow UI and in `models describe`).
TAG_JOB, TAG_TRIAL, TAG_RUN = "job", "trial_id", "run_id"
TAG_METRIC, TAG_VALUE, TAG_MODE = "metric", "metric_value", "metric_mode"
TAG_CHALLENGER, TAG_PARAM_PREFIX = "challenger", "hp."

_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_ALIAS_OK = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


@dataclass
class Candidate:
    trial_id: str
    run_id: str | None
    metric: str
    value: float
    mode: str  # "min" | "max"
    params: dict
    checkpoint_dir: Path  # local dir holding generator.safetensors, generator.json, grid.png


@dataclass
class RegisteredVersion:
    name: str
    version: str
    promoted: bool
    alias: str
    previous: float | None  # the alias holder's metric before this registration (None: there was no holder)


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


# --------------------------------------------------------------------------------------------------------------------
# References


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


def _check_name(name: str, what: str = "model name") -> str:
    if not _NAME_OK.match(name or ""):
        raise RegistryUsageError(f"{what} {name!r} must start with a letter or digit and hold only letters, digits, '.', '_' or '-'")
    return name


def _check_alias(alias: str) -> str:
    if not _ALIAS_OK.match(alias or "") or re.fullmatch(r"[vV]\d+", alias):
        raise RegistryUsageError(f"alias {alias!r} must be letters, digits, '_' or '-' and not of the reserved form v<number>")
    return alias


def _not_found(exc: BaseException) -> bool:
    code = getattr(exc, "error_code", "")
    return code == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(exc).lower() or "does not exist" in str(exc).lower()


def _call(tracking_uri: str, what: str, fn, retry_s: float = 30.0):
    """Run one registry request with retries; turn failures into one-line RegistryErrors."""
    try:
        return with_retries(fn, what=what, deadline_s=retry_s)
    except (RegistryError, ModelNotFoundError):
        raise
    except Exception as exc:
        raise registry_error(what, tracking_uri, exc) from exc


def _registered_names(client) -> list[str]:
    return sorted(m.name for m in _all_pages(lambda token: client.search_registered_models(max_results=200, page_token=token)))


def _all_pages(fetch) -> list:
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
            if not _not_found(exc):
                raise
            known = _registered_names(client)
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
            versions = _versions(client, ref.name)
            if not versions:
                raise ModelNotFoundError(f"model {ref.name!r} has no versions")
            return versions[-1]
        try:
            return client.get_model_version(ref.name, ref.version)
        except MlflowException as exc:
            if not _not_found(exc):
                raise
            raise ModelNotFoundError(f"model {ref.name!r} has no version {ref.version}") from None

    return _call(tracking_uri, f"looking up {ref}", lookup)


def _versions(client, name: str) -> list:
    found = _all_pages(lambda token: client.search_model_versions(f"name = '{name}'", max_results=200, page_token=token))
    return sorted(found, key=lambda mv: int(mv.version))


# --------------------------------------------------------------------------------------------------------------------
# Register


def register_champion(
    tracking_uri: str,
    model_name: str,
    alias: str,
    candidate: Candidate,
    job_yaml_text: str,
    lineage: dict,
    margin: float = 0.0,
    *,
    retry_s: float = 30.0,
) -> RegisteredVersion:
    """Register `candidate`'s generator as a new version of `model_name`; move `alias` to it only if it wins.

    Wins means beating the alias holder's recorded metric by more than `margin` in the candidate's mode (the
    holder must have been scored on the same metric). Otherwise the version is kept and tagged `challenger`.
    Transient failures are retried for `retry_s` per request; what still fails raises a one-line RegistryError.
    """
    with quiet_mlflow_logs():
        return _register(tracking_uri, model_name, alias, candidate, job_yaml_text, lineage, margin, retry_s)


def _register(tracking_uri, model_name, alias, candidate, job_yaml_text, lineage, margin, retry_s) -> RegisteredVersion:
    from trainers.export import GENERATOR_CONFIG, GENERATOR_WEIGHTS, read_generator_config

    _check_name(model_name)
    _check_alias(alias)
    if candidate.mode not in ("min", "max"):
        raise RegistryUsageError(f"metric mode must be 'min' or 'max', got {candidate.mode!r}")
    checkpoint = Path(candidate.checkpoint_dir)
    try:
        record = read_generator_config(checkpoint)
    except ValueError as exc:
        raise RegistryError(f"cannot register trial {candidate.trial_id}: {exc}") from None
    if not (checkpoint / GENERATOR_WEIGHTS).is_file():
        raise RegistryError(f"cannot register trial {candidate.trial_id}: {checkpoint / GENERATOR_WEIGHTS} not found")

    redactor = Redactor.from_environment(job_yaml_text)
    client = client_for(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="ganforge-register-") as tmp:
        staging = Path(tmp)
        gen_dir = staging / GENERATOR_ARTIFACT
        gen_dir.mkdir()
        for name in (GENERATOR_WEIGHTS, GENERATOR_CONFIG):
            shutil.copy2(checkpoint / name, gen_dir / name)
        grid = staging / GRID_FILE
        if (checkpoint / GRID_FILE).is_file():
            shutil.copy2(checkpoint / GRID_FILE, grid)
        else:
            _render_grid(gen_dir, grid)
        (staging / JOB_FILE).write_text(redactor.text(job_yaml_text))
        full_lineage = _lineage(model_name, candidate, record, lineage, margin)
        (staging / LINEAGE_FILE).write_text(json.dumps(redactor.value(full_lineage), indent=2, default=str))

        tags = redactor.value(_version_tags(candidate, full_lineage, record["data"].get("checksum")))
        version = _upload_and_register(client, tracking_uri, model_name, candidate, staging, record, tags, retry_s)

    previous, promoted, reason = _decide_promotion(client, tracking_uri, model_name, alias, candidate, margin, retry_s)
    if promoted:
        _call(tracking_uri, f"moving {model_name}@{alias}", lambda: client.set_registered_model_alias(model_name, alias, version), retry_s)
    else:
        _call(tracking_uri, "tagging the challenger", lambda: client.set_model_version_tag(model_name, version, TAG_CHALLENGER, reason), retry_s)
    log.info("registered %s/%s (%s)", model_name, version, f"now @{alias}" if promoted else f"challenger: {reason}")
    return RegisteredVersion(name=model_name, version=version, promoted=promoted, alias=alias, previous=previous)


def _lineage(model_name: str, candidate: Candidate, record: dict, lineage: dict, margin: float) -> dict:
    data = record.get("data", {})
    base = {
        "model": model_name,
        "trial_id": candidate.trial_id,
        "run_id": candidate.run_id,
        "score": {"metric": candidate.metric, "value": candidate.value, "mode": candidate.mode, "promotion_margin": margin},
        "hyperparameters": candidate.params,
        "data": {k: data.get(k) for k in ("name", "kind", "shape", "num_rows", "num_classes", "checksum")},
        "architecture": record.get("arch"),
        "model_kind": model_kind(record),
        "ganforge_version": ganforge_version(),
        "git_commit": lineage.get("git_commit") or git_commit(),
        "registered_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    # The caller's lineage (job, top-k table, PBT policy, floor...) adds to ours; a None never erases a known value.
    return {**base, **{k: v for k, v in lineage.items() if v is not None or k not in base}}


def model_kind(record: dict) -> str:
    """What a registered model does, from its generator.json: how `models describe` says which command applies it."""
    meta = record.get("meta") or {}
    if meta.get("task") == "translation":
        return f"translator ({meta.get('family', '?')}: {', '.join(meta.get('directions') or [])}; ganforge translate)"
    return "generator (samples from noise; ganforge sample)"


def _version_tags(candidate: Candidate, lineage: dict, data_checksum: str | None) -> dict[str, str]:
    tags = {
        TAG_TRIAL: str(candidate.trial_id),
        TAG_METRIC: candidate.metric,
        TAG_VALUE: repr(float(candidate.value)),
        TAG_MODE: candidate.mode,
        "data_checksum": str(data_checksum or ""),
        "ganforge_version": ganforge_version(),
    }
    if candidate.run_id:
        tags[TAG_RUN] = candidate.run_id
    if job := lineage.get("job") or lineage.get("job_name"):
        tags[TAG_JOB] = str(job)
    if commit := lineage.get("git_commit"):
        tags["git_commit"] = str(commit)
    for key, value in candidate.params.items():
        tags[mlflow_key(f"{TAG_PARAM_PREFIX}{key}")] = param_value(value, limit=5000)  # MLflow's limit on a version tag
    return {k: v for k, v in tags.items() if v != ""}


def _save_pyfunc(model_dir: Path, staging: Path, record: dict, logged, run_id: str | None) -> None:
    import mlflow.pyfunc
    from mlflow.models import Model

    signature, example = _signature(record)
    with http_policy(DRIVER_HTTP_POLICY):
        mlflow.pyfunc.save_model(
            path=str(model_dir),
            python_model=str(PYFUNC_FILE),
            artifacts={
                GENERATOR_ARTIFACT: str(staging / GENERATOR_ARTIFACT),
                "grid": str(staging / GRID_FILE),
                "job_yaml": str(staging / JOB_FILE),
                "lineage": str(staging / LINEAGE_FILE),
            },
            signature=signature,
            input_example=example,
            pip_requirements=_requirements(),
            metadata={"ganforge_format": record["format"], "data_kind": record["data"]["kind"]},
            mlflow_model=Model(artifact_path=logged.artifact_location, model_uuid=logged.model_id, run_id=run_id, model_id=logged.model_id),
        )
    for pycache in model_dir.rglob("__pycache__"):
        shutil.rmtree(pycache, ignore_errors=True)


def _signature(record: dict):
    import numpy as np
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

    data = record["data"]
    shape = tuple(data["shape"])
    if (record.get("meta") or {}).get("task") == "translation":  # images in, images out (pyfunc_model.py)
        height, width, channels = shape[0], shape[1] // 2, shape[2]  # one domain of the A|B rows
        inputs = Schema([TensorSpec(np.dtype(np.uint8), (-1, height, width, channels))])
        outputs = Schema([TensorSpec(np.dtype(np.float32), (-1, channels, height, width))])
        params = ParamSchema([ParamSpec("direction", "string", "AtoB")])
        return (ModelSignature(inputs=inputs, outputs=outputs, params=params),
                np.zeros((2, height, width, channels), dtype=np.uint8))
    out_shape = (-1, shape[2], shape[0], shape[1]) if data["kind"] == "image" else (-1, *shape)
    inputs = Schema([
        ColSpec("long", "seed", required=False),
        ColSpec(Array("double"), "latent", required=False),
        ColSpec("long", "class_label", required=False),
    ])
    outputs = Schema([TensorSpec(np.dtype(np.float32), out_shape)])
    params = ParamSchema([ParamSpec("truncation", "double", 0.0)])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params), pd.DataFrame({"seed": [0, 1]})


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for dist in ("ganforge", "torch", "safetensors", "mlflow", "numpy", "pandas"):
        try:
            reqs.append(f"{dist}=={version(dist).split('+')[0]}")
        except PackageNotFoundError:
            reqs.append(dist)
    return reqs


def _upload_and_register(client, tracking_uri, model_name, candidate, staging: Path, record: dict, tags: dict, retry_s: float) -> str:
    from mlflow.exceptions import MlflowException

    def experiment_id() -> str:
        if candidate.run_id:
            return client.get_run(candidate.run_id).info.experiment_id
        return ensure_experiment(client, REGISTRY_EXPERIMENT, tracking_uri)

    exp_id = _call(tracking_uri, "finding the trial's MLflow run", experiment_id, retry_s)
    logged = _call(
        tracking_uri,
        "creating the logged model",
        lambda: client.create_logged_model(exp_id, name=GENERATOR_ARTIFACT, source_run_id=candidate.run_id, tags=tags),
        retry_s,
    )
    model_dir = staging / "model"
    _save_pyfunc(model_dir, staging, record, logged, candidate.run_id)
    _call(tracking_uri, "uploading the model", lambda: client.log_model_artifacts(logged.model_id, str(model_dir)), retry_s)
    _call(tracking_uri, "finalising the logged model", lambda: client.finalize_logged_model(logged.model_id, "READY"), retry_s)

    def ensure_registered_model() -> None:
        try:
            client.create_registered_model(model_name, description="GAN generator registered by ganforge")
        except MlflowException as exc:
            if "already exists" not in str(exc).lower():
                raise

    _call(tracking_uri, f"creating registered model {model_name!r}", ensure_registered_model, retry_s)
    description = f"trial {candidate.trial_id}: {candidate.metric}={candidate.value:.6g} ({candidate.mode})"
    version = _call(
        tracking_uri,
        f"registering a version of {model_name!r}",
        lambda: client.create_model_version(
            # The storage location, not models:/<id>: MLflow's SQLite registry resolves that through the
            # process-global tracking URI, which need not be ours.
            model_name, source=logged.artifact_location, run_id=candidate.run_id, tags=tags,
            description=description, model_id=logged.model_id,
        ),
        retry_s,
    )
    return str(version.version)


def _decide_promotion(client, tracking_uri, model_name, alias, candidate: Candidate, margin: float, retry_s: float):
    """(previous value, promote?, reason if not)."""
    from mlflow.exceptions import MlflowException

    def holder():
        try:
            return client.get_model_version_by_alias(model_name, alias)
        except MlflowException as exc:
            if _not_found(exc):
                return None
            raise

    current = _call(tracking_uri, f"reading {model_name}@{alias}", holder, retry_s)
    if current is None:
        return None, True, ""
    tags = current.tags or {}
    if tags.get(TAG_METRIC) != candidate.metric or TAG_VALUE not in tags:
        return None, False, f"holder v{current.version} was not scored on {candidate.metric}"
    previous = float(tags[TAG_VALUE])
    if beats(candidate.value, previous, candidate.mode, margin):
        return previous, True, ""
    return previous, False, f"{candidate.metric}={candidate.value:.6g} does not beat v{current.version} ({previous:.6g}) by {margin:g}"


def beats(value: float, previous: float, mode: str, margin: float = 0.0) -> bool:
    """Whether `value` beats `previous` by more than `margin` in `mode` (NaN never wins; anything beats NaN)."""
    if math.isnan(value):
        return False
    if math.isnan(previous):
        return True
    return value < previous - margin if mode == "min" else value > previous + margin


def _render_grid(generator_dir: Path, out: Path) -> None:
    """A grid for checkpoints saved without one (e.g. `ganforge register` of an old result)."""
    from trainers.export import generate, load_generator_dir
    from trainers.metrics.grid import save_grid

    generator = load_generator_dir(generator_dir)
    save_grid(generate(generator, 64, seed=0), generator.data_info.kind, out)


# --------------------------------------------------------------------------------------------------------------------
# Pull and load


def pull_model(uri: str, out_dir, tracking_uri: str | None = None) -> Path:
    """Download a registered version into `out_dir` and return it.

    `out_dir` holds generator.safetensors, generator.json, grid.png, job.yaml and lineage.json at its top, and is
    also the complete MLflow model (MLmodel, pyfunc code, artifacts/). It must be absent, empty, or a previous
    pull (which is replaced).
    """
    tracking_uri = tracking_uri or resolve_tracking_uri(None)
    ref = parse_model_uri(uri)
    client = client_for(tracking_uri)
    mv = resolve_version(client, ref, tracking_uri)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not (out / "MLmodel").is_file():
        raise RegistryUsageError(f"{out} exists and is not a pulled model; choose another --out or empty it")
    _download_version(client, tracking_uri, mv, out)
    return out


def load_generator(uri: str, device: str = "cpu", tracking_uri: str | None = None):
    """An eval-mode generator `nn.Module` from a registry URI (or a pulled directory). Downloads are cached.

    The cache holds one folder per model version under $GANFORGE_CACHE/models (default ~/.cache/ganforge/models);
    an alias is resolved on every call, so a moved alias is followed, and a version is downloaded once.
    """
    from trainers.export import load_generator_dir

    local = Path(uri)
    if "://" not in uri and local.is_dir():
        return _load_local(local, device)
    tracking_uri = tracking_uri or resolve_tracking_uri(None)
    ref = parse_model_uri(uri)
    client = client_for(tracking_uri)
    mv = resolve_version(client, ref, tracking_uri)
    key = hashlib.sha256(f"{tracking_uri}\n{mv.name}\n{mv.version}\n{mv.source}".encode()).hexdigest()[:16]
    cached = cache_root() / _fs_name(mv.name) / f"v{mv.version}-{key}"
    if not (cached / "artifacts" / GENERATOR_ARTIFACT / "generator.json").is_file():
        _download_version(client, tracking_uri, mv, cached, keep_existing=True)
    try:
        return load_generator_dir(generator_dir(cached), device=device)
    except ValueError as exc:
        raise RegistryError(f"{ref}: {exc}") from None


def _load_local(path: Path, device: str):
    from trainers.export import load_generator_dir

    try:
        return load_generator_dir(generator_dir(path), device=device)
    except ValueError as exc:
        raise RegistryError(str(exc)) from None


def cache_root() -> Path:
    """Pulled model versions, beside the data set cache: $GANFORGE_CACHE/models (default ~/.cache/ganforge/models)."""
    return Path(os.environ.get("GANFORGE_CACHE") or Path.home() / ".cache" / "ganforge").expanduser() / "models"


def generator_dir(model_dir) -> Path:
    """Where the generator files of a pulled model (or a plain generator directory) are."""
    path = Path(model_dir)
    for candidate in (path, path / "artifacts" / GENERATOR_ARTIFACT):
        if (candidate / "generator.json").is_file():
            return candidate
    raise RegistryError(f"{path}: no generator found (expected artifacts/{GENERATOR_ARTIFACT}/generator.json)")


def _fs_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


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
        location = _call(tracking_uri, f"locating {mv.name}/{mv.version}", lambda: client.get_logged_model(model_id).artifact_location)
    else:
        location = _call(tracking_uri, f"locating {mv.name}/{mv.version}", lambda: client.get_model_version_download_uri(mv.name, mv.version))
    return get_artifact_repository(location, tracking_uri=tracking_uri)


def _list_files(repo, path: str = "") -> list[str]:
    files = []
    for info in repo.list_artifacts(path or None):
        if info.is_dir:
            files += _list_files(repo, info.path)
        else:
            files.append(info.path)
    return files


def _check_artifact_paths(paths: list[str], what: str) -> None:
    for rel in paths:
        parts = PurePosixPath(rel).parts
        if rel.startswith("/") or "\\" in rel or ".." in parts or any(":" in p for p in parts):
            raise RegistryError(f"{what}: refusing artifact path {rel!r} (absolute or escaping the model folder)")


def _download_version(client, tracking_uri: str, mv, out: Path, keep_existing: bool = False) -> None:
    """Download every artifact of `mv` into `out`, atomically: a staging folder beside it is renamed at the end.

    With `keep_existing` (the cache), a copy that another process finished first wins and ours is discarded.
    """
    what = f"{mv.name}/{mv.version}"
    repo = version_artifact_repo(client, tracking_uri, mv)
    files = _call(tracking_uri, f"listing {what}", lambda: _list_files(repo))
    _check_artifact_paths(files, what)
    if f"artifacts/{GENERATOR_ARTIFACT}/generator.json" not in files:
        raise RegistryError(f"{what} is not a ganforge generator (no artifacts/{GENERATOR_ARTIFACT}/generator.json)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.pull-", dir=out.parent))
    try:
        for rel in files:
            _call(tracking_uri, f"downloading {what}", lambda rel=rel: repo.download_artifacts(rel, dst_path=str(staging)))
        for path in staging.rglob("*"):
            if path.is_symlink():
                raise RegistryError(f"{what}: refusing symbolic link {path.relative_to(staging)}")
        _expose_at_top(staging)
        if keep_existing:
            try:
                os.rename(staging, out)
            except OSError:
                if not (out / "MLmodel").is_file():
                    raise
                shutil.rmtree(staging, ignore_errors=True)
        else:
            _replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _expose_at_top(model_dir: Path) -> None:
    """Hard-link the generator, grid, job YAML and lineage to the top of a pulled model.

    `load_generator_dir(out)` and people then find them at `out/generator.safetensors` etc., while `out` stays a
    complete MLflow model (`mlflow.pyfunc.load_model(out)`); links cost no space (copies where links fail).
    """
    artifacts = model_dir / "artifacts"
    sources = [*sorted((artifacts / GENERATOR_ARTIFACT).iterdir()), *(artifacts / n for n in (GRID_FILE, JOB_FILE, LINEAGE_FILE))]
    for source in sources:
        target = model_dir / source.name
        if not source.is_file() or target.exists():
            continue
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)


def _replace_dir(new: Path, target: Path) -> None:
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{time.monotonic_ns()}")
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_version_file(client, tracking_uri: str, mv, rel: str, dst_dir: Path) -> Path | None:
    """Download one artifact of a version (e.g. artifacts/lineage.json); None when the version has none."""
    what = f"{mv.name}/{mv.version}"
    _check_artifact_paths([rel], what)
    repo = version_artifact_repo(client, tracking_uri, mv)
    parent = str(PurePosixPath(rel).parent)
    listing = _call(tracking_uri, f"listing {what}", lambda: [f.path for f in repo.list_artifacts(None if parent == "." else parent)])
    if rel not in listing:
        return None
    local = _call(tracking_uri, f"downloading {rel} of {what}", lambda: repo.download_artifacts(rel, dst_path=str(dst_dir)))
    return Path(local)


# --------------------------------------------------------------------------------------------------------------------
# Inspect and manage


def _version_row(mv, aliases_by_version: dict[str, list[str]]) -> dict[str, Any]:
    tags = mv.tags or {}
    value = tags.get(TAG_VALUE)
    return {
        "version": str(mv.version),
        "aliases": sorted(aliases_by_version.get(str(mv.version), [])),
        "metric": tags.get(TAG_METRIC),
        "value": float(value) if value is not None else None,
        "mode": tags.get(TAG_MODE),
        "trial_id": tags.get(TAG_TRIAL),
        "job": tags.get(TAG_JOB),
        "challenger": tags.get(TAG_CHALLENGER),
        "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, timezone.utc).isoformat(timespec="seconds")
        if mv.creation_timestamp else None,
        "hyperparameters": {k[len(TAG_PARAM_PREFIX):]: v for k, v in tags.items() if k.startswith(TAG_PARAM_PREFIX)},
    }


def _aliases_by_version(model) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for alias, version in (getattr(model, "aliases", {}) or {}).items():
        out.setdefault(str(version), []).append(alias)
    return out


def list_models(tracking_uri) -> list[dict]:
    """One entry per registered model: name, version count, latest version, and each alias with its metric."""
    client = client_for(tracking_uri)

    def collect():
        rows = []
        for model in _all_pages(lambda token: client.search_registered_models(max_results=200, page_token=token)):
            versions = _versions(client, model.name)
            by_version = {str(mv.version): mv for mv in versions}
            aliases = {}
            for alias, version in sorted((getattr(model, "aliases", {}) or {}).items()):
                mv = by_version.get(str(version))
                tags = (mv.tags or {}) if mv else {}
                aliases[alias] = {
                    "version": str(version),
                    "metric": tags.get(TAG_METRIC),
                    "value": float(tags[TAG_VALUE]) if TAG_VALUE in tags else None,
                }
            rows.append({
                "name": model.name,
                "versions": len(versions),
                "latest_version": str(versions[-1].version) if versions else None,
                "aliases": aliases,
                "description": model.description or "",
            })
        return sorted(rows, key=lambda r: r["name"])

    return _call(tracking_uri, "listing registered models", collect)


def describe_model(tracking_uri: str, name_or_uri: str) -> dict[str, Any]:
    """A model's versions (metric, aliases, trial, challenger reason) and, for one version, its lineage summary.

    `name_or_uri` is NAME (the version the `champion` alias holds is detailed when there is one, else the latest),
    NAME@ALIAS or NAME/VERSION.
    """
    text = name_or_uri.strip()
    bare = text[len("models:/"):] if text.startswith("models:/") else text
    if "@" not in bare and "/" not in bare:
        _check_name(bare)
        ref = None
        name = bare
    else:
        ref = parse_model_uri(text)
        name = ref.name
    client = client_for(tracking_uri)
    # resolve the model first so an unknown name gets a "did you mean"
    probe = resolve_version(client, ref or ModelRef(name=name, version="latest"), tracking_uri)
    model = _call(tracking_uri, f"reading {name}", lambda: client.get_registered_model(name))
    by_version = _aliases_by_version(model)
    versions = _call(tracking_uri, f"listing versions of {name}", lambda: _versions(client, name))
    if ref is None:
        champion = (getattr(model, "aliases", {}) or {}).get("champion")
        selected = str(champion) if champion is not None else str(probe.version)
    else:
        selected = str(probe.version)
    selected_mv = next(mv for mv in versions if str(mv.version) == selected)
    with tempfile.TemporaryDirectory() as tmp:
        lineage_path = read_version_file(client, tracking_uri, selected_mv, f"artifacts/{LINEAGE_FILE}", Path(tmp))
        lineage = json.loads(lineage_path.read_text()) if lineage_path else {}
    return {
        "name": name,
        "description": model.description or "",
        "aliases": {alias: str(v) for alias, v in sorted((getattr(model, "aliases", {}) or {}).items())},
        "versions": [_version_row(mv, by_version) for mv in versions],
        "selected": selected,
        "lineage": lineage,
    }


def promote(tracking_uri: str, name: str, version: str, alias: str = "champion") -> RegisteredVersion:
    """Point `alias` at `version` by hand (no metric check) and clear its challenger tag."""
    _check_alias(alias)
    client = client_for(tracking_uri)
    mv = resolve_version(client, parse_model_uri(f"{name}/{version}"), tracking_uri)
    from mlflow.exceptions import MlflowException

    def holder_value():
        try:
            current = client.get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            if _not_found(exc):
                return None
            raise
        value = (current.tags or {}).get(TAG_VALUE)
        return float(value) if value is not None else None

    previous = _call(tracking_uri, f"reading {name}@{alias}", holder_value)
    _call(tracking_uri, f"moving {name}@{alias}", lambda: client.set_registered_model_alias(name, alias, str(mv.version)))
    if TAG_CHALLENGER in (mv.tags or {}):
        _call(tracking_uri, "clearing the challenger tag", lambda: client.delete_model_version_tag(name, str(mv.version), TAG_CHALLENGER))
    return RegisteredVersion(name=name, version=str(mv.version), promoted=True, alias=alias, previous=previous)


def compare_versions(tracking_uri: str, name: str, a: str, b: str, out_png) -> dict[str, Any]:
    """Metrics of two versions side by side, and their sample grids in one PNG (left: a, right: b).

    `a` and `b` are version numbers ("3" or "v3") or aliases ("champion" or "@champion").
    """
    client = client_for(tracking_uri)
    rows = []
    grids = []
    with tempfile.TemporaryDirectory() as tmp:
        for which in (a, b):
            mv = resolve_version(client, _version_ref(name, which), tracking_uri)
            model = _call(tracking_uri, f"reading {name}", lambda: client.get_registered_model(name))
            row = _version_row(mv, _aliases_by_version(model))
            slot = Path(tmp) / f"v{mv.version}"
            slot.mkdir(exist_ok=True)
            lineage_path = read_version_file(client, tracking_uri, mv, f"artifacts/{LINEAGE_FILE}", slot)
            lineage = json.loads(lineage_path.read_text()) if lineage_path else {}
            row["real_vs_real"] = next((lineage[k] for k in ("floor", "real_vs_real") if lineage.get(k) is not None), None)
            row["data_checksum"] = (lineage.get("data") or {}).get("checksum")
            rows.append(row)
            grid = read_version_file(client, tracking_uri, mv, f"artifacts/{GRID_FILE}", slot)
            grids.append((f"{name} v{mv.version}", grid))
        _side_by_side(grids, Path(out_png))
    return {"name": name, "a": rows[0], "b": rows[1], "png": str(out_png)}


def _version_ref(name: str, which: str) -> ModelRef:
    which = which.strip()
    if which.startswith("@"):
        return parse_model_uri(f"{name}{which}")
    if which.isdigit() or (which[:1] in "vV" and which[1:].isdigit()):
        return parse_model_uri(f"{name}/{which}")
    return parse_model_uri(f"{name}@{which}")


def _side_by_side(grids: list[tuple[str, Path | None]], out: Path) -> None:
    from PIL import Image, ImageDraw

    panels = []
    for label, path in grids:
        img = Image.open(path).convert("RGB") if path else Image.new("RGB", (128, 128), "white")
        panels.append((label if path else f"{label} (no grid)", img))
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    widths = [max(img.width, int(measure.textlength(label)) + 4) for label, img in panels]
    header, gap = 16, 8
    canvas = Image.new("RGB", (sum(widths) + gap * (len(panels) - 1), max(img.height for _, img in panels) + header), "white")
    draw = ImageDraw.Draw(canvas)
    x = 0
    for (label, img), width in zip(panels, widths):
        draw.text((x + 2, 2), label, fill="black")
        canvas.paste(img, (x, header))
        x += width + gap
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
