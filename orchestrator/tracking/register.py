"""Register a search's best generator as a new model version with its lineage, and move an alias to it only when it
wins (or by hand: `promote`).

A model version holds an MLflow models-from-code pyfunc (pyfunc_model.py beside this file, no cloudpickle) whose
artifacts are the generator (safetensors + JSON), the sample grid, the secret-stripped job YAML and a lineage JSON.
The alias (default `champion`) moves only when a candidate beats its holder on the job's metric by a margin;
otherwise the version is kept and tagged `challenger`.
"""
from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from orchestrator import __version__, git_commit
from orchestrator.errors import RegistryError, RegistryUsageError
from orchestrator.tracking.client import (DRIVER_HTTP_POLICY, Redactor, call, client_for, ensure_experiment,
                                          http_policy, mlflow_key, param_value, quiet_mlflow_logs)
from orchestrator.tracking.versions import (GENERATOR_ARTIFACT, GRID_FILE, JOB_FILE, LINEAGE_FILE, TAG_CHALLENGER,
                                            TAG_JOB, TAG_METRIC, TAG_MODE, TAG_PARAM_PREFIX, TAG_RUN, TAG_TRIAL,
                                            TAG_VALUE, alias_holder, check_alias, check_name, parse_model_uri,
                                            resolve_version)

log = logging.getLogger(__name__)

PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")
REGISTRY_EXPERIMENT = "ganforge-registry"  # holds logged models registered without a trial run


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

    check_name(model_name)
    check_alias(alias)
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
        call(tracking_uri, f"moving {model_name}@{alias}", lambda: client.set_registered_model_alias(model_name, alias, version), retry_s)
    else:
        call(tracking_uri, "tagging the challenger", lambda: client.set_model_version_tag(model_name, version, TAG_CHALLENGER, reason), retry_s)
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
        "ganforge_version": __version__,
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
        "ganforge_version": __version__,
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

    exp_id = call(tracking_uri, "finding the trial's MLflow run", experiment_id, retry_s)
    logged = call(
        tracking_uri,
        "creating the logged model",
        lambda: client.create_logged_model(exp_id, name=GENERATOR_ARTIFACT, source_run_id=candidate.run_id, tags=tags),
        retry_s,
    )
    model_dir = staging / "model"
    _save_pyfunc(model_dir, staging, record, logged, candidate.run_id)
    call(tracking_uri, "uploading the model", lambda: client.log_model_artifacts(logged.model_id, str(model_dir)), retry_s)
    call(tracking_uri, "finalising the logged model", lambda: client.finalize_logged_model(logged.model_id, "READY"), retry_s)

    def ensure_registered_model() -> None:
        try:
            client.create_registered_model(model_name, description="GAN generator registered by ganforge")
        except MlflowException as exc:
            if "already exists" not in str(exc).lower():
                raise

    call(tracking_uri, f"creating registered model {model_name!r}", ensure_registered_model, retry_s)
    description = f"trial {candidate.trial_id}: {candidate.metric}={candidate.value:.6g} ({candidate.mode})"
    version = call(
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
    current = call(tracking_uri, f"reading {model_name}@{alias}", lambda: alias_holder(client, model_name, alias), retry_s)
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


def promote(tracking_uri: str, name: str, version: str, alias: str = "champion") -> RegisteredVersion:
    """Point `alias` at `version` by hand (no metric check) and clear its challenger tag."""
    check_alias(alias)
    client = client_for(tracking_uri)
    mv = resolve_version(client, parse_model_uri(f"{name}/{version}"), tracking_uri)
    current = call(tracking_uri, f"reading {name}@{alias}", lambda: alias_holder(client, name, alias))
    value = (current.tags or {}).get(TAG_VALUE) if current is not None else None
    previous = float(value) if value is not None else None
    call(tracking_uri, f"moving {name}@{alias}", lambda: client.set_registered_model_alias(name, alias, str(mv.version)))
    if TAG_CHALLENGER in (mv.tags or {}):
        call(tracking_uri, "clearing the challenger tag", lambda: client.delete_model_version_tag(name, str(mv.version), TAG_CHALLENGER))
    return RegisteredVersion(name=name, version=str(mv.version), promoted=True, alias=alias, previous=previous)
