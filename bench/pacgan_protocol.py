"""PacGAN's mixture protocol (Lin et al. 2018, Table 1) run with ganforge, plus digits FID/KID per family.

Mixtures (ring-8, grid-25; 2,500 samples per score; mean +- standard error over seeds):
  1. search (skipped with `--search-configs 0`, as docs/results.md runs it: the mixture jobs are the product's
     search, and bench/job_champions.py scores their champions on the same seeds): a random search over the
     stability knobs in SPACE with successive halving (as ASHA does): each configuration trains with a few search
     seeds (disjoint from the protocol's) for `--search-steps`, the best third again for the full `--steps`;
     configurations are ranked by the median over seeds of `spread_mode_hq`
     (as the mixture jobs rank; then reverse KL), a diverged seed counting as the worst score;
  2. protocol rows (ROWS: `gan`, with pack 2, with the maxout D, with 50 latent categories, `wgan-gp`) and the
     configuration the search selected, each trained for `--steps` with seeds 0..N-1; each reports modes, HQ,
     reverse KL and `mode_spread` (the width within modes, which the other three do not see).
Digits: every family trained `--digits-steps` on builtin:digits with a few seeds; FID and KID (domain feature
network, 1,000 samples) beside their real-vs-real floors.

Every finished run is appended to a JSONL file (`--log`), and a rerun skips what it holds, so the script can be
stopped and resumed. The markdown tables go to stdout and to `--markdown`, or replace a doc's generated blocks
(`--update`; `--check` trains nothing and compares): bench/doc_tables.py lists the invocations docs/results.md uses.

    nice .venv/bin/python bench/pacgan_protocol.py --log pacgan.jsonl --markdown results.md \
        [--datasets ring8,grid25] [--seeds 10] [--wgan-gp-seeds 10] [--steps 5000] [--search-configs 18] [--search-seeds 3] \
        [--search-steps 2000] [--long-steps 0] [--long-seeds 3] [--digits-seeds 3] [--digits-steps 1500]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from generated_blocks import update_or_check
from trainers.config import GANConfig
from trainers.loop import GANTrainer, TrainingDiverged
from trainers.metrics.mixture import spread_mode_hq

# The shared mixture setup: PacGAN's latent size and batch size scale, smaller networks than theirs (CPU budget).
MIXTURE_BASE: dict[str, Any] = {
    "data": {"batch_size": 256, "shuffle_buffer": 4096},
    "model": {"family": "gan", "latent_dim": 2, "width": 128, "depth": 3},
    "train": {"lr_g": 5e-4, "lr_d": 5e-4, "beta1": 0.5, "beta2": 0.999, "ema_decay": 0.0, "eval_samples": 2500},
}
# The baseline rows, as overrides of MIXTURE_BASE.
ROWS: dict[str, dict[str, Any]] = {
    "gan": {},
    "gan, pack 2": {"model": {"pack": 2}},
    "gan, maxout D": {"model": {"d_maxout": 5, "d_width": 64}},  # PacGAN's discriminator: maxout units, 5 pieces
    "gan, 50 latent categories": {"model": {"latent_categories": 50}},  # a categorical code beside z (layers.py)
    "wgan-gp": {"model": {"family": "wgan-gp"}, "train": {"beta2": 0.9}},  # 5 critic steps, lambda 10
}
# What the search may change: spec path -> sampler(rng). Paths joined with ',' are drawn together.
SPACE: dict[str, Callable[[random.Random], Any]] = {
    "model.pack": lambda r: r.choice([1, 2, 4]),
    "train.loss": lambda r: r.choice(["ns", "lsgan", "hinge"]),
    "train.n_critic": lambda r: r.choice([1, 3, 5]),
    "train.lr_g": lambda r: 10 ** r.uniform(math.log10(1e-4), math.log10(1e-3)),
    "train.lr_d": lambda r: 10 ** r.uniform(math.log10(2e-4), math.log10(2e-3)),
    "train.beta1,train.beta2": lambda r: r.choice([(0.5, 0.999), (0.0, 0.9)]),
    "train.ema_decay": lambda r: r.choice([0.0, 0.99, 0.999]),
    # The discriminator: LeakyReLU units as wide as G, or maxout units (5 pieces) half as wide, as PacGAN's.
    "model.d_maxout,model.d_width": lambda r: r.choice([(0, None), (5, 64)]),
    # The latent: continuous, or a categorical code of 50 beside it (model.latent_categories).
    "model.latent_categories": lambda r: r.choice([0, 50]),
}
SEARCH_SEED_OFFSET = 1000  # search seeds never overlap the protocol's seeds
# Published rows (modes, HQ %, reverse KL), 10 seeds: PacGAN Table 1 and VEEGAN Table 1 (no KL reported there).
PUBLISHED = {
    "ring8": [("GAN (PacGAN Table 1)", "6.3", "98.2", "0.45"), ("PacGAN2 (PacGAN Table 1)", "7.9", "95.6", "0.07"),
              ("VEEGAN (VEEGAN Table 1)", "8.0", "52.9", "-")],
    "grid25": [("GAN (PacGAN Table 1)", "17.3", "94.8", "0.70"), ("PacGAN4 (PacGAN Table 1)", "24.8", "93.6", "0.04"),
               ("VEEGAN (VEEGAN Table 1)", "24.6", "40.0", "-")],
}
TARGETS = {"ring8": "8 modes, HQ >= 97 %, KL <= 0.03", "grid25": ">= 24.9 modes, HQ >= 95 %, KL <= 0.03"}
DIGITS_BASE: dict[str, Any] = {
    "data": {"uri": "builtin:digits", "batch_size": 64},
    "model": {"latent_dim": 32, "width": 32, "depth": 2},
    "train": {"lr_g": 5e-4, "lr_d": 5e-4, "ema_decay": 0.999, "ema_start": 200, "eval_samples": 1000},
}
DIGITS_FAMILIES = ("gan", "dcgan", "wgan", "wgan-gp", "cgan", "stylegan", "sngan", "lsgan")


def merge(base: dict[str, Any], *overrides: dict[str, Any]) -> dict[str, Any]:
    out = {k: dict(v) for k, v in base.items()}
    for o in overrides:
        for section, values in o.items():
            out.setdefault(section, {}).update(values)
    return out


def flat_to_nested(flat: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        paths = key.split(",")
        values = value if len(paths) > 1 else [value]
        for path, v in zip(paths, values):
            section, field = path.split(".")
            nested.setdefault(section, {})[field] = v
    return nested


def key_of(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


class RunLog:
    """Finished runs by key, appended to a JSONL file so a rerun resumes."""

    def __init__(self, path: Path, train_missing: bool = True) -> None:
        self.path = path
        self.train_missing = train_missing  # False: a run missing from the log is an error (--check)
        self.runs: dict[str, dict[str, Any]] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                if line.strip():
                    rec = json.loads(line)
                    self.runs[rec["key"]] = rec

    @staticmethod
    def key(spec: dict[str, Any], steps: int, select_metric: str | None = None) -> str:
        # select_metric joins the key only when set, so runs logged before it existed keep theirs
        return key_of({**spec, "steps": steps, **({"select_metric": select_metric} if select_metric else {})})

    def missing(self, spec: dict[str, Any], label: str, steps: int, select_metric: str | None = None) -> bool:
        """Whether the run still has to train (refused when the log may not train: --check)."""
        if self.key(spec, steps, select_metric) in self.runs:
            return False
        if not self.train_missing:
            raise SystemExit(f"{self.path}: no run of {label!r} with seed {spec['train']['seed']}; run without --check")
        return True

    def add(self, spec: dict[str, Any], label: str, steps: int, select_metric: str | None,
            result: dict[str, Any]) -> dict[str, Any]:
        """Append a finished run (train_and_score's result) to the log and print its scores."""
        key = self.key(spec, steps, select_metric)
        rec = {"key": key, "label": label, "spec": spec, "steps": steps,
               **({"select_metric": select_metric} if select_metric else {}), **result}
        with self.path.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")
        self.runs[key] = rec
        print(f"  {label:28s} seed {spec['train']['seed']:4d}: "
              + ", ".join(f"{k}={v:.4g}" for k, v in rec["scores"].items() if k in ("modes", "hq", "reverse_kl", "mode_spread", "fd_own", "kd_own"))
              + f" ({rec['seconds']:.0f} s)", flush=True)
        return rec

    def get_or_train(self, spec: dict[str, Any], label: str, steps: int, select_metric: str | None,
                     train: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The logged run, or what `train()` returns (scores, seconds), appended to the log."""
        if not self.missing(spec, label, steps, select_metric):
            return self.runs[self.key(spec, steps, select_metric)]
        return self.add(spec, label, steps, select_metric, train())

    def get_or_run(self, spec: dict[str, Any], label: str, steps: int, cache: str, eval_every: int | None = None,
                   select_metric: str | None = None) -> dict[str, Any]:
        """A mixture or digits run of GANTrainer (train_and_score), from the log or trained."""
        return self.get_or_train(spec, label, steps, select_metric,
                                 lambda: train_and_score(spec, steps, cache, eval_every, select_metric))


def train_and_score(spec: dict[str, Any], steps: int, cache: str, eval_every: int | None,
                    select_metric: str | None = None) -> dict[str, Any]:
    """Train, then score the better of the raw and EMA generator by `select_metric` (default: the suite's own,
    reverse KL for mixtures)."""
    cfg = GANConfig.model_validate(merge(spec, {"train": {"steps": steps, "device": "cpu"}}))
    t0 = time.perf_counter()
    trainer = GANTrainer(cfg, cache_dir=cache, select_metric=select_metric)
    try:
        trainer.train_steps(steps)
        scores = trainer.evaluate()
        diverged = False
    except TrainingDiverged as exc:
        scores, diverged = {"error": str(exc)}, True
    finally:
        trainer.close()
    return {"scores": {k: v for k, v in scores.items() if isinstance(v, (int, float, str))}, "diverged": diverged,
            "seconds": time.perf_counter() - t0}


def mixture_triplet(rec: dict[str, Any], k: int) -> tuple[float, float, float]:
    """(modes, HQ, reverse KL); a diverged run scores as a generator with no high-quality sample."""
    if rec["diverged"]:
        return 0.0, 0.0, math.log(k)
    s = rec["scores"]
    return s["modes"], s["hq"], s["reverse_kl"]


def mean_se(values: list[float], digits: int = 1) -> str:
    m = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return f"{m:.{digits}f} ± {se:.{digits}f}"


def spread(recs: list[dict[str, Any]]) -> str:
    """Mean +- s.e. of `mode_spread` (1.0 = a perfect sampler's width within its modes); '-' for runs logged before
    the suite reported it, or diverged ones."""
    values = [r["scores"]["mode_spread"] for r in recs if not r["diverged"] and "mode_spread" in r["scores"]]
    return mean_se(values, 2) if len(values) == len(recs) else "-"


def row_cells(recs: list[dict[str, Any]], k: int) -> str:
    """A protocol row's cells: modes | HQ % | reverse KL | spread | spread_mode_hq | diverged | s / run."""
    trip = [mixture_triplet(r, k) for r in recs]
    logged = all(r["diverged"] or "mode_spread" in r["scores"] for r in recs)  # runs logged before it lack the spread
    score = mean_se([run_score(r) for r in recs]) if logged else "-"
    return (f"{mean_se([t[0] for t in trip])} | {mean_se([t[1] for t in trip])} | {mean_se([t[2] for t in trip], 3)} | "
            f"{spread(recs)} | {score} | {sum(r['diverged'] for r in recs)}/{len(recs)} | "
            f"{statistics.fmean(r['seconds'] for r in recs):.0f}")


def run_score(rec: dict[str, Any]) -> float:
    """spread_mode_hq of one run (a diverged one scores 0), recomputed from its logged parts: HQ capped at a perfect
    sampler's rate x exp(-reverse KL) x min(1, mode_spread), the score jobs/ring8.yaml and jobs/grid25.yaml rank by."""
    if rec["diverged"]:
        return 0.0
    s = rec["scores"]
    return spread_mode_hq(s["hq"], s["reverse_kl"], s["mode_spread"])


def search_score(recs: list[dict[str, Any]], k: int) -> tuple[float, float]:
    """Median over seeds of `spread_mode_hq`, then of -reverse KL: a configuration must cover the modes in proportion
    and put its samples on them at the data's width (modes alone rewards blur, HQ alone rewards dropping modes or
    drawing them narrower than the data)."""
    return (statistics.median(run_score(r) for r in recs),
            -statistics.median(mixture_triplet(r, k)[2] for r in recs))


def run_search(log: RunLog, dataset: str, k: int, args, cache: str) -> tuple[dict[str, Any], list[str]]:
    """Successive halving, like ASHA: every configuration gets `--search-steps`; the best third is retrained for
    the protocol's full `--steps` (same search seeds) and the best of those is selected."""
    rng = random.Random(f"ganforge-pacgan-search-{dataset}")
    candidates = [{key: sample(rng) for key, sample in SPACE.items()} for _ in range(args.search_configs)]

    def evaluate(i: int, flat: dict[str, Any], steps: int) -> tuple[tuple[float, float], tuple[float, ...]]:
        spec_over = flat_to_nested(flat)
        recs = [log.get_or_run(merge(MIXTURE_BASE, {"data": {"uri": f"builtin:{dataset}"}}, spec_over,
                                     {"train": {"seed": SEARCH_SEED_OFFSET + s}}),
                               f"search #{i} ({steps} steps)", steps, cache) for s in range(args.search_seeds)]
        triplets = [(*mixture_triplet(r, k), 0.0 if r["diverged"] else r["scores"]["mode_spread"]) for r in recs]
        medians = tuple(statistics.median(t[j] for t in triplets) for j in range(4))
        return search_score(recs, k), medians

    rung1 = sorted(((*evaluate(i, flat, args.search_steps), i, flat) for i, flat in enumerate(candidates)),
                   key=lambda r: r[0], reverse=True)
    survivors = rung1[: max(1, math.ceil(len(rung1) / 3))]
    rung2 = sorted(((*evaluate(i, flat, args.steps), i, flat) for _, _, i, flat in survivors),
                   key=lambda r: r[0], reverse=True)
    lines = ["| rung | steps | rank | spread_mode_hq | modes | HQ % | reverse KL | spread | configuration |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for rung, rows, steps in ((2, rung2, args.steps), (1, rung1, args.search_steps)):
        for pos, (score, med, i, flat) in enumerate(rows, 1):
            shown = ", ".join(f"{k}={_fmt(v)}" for k, v in flat.items())
            lines.append(f"| {rung} | {steps} | {pos} | {score[0]:.1f} | {med[0]:.1f} | {med[1]:.1f} | {med[2]:.3f} | "
                         f"{med[3]:.2f} | #{i}: {shown} |")
    return flat_to_nested(rung2[0][3]), lines


def _fmt(v: Any) -> str:
    """A configuration value for a table: 3 significant digits, tuples (and JSON's lists) joined by '/'."""
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, (tuple, list)):
        return "/".join(_fmt(x) for x in v)
    return str(v)


def run_mixtures(log: RunLog, args, cache: str) -> dict[str, list[str]]:
    """Each data set's tables (a heading line and a blank one first): the protocol rows beside the published ones,
    then the script's own search when `--search-configs` > 0 (the mixture jobs are the product's search:
    bench/job_champions.py scores their champions on the same seeds)."""
    out: dict[str, list[str]] = {}
    for dataset in args.datasets:
        k = 8 if dataset == "ring8" else 25
        selected, search_lines = None, []
        if args.search_configs:
            print(f"== {dataset}: search", flush=True)
            selected, search_lines = run_search(log, dataset, k, args, cache)
        rows = {**ROWS, **({"search-selected": selected} if selected else {})}
        target = f"; target for the search-selected row: {TARGETS[dataset]}" if selected else ""
        table = [f"### {dataset} ({args.seeds} seeds, {args.steps} generator steps, 2,500 samples{target})", "",
                 "| configuration | modes | HQ % | reverse KL | spread | spread_mode_hq | diverged | s / run |",
                 "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name, over in rows.items():
            print(f"== {dataset}: {name}", flush=True)
            seeds = args.wgan_gp_seeds if name == "wgan-gp" else args.seeds
            recs = [log.get_or_run(merge(MIXTURE_BASE, {"data": {"uri": f"builtin:{dataset}"}}, over, {"train": {"seed": s}}),
                                   name, args.steps, cache) for s in range(seeds)]
            table.append(f"| ganforge {name} ({seeds} seeds) | {row_cells(recs, k)} |")
        if args.long_steps and selected:  # does the selected configuration reach the targets with a larger budget?
            recs = [log.get_or_run(merge(MIXTURE_BASE, {"data": {"uri": f"builtin:{dataset}"}}, selected,
                                         {"train": {"seed": s}}), "search-selected, long", args.long_steps, cache)
                    for s in range(args.long_seeds)]
            table.append(f"| ganforge search-selected, {args.long_steps} steps ({len(recs)} seeds) | {row_cells(recs, k)} |")
        for name, modes, hq, kl in PUBLISHED[dataset]:
            table.append(f"| {name} | {modes} | {hq} | {kl} | | | | |")
        out[dataset] = table
        if selected:
            sel = ", ".join(f"{sec}.{key}={_fmt(v)}" for sec, kv in selected.items() for key, v in kv.items())
            out[dataset] += ["", f"Search-selected configuration: {sel}.", "",
                             f"Search ({args.search_configs} random configurations x {args.search_seeds} seeds for "
                             f"{args.search_steps} steps, the best third for {args.steps}; medians over seeds):", "",
                             *search_lines]
    return out


def run_digits(log: RunLog, args, cache: str) -> list[str]:
    lines = [f"### digits (8x8, {args.digits_seeds} seeds, {args.digits_steps} generator steps, 1,000 samples)", "",
             "| family | fd_own | kd_own | fd_own floor | kd_own floor | class coverage | diverged | s / run |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for family in DIGITS_FAMILIES:
        print(f"== digits: {family}", flush=True)
        recs = [log.get_or_run(merge(DIGITS_BASE, {"model": {"family": family}, "train": {"seed": s}}), f"digits {family}",
                               args.digits_steps, cache) for s in range(args.digits_seeds)]
        ok = [r["scores"] for r in recs if not r["diverged"]]
        if not ok:
            lines.append(f"| {family} | - | - | - | - | - | {len(recs)}/{len(recs)} | |")
            continue
        lines.append(
            f"| {family} | {mean_se([s['fd_own'] for s in ok], 2)} | {mean_se([s['kd_own'] for s in ok], 3)} | "
            f"{ok[0]['fd_own_floor']:.2f} | {ok[0]['kd_own_floor']:.3f} | {mean_se([s['class_coverage'] for s in ok], 2)} | "
            f"{sum(r['diverged'] for r in recs)}/{len(recs)} | {statistics.fmean(r['seconds'] for r in recs):.0f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=lambda s: [d for d in s.split(",") if d], default=["ring8", "grid25"])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--wgan-gp-seeds", type=int, default=10, help="seeds of the wgan-gp row (5 critic steps + GP: ~10x a gan run)")
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--search-configs", type=int, default=18, help="0: no search, the protocol rows only")
    parser.add_argument("--search-seeds", type=int, default=3, help="2 let lucky draws win (docs/results.md)")
    parser.add_argument("--search-steps", type=int, default=2000)
    parser.add_argument("--long-steps", type=int, default=0, help="also train the selected configuration this long")
    parser.add_argument("--long-seeds", type=int, default=3)
    parser.add_argument("--digits-seeds", type=int, default=3)
    parser.add_argument("--digits-steps", type=int, default=1500)
    parser.add_argument("--skip-digits", action="store_true")
    parser.add_argument("--log", type=Path, default=Path("pacgan-protocol.jsonl"))
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--cache", default=None, help="data/metric cache (default: GANFORGE_CACHE or ~/.cache/ganforge)")
    parser.add_argument("--update", type=Path,
                        help="rewrite this markdown file's `pacgan_protocol DATASET` blocks (and `digits`)")
    parser.add_argument("--check", type=Path, help="train nothing; exit 1 if any of this file's blocks differs")
    args = parser.parse_args()
    torch.set_num_threads(1)

    log = RunLog(args.log, train_missing=not args.check)
    t0 = time.perf_counter()
    tables = run_mixtures(log, args, args.cache)
    if not args.skip_digits:
        tables["digits"] = run_digits(log, args, args.cache)
    if args.update or args.check:  # the tables without their headings: the doc says how they were made
        return update_or_check(args.update or args.check, "pacgan_protocol",
                               {name: lines[2:] for name, lines in tables.items()}, check=bool(args.check),
                               source=str(args.log))
    lines = [line for table in tables.values() for line in [*table, ""]]
    lines.append(f"(total wall time of this invocation: {time.perf_counter() - t0:.0f} s; runs reused from {args.log} "
                 "cost nothing)")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
