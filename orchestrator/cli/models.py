"""Model commands: `models list|pull|describe|promote|compare` and `sample`.

MODEL arguments are NAME@ALIAS, NAME/VERSION or models:/...; `sample` also takes a pulled directory. The tracking
URI is `--tracking-uri`, else MLFLOW_TRACKING_URI, else ./mlflow.db (see orchestrator/tracking/client.py).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from orchestrator.errors import ModelNotFoundError, RegistryUsageError


def _tracking_uri(args: argparse.Namespace) -> str:
    """--tracking-uri beats MLFLOW_TRACKING_URI, which beats ./mlflow.db. A SQLite store that does not exist is
    an error naming where ganforge looked: opening it would silently create an empty database there."""
    from orchestrator.tracking.client import absolute_local_uri, resolve_tracking_uri

    uri = absolute_local_uri(args.tracking_uri) if args.tracking_uri else resolve_tracking_uri(None)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
        looked = "--tracking-uri" if args.tracking_uri else "MLFLOW_TRACKING_URI, then ./mlflow.db"
        raise ModelNotFoundError(f"no MLflow store at {uri[len('sqlite:///'):]} (looked at {looked}); "
                                 "pass --tracking-uri or set MLFLOW_TRACKING_URI")
    return uri


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


# --------------------------------------------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    from orchestrator.tracking.browse import list_models

    try:
        uri = _tracking_uri(args)
    except ModelNotFoundError as exc:  # nothing registered anywhere ganforge looked: say where, list nothing
        print(f"ganforge: {exc}", file=sys.stderr)
        print("[]" if args.json else "no registered models")
        return 0
    models = list_models(uri)
    if args.json:
        _print_json(models)
        return 0
    if not models:
        print("no registered models")
        return 0
    rows = []
    for m in models:
        aliases = m["aliases"] or {"-": {"version": None, "metric": None, "value": None}}
        for alias, held in aliases.items():
            rows.append([m["name"], alias, held["version"], held["metric"], held["value"], m["versions"], m["latest_version"]])
    print(_table(["NAME", "ALIAS", "VERSION", "METRIC", "VALUE", "VERSIONS", "LATEST"], rows))
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from orchestrator.tracking.pull import generator_dir, pull_model

    out = pull_model(args.model, args.out, tracking_uri=_tracking_uri(args))
    print(f"pulled {args.model} to {out} (generator: {generator_dir(out)})")
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    from orchestrator.tracking.browse import describe_model

    info = describe_model(_tracking_uri(args), args.model)
    if args.json:
        _print_json(info)
        return 0
    aliases = ", ".join(f"@{a} -> v{v}" for a, v in info["aliases"].items()) or "none"
    print(f"{info['name']}: {len(info['versions'])} version(s); aliases: {aliases}")
    rows = [
        [v["version"], ",".join(v["aliases"]) or "-", v["metric"], v["value"], v["mode"], v["trial_id"], v["job"], v["challenger"], v["created"]]
        for v in info["versions"]
    ]
    print(_table(["VERSION", "ALIASES", "METRIC", "VALUE", "MODE", "TRIAL", "JOB", "CHALLENGER", "CREATED"], rows))
    lineage = info["lineage"]
    if lineage:
        print(f"\nlineage of v{info['selected']}:")
        for line in _lineage_summary(lineage):
            print(f"  {line}")
    return 0


def _lineage_summary(lineage: dict) -> list[str]:
    data = lineage.get("data") or {}
    score = lineage.get("score") or {}
    floor = next((lineage[k] for k in ("floor", "real_vs_real") if lineage.get(k) is not None), None)
    lines = [
        f"model: {lineage.get('model_kind', 'generator')}",
        f"job: {lineage.get('job', '-')}   trial: {lineage.get('trial_id', '-')}   run: {lineage.get('run_id') or '-'}",
        f"metric: {score.get('metric', '-')} = {_fmt(score.get('value'))} ({score.get('mode', '-')}); real-vs-real floor: {_fmt(floor)}",
        f"data: {data.get('name', '-')} ({data.get('kind', '-')}, {data.get('num_rows', '-')} rows), checksum {data.get('checksum') or '-'}",
        f"hyperparameters: {json.dumps(lineage.get('hyperparameters') or {}, default=str)}",
        f"ganforge {lineage.get('ganforge_version', '-')}, git commit {lineage.get('git_commit') or 'unknown'}, registered {lineage.get('registered_at', '-')}",
    ]
    if lineage.get("pbt_policy"):
        lines.append(f"PBT policy: {json.dumps(lineage['pbt_policy'], default=str)[:200]}")
    if lineage.get("top_k"):
        lines.append(f"search top-{len(lineage['top_k'])} table recorded in artifacts/lineage.json")
    return lines


def cmd_promote(args: argparse.Namespace) -> int:
    from orchestrator.tracking.register import promote

    result = promote(_tracking_uri(args), args.name, args.version, alias=args.alias)
    previous = f" (previous holder's metric: {_fmt(result.previous)})" if result.previous is not None else ""
    print(f"{result.name}@{result.alias} -> version {result.version}{previous}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from orchestrator.tracking.browse import compare_versions

    result = compare_versions(_tracking_uri(args), args.name, args.a, args.b, args.out)
    if args.json:
        _print_json(result)
        return 0
    a, b = result["a"], result["b"]
    fields = [("version", "version"), ("aliases", "aliases"), ("metric", "metric"), ("value", "value"), ("mode", "mode"),
              ("real-vs-real floor", "real_vs_real"), ("trial", "trial_id"), ("job", "job"), ("data checksum", "data_checksum"),
              ("created", "created")]
    rows = [[label, ",".join(a[key]) if isinstance(a[key], list) else a[key], ",".join(b[key]) if isinstance(b[key], list) else b[key]] for label, key in fields]
    for key in sorted(set(a["hyperparameters"]) | set(b["hyperparameters"])):
        rows.append([f"hp.{key}", a["hyperparameters"].get(key), b["hyperparameters"].get(key)])
    print(_table(["", f"A ({args.a})", f"B ({args.b})"], rows))
    print(f"grids side by side: {result['png']}")
    return 0


# ---- sample


def _save_png(samples, info, out: Path) -> None:
    from trainers.metrics.grid import save_grid

    # Point clouds are drawn over the mixture's means when the data set records them.
    means = (info.extra.get("mixture") or {}).get("means") if info.kind == "points" else None
    save_grid(samples, info.kind, out, **({"means": means} if means else {}))


def _save_npy(samples, info, out: Path) -> None:
    import numpy as np

    from trainers.export import to_uint8_images

    array = to_uint8_images(samples) if info.kind == "image" else samples.numpy().astype(np.float32)
    np.save(out, array)


SAMPLE_WRITERS: dict[str, Callable] = {".png": _save_png, ".npy": _save_npy}


def cmd_sample(args: argparse.Namespace) -> int:
    from orchestrator.tracking.pull import load_generator
    from trainers.export import generate

    out = Path(args.out)
    writer = SAMPLE_WRITERS.get(out.suffix.lower())
    if writer is None:
        raise RegistryUsageError(f"--out {out}: use a .png (grid) or .npy (raw samples) file")
    if args.n < 1:
        raise RegistryUsageError(f"-n must be at least 1, got {args.n}")
    pulled = Path(args.model).is_dir()  # a folder from `models pull` needs no MLflow store
    generator = load_generator(args.model, device=args.device, tracking_uri=None if pulled else _tracking_uri(args))
    try:
        samples = generate(generator, args.n, seed=args.seed, class_label=args.class_label, truncation=args.truncation)
    except ValueError as exc:
        raise RegistryUsageError(f"{args.model}: {exc}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    writer(samples, generator.data_info, out)
    print(f"wrote {args.n} samples from {args.model} to {out}")
    return 0


# --------------------------------------------------------------------------------------------------------------------


def _add_tracking(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)")


def register(sub: argparse._SubParsersAction) -> None:
    models = sub.add_parser("models", help="list, pull, describe, promote and compare registered generators")
    msub = models.add_subparsers(dest="models_command", metavar="SUBCOMMAND")

    def usage(args: argparse.Namespace) -> int:
        models.print_help(sys.stderr)
        return 2

    models.set_defaults(handler=usage)

    p = msub.add_parser("list", help="registered models with their aliases and metrics")
    _add_tracking(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=cmd_list)

    p = msub.add_parser("pull", help="download a model version (MLflow model + safetensors generator) into a folder")
    p.add_argument("model", metavar="MODEL", help="NAME@ALIAS, NAME/VERSION or models:/...")
    p.add_argument("--out", required=True, help="destination folder (absent, empty or a previous pull)")
    _add_tracking(p)
    p.set_defaults(handler=cmd_pull)

    p = msub.add_parser("describe", help="versions, metrics, aliases and lineage of a model")
    p.add_argument("model", metavar="NAME[@ALIAS|/VERSION]")
    _add_tracking(p)
    p.add_argument("--json", action="store_true", help="print JSON (includes the full lineage)")
    p.set_defaults(handler=cmd_describe)

    p = msub.add_parser("promote", help="point an alias at a version (by hand, no metric check)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("version", metavar="VERSION")
    p.add_argument("--alias", default="champion", help="alias to move (default: champion)")
    _add_tracking(p)
    p.set_defaults(handler=cmd_promote)

    p = msub.add_parser("compare", help="two versions' metrics side by side and both sample grids in one PNG")
    p.add_argument("name", metavar="NAME")
    p.add_argument("a", metavar="A", help="version number or alias")
    p.add_argument("b", metavar="B", help="version number or alias")
    p.add_argument("--out", default="compare.png", help="PNG with both grids (default: compare.png)")
    _add_tracking(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=cmd_compare)

    p = sub.add_parser("sample", help="draw samples from a registered generator into a .png grid or .npy array")
    p.add_argument("model", metavar="MODEL", help="NAME@ALIAS, NAME/VERSION, models:/... or a pulled folder")
    p.add_argument("-n", type=int, default=64, help="number of samples (default: 64)")
    p.add_argument("--seed", type=int, default=0, help="latent seed; same seed, same samples (default: 0)")
    p.add_argument("--out", required=True, help=".png: sample grid; .npy: uint8 N x H x W x C images or float32 N x 2 points")
    p.add_argument("--class", dest="class_label", type=int, default=None, help="class label for conditional models")
    p.add_argument("--truncation", type=float, default=None, help="truncation (StyleGAN psi, else latent threshold)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    _add_tracking(p)
    p.set_defaults(handler=cmd_sample)
