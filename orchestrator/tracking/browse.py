"""Browse the registry: every model with its aliases (`models list`), one model's versions and lineage
(`models describe`), and two versions side by side (`models compare`)."""
from __future__ import annotations

import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from orchestrator.tracking.client import call, client_for
from trainers.metrics.grid import side_by_side
from orchestrator.tracking.versions import (GRID_FILE, LINEAGE_FILE, TAG_CHALLENGER, TAG_JOB, TAG_METRIC, TAG_MODE,
                                            TAG_PARAM_PREFIX, TAG_TRIAL, TAG_VALUE, ModelRef, all_pages,
                                            check_name, parse_model_uri, read_version_file, resolve_version,
                                            versions_of)


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


def aliases_by_version(model) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for alias, version in (getattr(model, "aliases", {}) or {}).items():
        out.setdefault(str(version), []).append(alias)
    return out


def list_models(tracking_uri) -> list[dict]:
    """One entry per registered model: name, version count, latest version, and each alias with its metric."""
    client = client_for(tracking_uri)

    def collect():
        rows = []
        for model in all_pages(lambda token: client.search_registered_models(max_results=200, page_token=token)):
            versions = versions_of(client, model.name)
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

    return call(tracking_uri, "listing registered models", collect)


def describe_model(tracking_uri: str, name_or_uri: str) -> dict[str, Any]:
    """A model's versions (metric, aliases, trial, challenger reason) and, for one version, its lineage summary.

    `name_or_uri` is NAME (the version the `champion` alias holds is detailed when there is one, else the latest),
    NAME@ALIAS or NAME/VERSION.
    """
    text = name_or_uri.strip()
    bare = text[len("models:/"):] if text.startswith("models:/") else text
    if "@" not in bare and "/" not in bare:
        check_name(bare)
        ref = None
        name = bare
    else:
        ref = parse_model_uri(text)
        name = ref.name
    client = client_for(tracking_uri)
    # resolve the model first so an unknown name gets a "did you mean"
    probe = resolve_version(client, ref or ModelRef(name=name, version="latest"), tracking_uri)
    model = call(tracking_uri, f"reading {name}", lambda: client.get_registered_model(name))
    by_version = aliases_by_version(model)
    versions = call(tracking_uri, f"listing versions of {name}", lambda: versions_of(client, name))
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
            model = call(tracking_uri, f"reading {name}", lambda: client.get_registered_model(name))
            row = _version_row(mv, aliases_by_version(model))
            slot = Path(tmp) / f"v{mv.version}"
            slot.mkdir(exist_ok=True)
            lineage_path = read_version_file(client, tracking_uri, mv, f"artifacts/{LINEAGE_FILE}", slot)
            lineage = json.loads(lineage_path.read_text()) if lineage_path else {}
            row["real_vs_real"] = next((lineage[k] for k in ("floor", "real_vs_real") if lineage.get(k) is not None), None)
            row["data_checksum"] = (lineage.get("data") or {}).get("checksum")
            rows.append(row)
            grid = read_version_file(client, tracking_uri, mv, f"artifacts/{GRID_FILE}", slot)
            grids.append((f"{name} v{mv.version}", grid))
        side_by_side(grids, Path(out_png))
    return {"name": name, "a": rows[0], "b": rows[1], "png": str(out_png)}


def _version_ref(name: str, which: str) -> ModelRef:
    which = which.strip()
    if which.startswith("@"):
        return parse_model_uri(f"{name}{which}")
    if which.isdigit() or (which[:1] in "vV" and which[1:].isdigit()):
        return parse_model_uri(f"{name}/{which}")
    return parse_model_uri(f"{name}@{which}")
