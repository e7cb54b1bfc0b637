"""Translation against its trivial baselines on held-out data (docs/results.md, "Image-to-image translation").

Paired (builtin:digits-edges, edge map -> digit, 297 held-out pairs): the identity mapping, an L1-only regression
(the same U-Net trained by L1 alone: pix2pix without its discriminator) and pix2pix, scored by L1, PSNR, SSIM and
FD in the digits' feature space. Unpaired (builtin:digits-inverted, digit <-> inverted digit, trained on unpaired
halves, 297 aligned held-out rows): the identity mapping and CycleGAN, scored by FD both ways, the cycle error and
the L1 error against the known mapping (truth_l1). Every number is the mean over --seeds training seeds (with the
spread); the scores are the suites' of trainers/metrics/translation.py, the same a search ranks by.

    python bench/translation_baselines.py --steps 600 --seeds 3
    python bench/translation_baselines.py --pix2pix train.lambda_l1=30 --cyclegan train.lambda_identity=0
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainers.config import GANConfig  # noqa: E402
from trainers.translation.trainer import TranslationTrainer  # noqa: E402

JOBS = {"pix2pix": ROOT / "jobs" / "digits-edges-pix2pix.yaml", "cyclegan": ROOT / "jobs" / "digits-cyclegan.yaml"}
SHOWN = {"pix2pix": ("l1", "psnr", "ssim", "fd_own"),
         "cyclegan": ("fd_own", "fd_own_ab", "fd_own_ba", "cycle_error", "truth_l1")}


def job_config(family: str, steps: int, seed: int, overrides: list[str]) -> GANConfig:
    """The family's job (data, model, train sections) with `steps`, `seed` and key=value overrides."""
    spec = yaml.safe_load(JOBS[family].read_text())
    cfg = {k: dict(spec[k]) for k in ("data", "model", "train")}
    cfg["train"].update(steps=steps, eval_every=steps, seed=seed, device="cpu")
    for item in overrides:
        path, value = item.split("=", 1)
        section, key = path.split(".", 1)
        cfg[section][key] = yaml.safe_load(value)
    return GANConfig.model_validate(cfg)


def train_and_score(cfg: GANConfig, cache: str | None, adversarial: bool = True) -> dict[str, float]:
    """Train one translator to cfg.train.steps and score it on the held-out rows. `adversarial=False`: the
    L1-only regression baseline: the generator updated by L1 alone (no discriminator)."""
    trainer = TranslationTrainer(cfg, cache_dir=cache)
    try:
        if adversarial:
            trainer.train_steps(cfg.train.steps)
        else:
            regress(trainer, cfg.train.steps)
        return trainer.evaluate()
    finally:
        trainer.close()


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


def summarise(name: str, runs: list[dict[str, float]], keys: tuple[str, ...]) -> str:
    cells = []
    for key in keys:
        values = [r[key] for r in runs]
        spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
        cells.append(f"{statistics.mean(values):.3f}{spread}")
    return f"| {name} | " + " | ".join(cells) + " |"


def table(title: str, keys: tuple[str, ...], rows: list[tuple[str, list[dict[str, float]]]]) -> None:
    print(f"\n{title}\n")
    print("| mapping | " + " | ".join(keys) + " |")
    print("| --- |" + " --- |" * len(keys))
    for name, runs in rows:
        print(summarise(name, runs, keys))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=600, help="generator steps per training (the jobs' train.steps)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--pix2pix", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of the pix2pix job")
    p.add_argument("--cyclegan", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of the CycleGAN job")
    p.add_argument("--only", choices=("pix2pix", "cyclegan"), default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    started = time.time()
    cache = None  # the usual cache ($GANFORGE_CACHE, ~/.cache/ganforge): data sets and feature nets built once
    seeds = range(args.seeds)
    if args.only in (None, "pix2pix"):
        runs: dict[str, list[dict[str, Any]]] = {"pix2pix": [], "l1": []}
        for seed in seeds:
            cfg = job_config("pix2pix", args.steps, seed, args.pix2pix)
            runs["pix2pix"].append(train_and_score(cfg, cache))
            runs["l1"].append(train_and_score(cfg, cache, adversarial=False))
        identity = [{k: r[f"{k}_identity"] for k in SHOWN["pix2pix"]} for r in runs["pix2pix"][:1]]
        table(f"paired: builtin:digits-edges, {args.steps} steps, {args.seeds} seeds, overrides {args.pix2pix or 'none'}",
              SHOWN["pix2pix"], [("identity (A as B)", identity), ("L1-only regression (same U-Net)", runs["l1"]),
                                 ("pix2pix", runs["pix2pix"])])
        print(f"real-vs-real FD floor: {runs['pix2pix'][0]['fd_own_floor']:.3f}")
    if args.only in (None, "cyclegan"):
        cycle = [train_and_score(job_config("cyclegan", args.steps, seed, args.cyclegan), cache) for seed in seeds]
        identity = [{k: cycle[0][f"{k}_identity"] for k in SHOWN["cyclegan"]}]
        table(f"unpaired: builtin:digits-inverted, {args.steps} steps, {args.seeds} seeds, overrides {args.cyclegan or 'none'}",
              SHOWN["cyclegan"], [("identity", identity), ("CycleGAN", cycle)])
        print(f"real-vs-real FD floor: {cycle[0]['fd_own_floor']:.3f}")
    print(f"\n{time.time() - started:.0f} s on {torch.get_num_threads()} thread(s)")


if __name__ == "__main__":
    main()
