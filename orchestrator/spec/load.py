"""From YAML text (and --set overrides) to a validated JobSpec, with errors that name the YAML path and line."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any, Iterable

import yaml
from pydantic import ValidationError

from orchestrator.errors import SpecError
from orchestrator.spec.checks import Issue, describe_pydantic, dotted, run_checks
from orchestrator.spec.model import JobSpec
from orchestrator.spec.yaml_source import Path, YamlSource, _JobLoader, parse_yaml

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


MAX_JOB_BYTES = 1 << 20  # 1 MiB: job files are a few KiB; anything larger is refused before it is parsed
MAX_SHOWN = 20  # errors listed; the rest are counted


def _set_path(data: dict[str, Any], path: Path, value: Any) -> None:
    node = data
    for key in path[:-1]:
        node = node.setdefault(key, {}) if isinstance(node, dict) else node[key]
    node[path[-1]] = value


SPACE = ("search", "space")


def parse_override(text: str) -> tuple[Path, Any]:
    """`--set KEY=VALUE` -> (spec path, YAML value). Under `search.space.` the rest of the key is one searched key,
    dots and commas included: `search.space.train.lr_g={loguniform: [1e-4, 1e-3]}` (null removes it)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not p for p in key.split(".")):
        raise SpecError(f"--set {text!r}: expected KEY=VALUE with a dotted key, e.g. --set train.lr_g=2e-4")
    try:
        value = yaml.load(raw, Loader=_JobLoader) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # not YAML: keep the literal string
    parts = tuple(key.split("."))
    if parts[:2] == SPACE and len(parts) > 2:
        parts = SPACE + (key[len("search.space."):],)
    return parts, value


def _apply_override(data: dict[str, Any], item: str) -> Path:
    path, value = parse_override(item)
    node = data
    for i, key in enumerate(path[:-1]):
        if not isinstance(node.setdefault(key, {}), dict):
            raise SpecError(f"--set {item}: {dotted(path[:i + 1])} is not a section")
        node = node[key]
    if value is None and path[:2] == SPACE and len(path) == 3:
        node.pop(path[-1], None)  # `--set search.space.KEY=null` stops searching KEY
    else:
        node[path[-1]] = value
    return path


class _Report:
    """Where each issue came from: the `--set` that holds its path, else its line in the file."""

    def __init__(self, src: YamlSource, overrides: dict[Path, str]) -> None:
        self.src, self.overrides = src, overrides

    def origin(self, path: Path) -> str:
        for held, item in self.overrides.items():
            # The override holds the path, or lies inside a section the file does not write.
            if path[: len(held)] == held or (held[: len(path)] == path and path not in self.src.lines):
                return f"--set {item}"
        return self.src.where(path)

    def line(self, issue: Issue) -> str:
        message = issue.message
        for path, template in self.src.env_paths.items():  # never show a value that came from ${VAR}
            if issue.path[: len(path)] == path or path[: len(issue.path)] == issue.path:
                resolved = _value_at(self.src.data, path)
                if isinstance(resolved, str) and resolved:
                    message = message.replace(resolved, template)
        return f"{self.origin(issue.path)}: {message}"

    def raise_if_any(self, issues: list[Issue]) -> None:
        if not issues:
            return
        first = {issue.path: issue for issue in reversed(issues)}  # one line per field: its first issue
        lines = list(dict.fromkeys(self.line(i) for i in issues if first[i.path] is i))
        shown = lines[:MAX_SHOWN]
        if len(lines) > MAX_SHOWN:
            shown.append(f"... and {len(lines) - MAX_SHOWN} more ({len(lines)} errors in {self.src.filename})")
        raise SpecError("\n".join(shown))  # one problem per line; the CLI prefixes each


def _value_at(data: Any, path: Path) -> Any:
    for key in path:
        if not isinstance(data, (dict, list)):
            return None
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _credential_issues(spec: JobSpec, src: YamlSource) -> list[Issue]:
    paths = (("data", "uri"), ("storage", "uri"), ("registry", "tracking_uri"), ("cluster", "address"))
    return [
        Issue(path, f"{dotted(path)}: credentials must not be written in the job file; "
                    "use the standard AWS/MLflow environment variables or ${VAR}")
        for path in paths
        if (value := _value_at(spec.model_dump(), path)) and _CREDENTIALS_IN_URI.match(value)
        and path not in src.env_paths
    ]


def load_job_text(text: str, filename: str = "<job>", overrides: Iterable[str] = ()) -> LoadedJob:
    """Parse, apply `--set`s, validate types and run every check; all problems are raised at once (SpecError)."""
    if len(text) > MAX_JOB_BYTES:
        raise SpecError(f"{filename}: job file is {len(text):,} characters, over the {MAX_JOB_BYTES:,} limit (1 MiB)")
    src = parse_yaml(text, filename)
    applied: dict[Path, str] = {}
    for item in overrides:
        path = _apply_override(src.data, item)
        src.env_paths = {p: t for p, t in src.env_paths.items() if p[: len(path)] != path}
        applied[path] = item
    try:
        spec = JobSpec.model_validate(src.data)
    except ValidationError as exc:
        issues = [Issue(*describe_pydantic(e)) for e in exc.errors()] + run_checks(None, src.data)
    else:
        issues = _credential_issues(spec, src) + run_checks(spec, src.data)
    _Report(src, applied).raise_if_any(issues)
    return LoadedJob(spec=spec, text=text, path=None, overrides=list(overrides), env_paths=src.env_paths)


def load_job(path: str | FsPath, overrides: Iterable[str] = ()) -> LoadedJob:
    path = FsPath(path)
    try:
        size = path.stat().st_size
        if size > MAX_JOB_BYTES:  # refused before a byte is read
            raise SpecError(f"{path}: job file is {size:,} bytes, over the {MAX_JOB_BYTES:,} limit (1 MiB)")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such job file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read job file: {exc}") from None
    job = load_job_text(text, str(path), overrides)
    job.path = path
    return job
