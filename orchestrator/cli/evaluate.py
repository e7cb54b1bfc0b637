"""`ganforge evaluate MODEL --data URI`: score any registered generator against any data set, beside the floors.

The same suites and the same fixed split as a search (trainers/metrics): the scores of a generator evaluated here
and in the trial that trained it agree when the data set, feature space and sample count do (the trial's latents
differ, so up to sampling noise).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from orchestrator.errors import DataSourceError, RegistryUsageError


def _scores(args: argparse.Namespace):
    from orchestrator.cli.models import _tracking_uri
    from orchestrator.tracking.pull import load_generator
    from trainers.data import DataError, open_dataset
    from trainers.data.builtins import cache_root
    from trainers.export import generate
    from trainers.metrics.base import RealRows, build_evaluator
    from trainers.metrics.inception import InceptionWeightsMissing
    from trainers.registry import UnknownComponentError
    from trainers.translation.export import is_translator

    try:
        dataset = open_dataset(args.data)
    except DataError as exc:
        raise DataSourceError(f"--data {args.data}: {exc}") from exc
    info = dataset.info
    pulled = Path(args.model).is_dir()  # a folder from `models pull` needs no MLflow store
    generator = load_generator(args.model, device=args.device, tracking_uri=None if pulled else _tracking_uri(args))
    if is_translator(generator):  # its suites need the data set's held-out split and both domains' feature nets
        raise RegistryUsageError(f"{args.model} is a translator: ganforge evaluate scores generators that sample from "
                                 "noise; its paired/unpaired scores are in its training run's MLflow metrics")
    made = generator.data_info
    if (made.kind, tuple(made.shape)) != (info.kind, tuple(info.shape)):
        raise RegistryUsageError(f"{args.model} makes {made.kind} samples of shape {tuple(made.shape)}; "
                                 f"--data {args.data} holds {info.kind} data of shape {tuple(info.shape)}")
    try:
        evaluator = build_evaluator(info, RealRows(info.num_rows, dataset.rows, name=info.name), args.n,
                                    None if args.no_cache else cache_root(), device=args.device,
                                    features=args.features, weights=args.weights)
    except UnknownComponentError as exc:
        raise RegistryUsageError(f"--features: {exc}") from None
    except (InceptionWeightsMissing, ValueError) as exc:
        raise RegistryUsageError(str(exc)) from None
    samples = generate(generator, args.n, seed=args.seed)  # seeded latents: the same samples every run
    position = 0

    def served(n: int):
        nonlocal position
        position += n
        return samples[position - n : position]

    return evaluator, evaluator.evaluate(served)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from trainers.metrics import METRIC_MODES

    if args.n < 2:
        raise RegistryUsageError(f"-n must be at least 2, got {args.n}")
    evaluator, scores = _scores(args)
    rows = [{"metric": name, "value": value, "floor": evaluator.floors.get(f"{name}_floor"),
             "better": {"min": "lower", "max": "higher"}.get(METRIC_MODES.get(name, ""), "")}
            for name, value in scores.items()]
    if args.json:
        print(json.dumps({"model": args.model, "data": args.data, "default_metric": evaluator.default_metric,
                          "scores": scores, "floors": evaluator.floors, "provenance": evaluator.provenance},
                         indent=2))
        return 0
    print(f"{args.model} on {args.data}: {args.n} samples (seed {args.seed})")
    width = max(len(r["metric"]) for r in rows)
    print(f"  {'metric':<{width}}  {'value':>10}  {'floor':>10}  better")
    for r in rows:
        floor = "" if r["floor"] is None else f"{r['floor']:.4g}"
        mark = "*" if r["metric"] == evaluator.default_metric else " "
        print(f"{mark} {r['metric']:<{width}}  {r['value']:>10.4g}  {floor:>10}  {r['better']}")
    print("  floor: the same score for real reference samples at this sample count: the best a generator can reach")
    print("  " + ", ".join(f"{k}={v}" for k, v in evaluator.provenance.items()))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score a registered generator against a data set, beside the real-vs-real floors")
    p.add_argument("model", metavar="MODEL", help="NAME@ALIAS, NAME/VERSION, models:/... or a pulled folder")
    p.add_argument("--data", required=True, metavar="URI", help="data set: builtin:NAME, a path, file:// or s3:// URI")
    p.add_argument("--features", default="own", help="feature space of image metrics: own (fd_own, kd_own) or "
                                                     "inception (fid, kid; needs the TTUR weights file)")
    p.add_argument("--weights", default=None, help="the feature network's weights file or folder "
                                                   "(default: $GANFORGE_WEIGHTS, else the cache)")
    p.add_argument("-n", type=int, default=2500, help="generated (and at most as many real) samples (default 2500)")
    p.add_argument("--seed", type=int, default=0, help="latent seed (default 0)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--no-cache", action="store_true", help="build feature networks and real statistics afresh, "
                                                           "without reading or writing the cache")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)")
    p.add_argument("--json", action="store_true", help="print JSON: scores, floors and provenance")
    p.set_defaults(handler=cmd_evaluate)
