"""Translation against its trivial baselines on held-out data (docs/results.md, "Image-to-image translation").

Paired (builtin:digits-edges, edge map -> digit, 297 held-out pairs): the identity mapping, an L1-only regression
(the same U-Net trained by L1 alone: pix2pix without its discriminator) and pix2pix, scored by L1, PSNR, SSIM and
FD in the digits' feature space. Unpaired (builtin:digits-inverted, digit <-> inverted digit, trained on unpaired
halves, 297 aligned held-out rows): the identity mapping and CycleGAN, scored by FD both ways, the cycle error and
the L1 error against the known mapping (truth_l1). Every number is the mean over --seeds training seeds (with the
standard deviation); the scores are the suites' of trainers/metrics/translation.py, the same a search ranks by.

The selected configuration of each family is its job's champion, read from the job's frozen outcome
(`--outcome-pix2pix`/`--outcome-cyclegan`, made by bench/job_outcome.py), plus any `--pix2pix`/`--cyclegan`
KEY=VALUE overrides; when it differs from the job YAML, the family defaults (the job YAML as it is) are trained too.
Every finished run is appended to `--log` (bench/pacgan_protocol.py's RunLog) and reused by a rerun; `--update DOC`
rewrites DOC's `translation_baselines pix2pix|cyclegan` blocks, `--check DOC` trains nothing and exits 1 if they differ:

    nice -n 5 .venv/bin/python bench/translation_baselines.py --log bench/results/translation.jsonl \
        --outcome-pix2pix bench/results/digits-edges-pix2pix-job.json \
        --outcome-cyclegan bench/results/digits-cyclegan-job.json --update docs/results.md
    python bench/translation_baselines.py --only pix2pix --pix2pix train.lambda_l1=30 --log /tmp/t.jsonl
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generated_blocks import update_or_check  # noqa: E402
from pacgan_protocol import RunLog, flat_to_nested, merge  # noqa: E402
from trainers.config import GANConfig  # noqa: E402
from trainers.translation.trainer import TranslationTrainer  # noqa: E402

JOBS = {"pix2pix": ROOT / "jobs" / "digits-edges-pix2pix.yaml", "cyclegan": ROOT / "jobs" / "digits-cyclegan.yaml"}
SECTIONS = ("data", "model", "train")
# Each table: its first header cell, (heading, score, note after its floor) per column, its identity row's label,
# and the family defaults the unchanged job trains with.
TABLES: dict[str, dict[str, Any]] = {
    "pix2pix": {"title": "paired: `builtin:digits-edges` (edge map → digit)",
                "columns": [("L1 ↓", "l1", ""), ("PSNR ↑", "psnr", ""), ("SSIM ↑", "ssim", ""),
                            ("FD ↓", "fd_own", "")],
                "identity": "identity (the edge map as the digit)", "defaults": "λ_L1 100, `lr_g` 2e-4"},
    "cyclegan": {"title": "unpaired: `builtin:digits-inverted` (digit ↔ inverted digit)",
                 "columns": [("FD ↓", "fd_own", ""), ("FD A→B", "fd_own_ab", " (B)"),
                             ("FD B→A", "fd_own_ba", " (A)"),  # the floors of the target domains
                             ("cycle error ↓", "cycle_error", ""), ("truth L1 ↓", "truth_l1", "")],
                 "identity": "identity", "defaults": "λ_cycle 10, λ_identity 0.5, `lr_g` 2e-4"},
}
NAMES = {"pix2pix": "pix2pix", "cyclegan": "CycleGAN"}


def run_spec(family: str, overrides: dict[str, Any], seed: int, steps: int, objective: str) -> dict[str, Any]:
    """What one run trains: the job's data, model and train sections with the overrides, seed and steps, and its
    objective ('adversarial', or 'l1-only': the generator updated by L1 alone, no discriminator)."""
    job = yaml.safe_load(JOBS[family].read_text())
    spec = merge({k: job[k] for k in SECTIONS}, flat_to_nested(overrides),
                 {"train": {"steps": steps, "eval_every": steps, "seed": seed, "device": "cpu"}})
    return {**spec, "objective": objective}


def train_and_score(spec: dict[str, Any], cache: str | None) -> dict[str, Any]:
    """Train one translator as `spec` says and score it on the held-out rows."""
    cfg = GANConfig.model_validate({k: spec[k] for k in SECTIONS})
    t0 = time.perf_counter()
    trainer = TranslationTrainer(cfg, cache_dir=cache)
    try:
        if spec["objective"] == "adversarial":
            trainer.train_steps(cfg.train.steps)
        else:
            regress(trainer, cfg.train.steps)
        scores = trainer.evaluate()
    finally:
        trainer.close()
    return {"scores": {k: v for k, v in scores.items() if isinstance(v, (int, float))},
            "seconds": time.perf_counter() - t0}


def regress(trainer: TranslationTrainer, steps: int) -> None:
    trainer.G.train()
    for _ in range(steps):
        trainer._decay_lr()  # the same lr schedule as pix2pix
        a, b = trainer._batch()
        loss = torch.nn.functional.l1_loss(trainer.G(a, "AtoB"), b)
        trainer.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        trainer.opt_g.step()
        trainer.step += 1


def seed_runs(log: RunLog, family: str, overrides: dict[str, Any], objective: str, label: str, args) -> list[dict]:
    """The scores of seeds 0..N-1, from the log or trained (and logged)."""
    specs = [run_spec(family, overrides, seed, args.steps, objective) for seed in range(args.seeds)]
    return [log.get_or_train(spec, label, args.steps, None,
                             lambda spec=spec: train_and_score(spec, args.cache))["scores"] for spec in specs]


def mean_sd(values: list[float]) -> str:
    spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
    return f"{statistics.fmean(values):.3f}{spread}"


def floor_cell(scores: dict[str, float], key: str, note: str) -> str:
    """A score's ideal (0 or 1, exact) or measured real-vs-real floor; empty when the suite states none (PSNR)."""
    value = scores.get(f"{key}_floor")
    if value is None:
        return ""
    return (f"{value:g}" if value == int(value) else f"{value:.3f}") + note


def family_table(log: RunLog, family: str, selected: dict[str, Any], selected_name: str, args) -> list[str]:
    """The table's lines: header, separator, identity, the selection (pix2pix: its L1-only regression first), the
    family defaults when the selection differs from them, the real-vs-real floor."""
    t, name = TABLES[family], NAMES[family]
    variants = [("selected", selected)] + ([("defaults", {})] if selected else [])
    objectives = ["l1-only", "adversarial"] if family == "pix2pix" else ["adversarial"]
    rows = []
    for variant, overrides in variants:
        for i, objective in enumerate(objectives):
            what = "L1-only regression" if objective == "l1-only" else name
            if variant == "selected":
                label = "L1-only regression (same U-Net)" if objective == "l1-only" else selected_name
            else:
                label = "*family defaults*" + (f" ({t['defaults']})" if i == 0 else "") + f": {what}"
            rows.append((label, seed_runs(log, family, overrides, objective, f"{family} {variant}, {what}", args)))
    first = next(runs for label, runs in rows if label == selected_name)[0]  # identity and floors: any run's
    keys = [key for _, key, _ in t["columns"]]
    lines = [row([t["title"], *(h for h, _, _ in t["columns"])]), "| --- |" + " ---: |" * len(keys),
             row([t["identity"], *(f"{first[f'{k}_identity']:.3f}" for k in keys)])]
    lines += [row([label, *(mean_sd([r[k] for r in runs]) for k in keys)]) for label, runs in rows]
    lines.append(row(["real-vs-real floor", *(floor_cell(first, k, n) for _, k, n in t["columns"])]))
    return lines


def row(cells: list[str]) -> str:
    return "|" + "".join(f" {c} |" if c else " |" for c in cells)


def selection(family: str, outcome: Path | None, overrides: list[str]) -> tuple[dict[str, Any], str]:
    """The selected configuration (flat spec paths) and its row label: the outcome's champion, then KEY=VALUEs."""
    config: dict[str, Any] = {}
    parts = []
    if outcome:
        out = json.loads(outcome.read_text())
        uri = yaml.safe_load(JOBS[family].read_text())["data"]["uri"]
        if out["data"]["uri"] != uri:
            raise SystemExit(f"{outcome}: a job on {out['data']['uri']}, not {family}'s {uri}")
        config.update(out["champion"]["configuration"])
        parts.append("the search's selection")
    for item in overrides:
        path, value = item.split("=", 1)
        config[path] = yaml.safe_load(value)
        parts.append(item)
    return config, ", ".join([NAMES[family], *parts])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=600, help="generator steps per training (the jobs' train.steps)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--outcome-pix2pix", type=Path, help="frozen outcome of jobs/digits-edges-pix2pix.yaml")
    p.add_argument("--outcome-cyclegan", type=Path, help="frozen outcome of jobs/digits-cyclegan.yaml")
    p.add_argument("--pix2pix", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of the pix2pix job")
    p.add_argument("--cyclegan", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of the CycleGAN job")
    p.add_argument("--only", choices=("pix2pix", "cyclegan"), default=None)
    p.add_argument("--log", type=Path, default=Path("translation-baselines.jsonl"), help="JSONL log of finished runs")
    p.add_argument("--cache", default=None, help="data/metric cache (default: GANFORGE_CACHE or ~/.cache/ganforge)")
    p.add_argument("--update", type=Path, help="rewrite this markdown file's `translation_baselines` blocks")
    p.add_argument("--check", type=Path, help="train nothing; exit 1 if this file's blocks differ from the log's")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    started = time.time()
    log = RunLog(args.log, train_missing=not args.check)
    sections = {}
    for family in ("pix2pix", "cyclegan") if args.only is None else (args.only,):
        selected, name = selection(family, getattr(args, f"outcome_{family}"), getattr(args, family))
        sections[family] = family_table(log, family, selected, name, args)
        shown = ", ".join(f"{k}={v}" for k, v in selected.items()) or "none"
        print(f"\n{family}: {args.steps} steps, seeds 0-{args.seeds - 1}, selected overrides: {shown}\n")
        print("\n".join(sections[family]))
    print(f"\n{time.time() - started:.0f} s on {torch.get_num_threads()} thread(s); runs in {args.log} cost nothing")
    if args.update or args.check:
        return update_or_check(args.update or args.check, "translation_baselines", sections, check=bool(args.check),
                               source=str(args.log))
    return 0


if __name__ == "__main__":
    sys.exit(main())
