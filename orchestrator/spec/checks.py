"""Checks of a job beyond field types: everything a search would otherwise discover hours in.

Each check looks at a pydantic-valid `JobSpec` (plus the raw mapping, for `search.space` trials) and yields the
`Issue`s it finds; `orchestrator.spec.load` runs them all and reports every issue with its file line or `--set`.
`validate`, `run` and `submit` share this list, so `validate` is never weaker than a run. No check reads the data
set or calls a service: that is orchestrator/preflight.py.
"""
from __future__ import annotations

import copy
import difflib
import importlib.util
import posixpath
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Optional

from pydantic import BaseModel, ValidationError

from orchestrator.search_kinds import ALGORITHM_INFO, SCHEDULER_INFO
from orchestrator.spec.model import JobSpec
from orchestrator.spec.uris import URI_RULES, uri_problem
from trainers.catalog import BUILTIN_KINDS, FAMILY_INFO
from trainers.metrics.declared import FEATURE_SPACES, METRIC_MODES, METRIC_SUITE_INFO
from trainers.config import GANConfig
from trainers.registry import UnknownComponentError
from trainers.validate import check_components

Path = tuple[Any, ...]


@dataclass(frozen=True)
class Issue:
    path: Path  # the spec field it is about; its line (or --set) is looked up from this
    message: str  # "field: what is wrong; did you mean ..." (the field is repeated so each line stands alone)


def dotted(path: Iterable[Any]) -> str:
    return ".".join(str(p) for p in path)


def model_at(path: Path) -> type[BaseModel] | None:
    """The pydantic model that owns fields at `path` (for did-you-mean suggestions)."""
    model: Any = JobSpec
    for key in path:
        fields = getattr(model, "model_fields", None)
        if not fields or key not in fields:
            return None
        model = fields[key].annotation
        model = next((a for a in getattr(model, "__args__", ()) if isinstance(a, type) and issubclass(a, BaseModel)),
                     model)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def suggest(word: str, options: Iterable[str], shown: Callable[[str], str] = repr) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f"; did you mean {shown(close[0])}?" if close else ""


def describe_pydantic(error: dict[str, Any]) -> tuple[Path, str]:
    """A pydantic error as (path, "field: message")."""
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    if error["type"] == "extra_forbidden":
        owner = model_at(loc[:-1])
        hint = suggest(str(loc[-1]), owner.model_fields if owner else (), lambda k: repr(dotted(loc[:-1] + (k,))))
        return loc, f"{dotted(loc)}: unknown key{hint}"
    msg = error["msg"].removeprefix("Value error, ")
    shown = error.get("input")
    suffix = f" (got {shown!r})" if isinstance(shown, (int, float, str, bool)) and error["type"] != "missing" else ""
    return loc, f"{dotted(loc) or 'job'}: {msg}{suffix}"


CHECKS: list[Callable[[JobSpec, dict[str, Any]], Iterator[Issue]]] = []
# Checks of single values that read the raw mapping, so they report even when other fields have the wrong type.
RAW_CHECKS: list[Callable[[dict[str, Any]], Iterator[Issue]]] = []


def check(fn: Callable[[JobSpec, dict[str, Any]], Iterator[Issue]]) -> Callable:
    CHECKS.append(fn)
    return fn


def raw_check(fn: Callable[[dict[str, Any]], Iterator[Issue]]) -> Callable:
    RAW_CHECKS.append(fn)
    return fn


def run_checks(spec: Optional[JobSpec], data: dict[str, Any]) -> list[Issue]:
    """Every issue of the job; `spec` is None when the types are wrong, and then only the raw checks run."""
    issues = [issue for fn in RAW_CHECKS for issue in fn(data)]
    return issues + ([issue for fn in CHECKS for issue in fn(spec, data)] if spec is not None else [])


def raw_value(data: dict[str, Any], path: Path) -> Any:
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def _component_error(cfg: GANConfig) -> Optional[UnknownComponentError]:
    try:
        check_components(cfg)
    except UnknownComponentError as exc:
        return exc
    return None


@check
def components(spec: JobSpec, data: dict[str, Any]) -> Iterator[Issue]:
    """Family, loss, penalty, optimizer, precision and augmentations are declared names."""
    if error := _component_error(spec.gan_config()):
        yield Issue(tuple(error.kind.split(".")), str(error))  # "unknown model.family 'gann'; did you mean ..."


def data_kind(uri: str) -> Optional[str]:
    """The data set's kind when it is known without reading it (built-ins); None otherwise (preflight reads it)."""
    return BUILTIN_KINDS.get(uri)


def kind_issues(spec: JobSpec, kind: str) -> Iterator[Issue]:
    """The family and the metric must fit data of `kind` (also run by preflight once it has read the manifest)."""
    family = FAMILY_INFO.get(spec.model.family) if spec.model.family in FAMILY_INFO else None
    if family and kind not in family.data_kinds:
        kinds = "/".join(sorted(family.data_kinds))
        yield Issue(("model", "family"), f"model.family: {spec.model.family!r} trains on {kinds} data, "
                                         f"but {spec.data.uri} holds {kind} data")
    metric = spec.search.metric
    suite = METRIC_SUITE_INFO.get(kind)
    features = spec.metrics.features if suite.uses_features else "own"
    names = suite.metric_modes(features) if features in FEATURE_SPACES else suite.all_modes()  # unknown: see components
    if metric != "auto" and metric in METRIC_MODES and metric not in names and metric not in suite.renamed:
        yield Issue(("search", "metric"), f"search.metric: {metric!r} is not reported for {kind} data "
                                          f"with metrics.features {spec.metrics.features} "
                                          f"(there: {', '.join(names)}){suggest(metric, names)}")
    if not suite.uses_features and spec.metrics.features != "own":
        yield Issue(("metrics", "features"), f"metrics.features: {spec.metrics.features!r} scores images, but "
                                             f"{spec.data.uri} holds {kind} data (leave it at own)")


@check
def translation_in_one_process(spec: JobSpec, data: dict[str, Any]) -> Iterator[Issue]:
    family = FAMILY_INFO.get(spec.model.family) if spec.model.family in FAMILY_INFO else None
    if family and family.task == "translation" and spec.resources.workers_per_trial > 1:
        yield Issue(("resources", "workers_per_trial"), f"resources.workers_per_trial: {spec.model.family} trains in "
                                                        "one process per trial (no DDP yet); set 1")


@check
def data_fits(spec: JobSpec, data: dict[str, Any]) -> Iterator[Issue]:
    metric = spec.search.metric
    # A value trials report beside the suites' metrics (a diagnostic, an applied hyperparameter) may be ranked by,
    # but only with its direction stated: without search.mode an unknown name is far more often a typo.
    if metric != "auto" and metric not in METRIC_MODES and spec.search.mode is None:
        yield Issue(("search", "metric"), f"search.metric: unknown metric {metric!r}"
                                          f"{suggest(metric, METRIC_MODES)} (known: auto, {', '.join(METRIC_MODES)}; "
                                          "another reported value needs search.mode)")
    kind = data_kind(spec.data.uri)
    if kind:
        yield from kind_issues(spec, kind)


@check
def search_kinds(spec: JobSpec, data: dict[str, Any]) -> Iterator[Issue]:
    """The algorithm and scheduler are declared names, the algorithm draws from every distribution the space uses,
    a scheduler that mutates trials mid-way searches only what it can mutate, and an extra the algorithm needs is
    installed (find_spec looks for it without importing it)."""
    search = spec.search
    for field, registry in (("algorithm", ALGORITHM_INFO), ("scheduler", SCHEDULER_INFO)):
        try:
            registry.get(getattr(search, field))
        except UnknownComponentError as exc:
            yield Issue(("search", field), str(exc))
    if search.algorithm in ALGORITHM_INFO:
        algorithm = ALGORITHM_INFO.get(search.algorithm)
        for key, dist in search.space.items():
            refusal = algorithm.refuses(dist.kind)
            if refusal:
                yield Issue(("search", "space", key, dist.kind),
                            f"search.space.{key}: algorithm {search.algorithm} {refusal}")
        if algorithm.package and importlib.util.find_spec(algorithm.package) is None:
            yield Issue(("search", "algorithm"), f"search.algorithm: {search.algorithm} needs the {algorithm.package} "
                                                 "package; pip install 'ganforge[search]'")
    mutable = SCHEDULER_INFO.get(search.scheduler).mutates if search.scheduler in SCHEDULER_INFO else None
    fixed = [key for key in search.space for p in key.split(",") if mutable is not None and p.strip() not in mutable]
    if fixed:
        yield Issue(("search", "space", fixed[0]),
                    f"search.space: scheduler {search.scheduler} can only mutate {', '.join(sorted(mutable))}; "
                    f"move {fixed[0]!r} out of search.space or use another scheduler")


@check
def space_lands(spec: JobSpec, data: dict[str, Any]) -> Iterator[Issue]:
    """Every searched path exists, and every listed value is valid where it lands."""
    if _component_error(spec.gan_config()):
        return  # reported once by `components`, not again for every searched value
    for key, dist in spec.search.space.items():
        where = ("search", "space", key)
        paths = [tuple(p.strip().split(".")) for p in key.split(",")]
        bad = [p for p in paths if model_at(p[:-1]) is None or p[-1] not in model_at(p[:-1]).model_fields]
        for path in bad:
            owner = model_at(path[:-1])
            hint = suggest(path[-1], owner.model_fields if owner else (), lambda k: repr(dotted(path[:-1] + (k,))))
            yield Issue(where, f"search.space: {dotted(path)!r} is not a spec field{hint}")
        if bad:
            continue
        samples = list(dist.values)  # a range's two bounds, or every listed value
        for sample in samples:
            problem = _sample_problem(data, paths, sample)
            if problem:
                yield Issue(where, f"search.space.{key}: value {sample!r} is invalid: {problem}")
                break


def _sample_problem(data: dict[str, Any], paths: list[Path], sample: Any) -> Optional[str]:
    if len(paths) > 1 and (not isinstance(sample, list) or len(sample) != len(paths)):
        return f"each value must be a list of {len(paths)} items"
    trial = copy.deepcopy(data)
    for path, value in zip(paths, sample if len(paths) > 1 else [sample]):
        node = trial
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    try:
        cfg = GANConfig.model_validate({k: trial.get(k, {}) for k in ("data", "model", "train")})
    except ValidationError as exc:
        return describe_pydantic(exc.errors()[0])[1]
    error = _component_error(cfg)
    return str(error) if error else None


# MLflow's own rules (mlflow/utils/validation.py: _validate_model_name, _validate_model_alias_name[_reserved]),
# restated here so `validate` needs no MLflow import; tests/test_spec.py checks them against MLflow itself.
_ALIAS = re.compile(r"^[\w\-]*$")
_VERSION_ALIAS = re.compile(r"^[vV]\d+$")
MAX_ALIAS_LENGTH = 255


def model_name_problem(name: str) -> Optional[str]:
    if not name.strip():
        return "must not be empty"
    if any(c in name for c in "/:@"):
        return "must not contain '/', ':' or '@' (MODEL URIs use them: NAME@ALIAS, NAME/VERSION)"
    norm = posixpath.normpath(name)
    if norm != name or norm == "." or norm.startswith(("..", "/")):
        return f"would resolve to another name as a path ({norm!r}); MLflow refuses it"
    return None


def alias_problem(alias: str) -> Optional[str]:
    if not alias:
        return "must not be empty"
    if not _ALIAS.match(alias):
        return "may only contain letters, digits, '_' and '-' (MLflow's rule)"
    if len(alias) > MAX_ALIAS_LENGTH:
        return f"is longer than MLflow's {MAX_ALIAS_LENGTH} characters"
    if alias.lower() == "latest" or _VERSION_ALIAS.match(alias):
        return "is reserved by MLflow (latest, v1, v2 ... name versions)"
    return None


@raw_check
def registry_names(data: dict[str, Any]) -> Iterator[Issue]:
    if raw_value(data, ("registry", "enabled")) is False:
        return
    for path, rule in ((("registry", "model_name"), model_name_problem), (("registry", "alias"), alias_problem)):
        value = raw_value(data, path)
        problem = isinstance(value, str) and rule(value)  # absent: the default; not a string: a type error
        if problem:
            yield Issue(path, f"{dotted(path)}: {value!r} {problem}")


@raw_check
def uri_shapes(data: dict[str, Any]) -> Iterator[Issue]:
    for path in URI_RULES:
        value = raw_value(data, path)
        problem = isinstance(value, str) and uri_problem(path, value)
        if problem:
            shown = re.sub(r"//[^/@\s]*@", "//***@", value)  # never echo user:password@
            yield Issue(path, f"{dotted(path)}: {problem} (got {shown!r})")
