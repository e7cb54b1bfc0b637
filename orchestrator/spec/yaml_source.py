"""Safe YAML reading that remembers where every value came from.

Only standard YAML is accepted: duplicate keys and any explicit tag (`!!python/object`, `!Ref`, ...) are errors, and
`${VAR}` in a string is replaced from the environment (so credentials never sit in the file) while the paths that
used a variable are remembered for redaction. Hostile files fail fast: aliases may expand to at most MAX_VALUES
values (a "billion laughs" file is a few hundred bytes), nesting is bounded, and an empty document is an error.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from orchestrator.errors import SpecError

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_STANDARD_TAGS = {
    "tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")
}

Path = tuple[str | int, ...]
MAX_VALUES = 100_000  # values after alias expansion; real jobs hold a few hundred


@dataclass
class YamlSource:
    """Parsed YAML plus, for each path, the line it was written on (1-based)."""

    data: Any
    lines: dict[Path, int] = field(default_factory=dict)
    env_paths: dict[Path, str] = field(default_factory=dict)  # path -> the original "${VAR}" text
    filename: str = "<job>"
    values: int = 0  # expanded so far, against MAX_VALUES

    def line_of(self, path: Path) -> int | None:
        # Fall back to the nearest parent: pydantic reports missing or extra keys at the parent's path.
        for i in range(len(path), -1, -1):
            if path[:i] in self.lines:
                return self.lines[path[:i]]
        return None

    def where(self, path: Path) -> str:
        line = self.line_of(path)
        return f"{self.filename}:{line}" if line else self.filename


def _fail(filename: str, node: yaml.Node, message: str) -> SpecError:
    return SpecError(f"{filename}:{node.start_mark.line + 1}: {message}")


def _walk(node: yaml.Node, path: Path, src: YamlSource) -> Any:
    src.values += 1
    if src.values > MAX_VALUES:
        raise _fail(src.filename, node, f"{_dotted(path) or 'document'}: more than {MAX_VALUES:,} values after "
                                        "expanding YAML aliases (an alias bomb?); write the values out")
    src.lines.setdefault(path, node.start_mark.line + 1)
    if node.tag not in _STANDARD_TAGS:
        raise _fail(src.filename, node, f"{_dotted(path) or 'document'}: YAML tag {node.tag!r} is not allowed; use plain values")
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise _fail(src.filename, key_node, f"{_dotted(path) or 'document'}: keys must be plain strings")
            key = str(_scalar(key_node))
            if key in out:
                raise _fail(src.filename, key_node, f"duplicate key {_dotted(path + (key,))!r}")
            src.lines[path + (key,)] = key_node.start_mark.line + 1  # errors point at the key's line
            out[key] = _walk(value_node, path + (key,), src)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(v, path + (i,), src) for i, v in enumerate(node.value)]
    value = _scalar(node)
    if isinstance(value, str) and "${" in value:
        value = _interpolate(value, path, src, node)
    return value


class _JobLoader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-4` as a float (YAML 1.2; PyYAML's 1.1 rules need `1.0e-4`)."""


_JobLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)
_CONSTRUCTOR = yaml.constructor.SafeConstructor()


def _scalar(node: yaml.ScalarNode) -> Any:
    # SafeConstructor builds only plain scalars; tags were already checked against the standard set.
    return _CONSTRUCTOR.construct_object(node, deep=True)


def _interpolate(value: str, path: Path, src: YamlSource, node: yaml.Node) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in os.environ:
            raise _fail(src.filename, node, f"{_dotted(path)}: environment variable {name} is not set")
        return os.environ[name]

    src.env_paths[path] = value
    return _ENV_REF.sub(sub, value)


def _dotted(path: Path) -> str:
    return ".".join(str(p) for p in path)


def parse_yaml(text: str, filename: str = "<job>") -> YamlSource:
    src = YamlSource(data=None, filename=filename)
    try:
        root = yaml.compose(text, Loader=_JobLoader)
        if root is not None and isinstance(root, yaml.MappingNode):
            src.data = _walk(root, (), src)
    except RecursionError:
        raise SpecError(f"{filename}: nested too deeply to be a job file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{filename}:{mark.line + 1}" if mark else filename
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{where}: not valid YAML: {problem}") from None
    if root is None:
        raise SpecError(f"{filename}: the job file is empty (or only comments); a job is a mapping of sections "
                        "(name, data, model, train, ...)")
    if not isinstance(root, yaml.MappingNode):
        what = "a list" if isinstance(root, yaml.SequenceNode) else "a single value"
        raise SpecError(f"{filename}:{root.start_mark.line + 1}: the job file holds {what}; a job is a mapping of "
                        "sections (name, data, model, train, ...)")
    return src
