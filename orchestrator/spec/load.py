"""From YAML text (and --set overrides) to a validated JobSpec, with errors that name the YAML path and line."""
from __future__ import annotations

import copy
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any, Iterable

import yaml
from pydantic import BaseModel, ValidationError

from orchestrator.errors import SpecError
from orchestrator.spec.model import JobSpec
from orchestrator.spec.yaml_source import Path, YamlSource, _JobLoader, parse_yaml
from trainers.config import GANConfig
from trainers.registry import UnknownComponentError
from trainers.validate import check_components

_CREDENTIALS_IN_URI = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@\s]*:[^/@\s]*@", re.I)


@dataclass
class LoadedJob:
    spec: JobSpec
    text: str  # the YAML as written: `${VAR}` references unresolved, so it is safe to log and archive
    path: FsPath | None
    overrides: list[str] = field(default_factory=list)
    env_paths: dict[Path, str] = field(default_factory=dict)

    def redacted(self) -> dict[str, Any]:
        """The resolved spec with every value that came from an environment variable shown as `${VAR}` again."""
        data = self.spec.model_dump(mode="json")
        for path, template in self.env_paths.items():
            _set_path(data, path, template)
        return data


def _dotted(path: Iterable[str | int]) -> str:
    return ".".join(str(p) for p in path)


def _set_path(data: dict[str, Any], path: Path, value: Any) -> None:
    node = data
    for key in path[:-1]:
        node = node.setdefault(key, {}) if isinstance(node, dict) else node[key]
    node[path[-1]] = value


def parse_override(text: str) -> tuple[Path, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip() or any(not p for p in key.strip().split(".")):
        raise SpecError(f"--set {text!r}: expected KEY=VALUE with a dotted key, e.g. --set train.lr_g=2e-4")
    try:
        value = yaml.load(raw, Loader=_JobLoader) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # not YAML: keep the literal string
    return tuple(key.strip().split(".")), value


def _model_at(path: Path) -> type[BaseModel] | None:
    """The pydantic model that owns fields at `path` (for did-you-mean suggestions)."""
    model: Any = JobSpec
    for key in path:
        fields = getattr(model, "model_fields", None)
        if not fields or key not in fields:
            return None
        model = fields[key].annotation
        model = next((a for a in getattr(model, "__args__", ()) if isinstance(a, type) and issubclass(a, BaseModel)), model)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _describe(error: dict[str, Any]) -> str:
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    if error["type"] == "extra_forbidden":
        owner = _model_at(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), list(owner.model_fields) if owner else [], n=1)
        hint = f"; did you mean {_dotted(loc[:-1] + (close[0],))!r}?" if close else ""
        return f"{_dotted(loc)}: unknown key{hint}"
    msg = error["msg"].removeprefix("Value error, ")
    shown = error.get("input")
    suffix = f" (got {shown!r})" if isinstance(shown, (int, float, str, bool)) and error["type"] != "missing" else ""
    return f"{_dotted(loc) or 'job'}: {msg}{suffix}"


def _validate(data: dict[str, Any], src: YamlSource, overrides: dict[Path, str]) -> JobSpec:
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        loc = tuple(first["loc"])
        origin = next((f"--set {o}" for p, o in overrides.items() if loc[: len(p)] == p), None)
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise SpecError(f"{origin or src.where(loc)}: {_describe(first)}{more}") from None


def _check_space(spec: JobSpec, data: dict[str, Any], src: YamlSource) -> None:
    """Every searched path must exist, and every listed value must be valid where it lands."""
    for key, dist in spec.search.space.items():
        where = src.where(("search", "space", key))
        paths = [tuple(p.strip().split(".")) for p in key.split(",")]
        for path in paths:
            if _model_at(path[:-1]) is None or path[-1] not in _model_at(path[:-1]).model_fields:
                owner = _model_at(path[:-1])
                close = difflib.get_close_matches(path[-1], list(owner.model_fields) if owner else [], n=1)
                hint = f"; did you mean {_dotted(path[:-1] + (close[0],))!r}?" if close else ""
                raise SpecError(f"{where}: search.space: {_dotted(path)!r} is not a spec field{hint}")
        samples = dist.values if dist.kind in ("choice", "grid") else list(dist.values)
        for sample in samples:
            values = sample if len(paths) > 1 else [sample]
            if len(paths) > 1 and (not isinstance(sample, list) or len(sample) != len(paths)):
                raise SpecError(f"{where}: search.space.{key}: each value must be a list of {len(paths)} items, got {sample!r}")
            trial = copy.deepcopy(data)
            for path, value in zip(paths, values):
                _set_path(trial, path, value)
            try:
                cfg = GANConfig.model_validate({k: trial.get(k, {}) for k in ("data", "model", "train")})
                check_components(cfg)
            except (ValidationError, UnknownComponentError) as exc:
                detail = _describe(exc.errors()[0]) if isinstance(exc, ValidationError) else str(exc)
                raise SpecError(f"{where}: search.space.{key}: value {sample!r} is invalid: {detail}") from None


def _check_policy(spec: JobSpec, src: YamlSource) -> None:
    for path, value in (
        (("data", "uri"), spec.data.uri),
        (("storage", "uri"), spec.storage.uri),
        (("registry", "tracking_uri"), spec.registry.tracking_uri),
        (("cluster", "address"), spec.cluster.address),
    ):
        if value and _CREDENTIALS_IN_URI.match(value) and path not in src.env_paths:
            raise SpecError(
                f"{src.where(path)}: {_dotted(path)}: credentials must not be written in the job file; "
                "use the standard AWS/MLflow environment variables or ${VAR}"
            )


def load_job_text(text: str, filename: str = "<job>", overrides: Iterable[str] = ()) -> LoadedJob:
    src = parse_yaml(text, filename)
    data = src.data
    applied: dict[Path, str] = {}
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for key in path[:-1]:
            if not isinstance(node.get(key, {}), dict):
                raise SpecError(f"--set {item}: {_dotted(path[:path.index(key) + 1])} is not a section")
            node = node.setdefault(key, {})
        node[path[-1]] = value
        src.env_paths.pop(path, None)
        applied[path] = item
    spec = _validate(data, src, applied)
    try:
        check_components(spec.gan_config())
    except UnknownComponentError as exc:
        raise SpecError(f"{src.where(tuple(exc.kind.split('.')))}: {exc}") from None
    _check_space(spec, data, src)
    _check_policy(spec, src)
    return LoadedJob(spec=spec, text=text, path=None, overrides=list(overrides), env_paths=src.env_paths)


def load_job(path: str | FsPath, overrides: Iterable[str] = ()) -> LoadedJob:
    path = FsPath(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such job file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read job file: {exc}") from None
    job = load_job_text(text, str(path), overrides)
    job.path = path
    return job
