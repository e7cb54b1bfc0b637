"""How fast a 100-trial search report opens in a browser, and how big it is.

Builds a synthetic search (100 trials of 20 evaluations with every score and diagnostic a digits search reports,
mixed statuses, sample grids at every evaluation) through the report's own code path (ReportData -> render_page),
writes it, and opens it in headless Chromium several times. Load time is read from the page itself (navigation start
to the load event, performance.now()); the wall time of a Chromium run on the report is compared with one on an empty
page in the same run, so browser start-up cancels out.

    .venv/bin/python bench/report_open.py [--trials 100] [--repeats 5] [--out /tmp/report-100.html]
"""
from __future__ import annotations

import argparse
import io
import math
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from orchestrator.report.data import ReportData, TrialRecord
from orchestrator.report.page import MAX_BYTES, render_page
from trainers.metrics.grid import paint_image_grid

SCORES = {"fd_own": ("min", 0.8), "kd_own": ("min", 0.001), "precision": ("max", 0.8), "recall": ("max", 0.8),
          "coverage": ("max", 0.95), "class_coverage": ("max", 1.0)}


def grid_png(rng: random.Random, quality: float) -> bytes:
    """A 4x4 grid of 8x8 'digits': noise that smooths towards blobs as quality rises (compresses like real grids)."""
    g = torch.Generator().manual_seed(rng.randrange(1 << 30))
    x = torch.rand(16, 1, 8, 8, generator=g) * 2 - 1
    x = torch.nn.functional.avg_pool2d(x, 3, 1, 1) * (1 + 3 * quality)
    buffer = io.BytesIO()
    paint_image_grid(x.clamp(-1, 1)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def synthetic(trials: int, evaluations: int = 20, seed: int = 0) -> ReportData:
    rng = random.Random(seed)
    records = []
    for i in range(trials):
        lr_g, lr_d, beta1 = 10 ** rng.uniform(-4, -3), 10 ** rng.uniform(-4, -3), rng.choice([0.0, 0.5])
        loss = rng.choice([["ns", 1], ["hinge", 1], ["wgan-gp", 3]])
        skill = rng.random()
        status = rng.choices(["done", "stopped", "diverged", "error"], [0.3, 0.55, 0.1, 0.05])[0]
        length = evaluations if status == "done" else rng.randint(1, evaluations - 1)
        history = []
        for e in range(1, length + 1):
            progress = e / evaluations
            fid = 0.8 + 60 * math.exp(-4 * progress * (0.3 + skill)) + rng.gauss(0, 0.3)
            row = {"step": 300.0 * e, "fd_own": fid, "kd_own": fid / 800, "precision": 0.5 + 0.4 * skill * progress,
                   "recall": 0.3 + 0.5 * skill * progress, "coverage": 0.4 + 0.5 * progress * skill,
                   "class_coverage": min(1.0, 0.5 + progress), "d_real_acc": 0.6 + 0.3 * rng.random(),
                   "d_fake_acc": 0.6 + 0.3 * rng.random(), "grad_norm_g": rng.uniform(0.1, 5),
                   "grad_norm_d": rng.uniform(0.1, 5), "sn_max_d": rng.uniform(1, 20), "diversity_ratio": 0.9,
                   "collapsed": float(rng.random() < 0.05), "loss_g": rng.uniform(0, 3), "loss_d": rng.uniform(0, 3),
                   "timestamp": 1.7e9 + 10 * e, "time_total_s": 10.0 * e, "diverged": 0.0}
            row.update({f"{k}_floor": v for k, (_, v) in SCORES.items()})
            history.append(row)
        value = None if status in ("diverged", "error") else min(r["fd_own"] for r in history)
        reason = {"done": "ran to the end", "stopped": f"stopped early by ASHA after {length} evaluations",
                  "diverged": "diverged: loss_d is NaN", "error": "failed: RuntimeError: synthetic"}[status]
        records.append(TrialRecord(
            trial_id=f"bench_{i:05d}", status=status, reason=reason,
            params={"train.lr_g": lr_g, "train.lr_d": lr_d, "train.beta1": beta1, "train.loss,train.n_critic": loss},
            value=value, iterations=length, step=300 * length, history=history,
            scores=dict(history[-1]), configuration=str(i),
            grids=[(int(r["step"]), grid_png(rng, skill * e / evaluations)) for e, r in enumerate(history, 1)]))
    records.sort(key=lambda t: (t.value is None, t.value or 0))
    floors = {f"{k}_floor": v for k, (_, v) in SCORES.items()}
    return ReportData(
        name="bench-100", metric="fd_own", mode="min", trials=records, champion=records[0].trial_id,
        search={"algorithm": "random", "scheduler": "asha", "num_samples": trials, "seeds": 1, "score": "best",
                "asha": {"grace_period": 1, "reduction_factor": 3}},
        space={"train.lr_g": "loguniform", "train.lr_d": "loguniform", "train.beta1": "choice",
               "train.loss,train.n_critic": "choice"},
        floors=floors, dataset={"uri": "builtin:digits", "name": "digits", "rows": 1797, "kind": "image",
                                "checksum": "0" * 64},
        eval_samples=1000, eval_every=300, steps=300 * evaluations, started_at=1.7e9, ended_at=1.7e9 + 3600,
        job_yaml="name: bench-100\n", ganforge_version="bench", built_at=time.time())


def open_once(chromium: str, page: Path) -> tuple[float, float]:
    """(wall seconds of a headless Chromium run that loads `page` and dumps its DOM, the page's own load ms)."""
    start = time.perf_counter()
    out = subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    wall = time.perf_counter() - start
    marker = out.split('data-loaded-ms="', 1)
    return wall, float(marker[1].split('"', 1)[0]) if len(marker) > 1 else math.nan


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "ganforge-report-bench.html")
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if not chromium:
        print("chromium not found: run `make chromium`", file=sys.stderr)
        return 2
    data = synthetic(args.trials)
    start = time.perf_counter()
    html = render_page(data)
    build_s = time.perf_counter() - start
    args.out.write_text(html)
    blank = args.out.with_name("ganforge-blank.html")
    blank.write_text("<!doctype html><html><body></body></html>")
    walls, loads, blanks = [], [], []
    for _ in range(args.repeats):  # interleaved, so load on the machine hits both alike
        blanks.append(open_once(chromium, blank)[0])
        wall, load_ms = open_once(chromium, args.out)
        walls.append(wall)
        loads.append(load_ms)
    size = len(html.encode())
    print(f"report: {args.out} ({size / 2**20:.2f} MiB, cap {MAX_BYTES / 2**20:.2f} MiB), "
          f"{html.count('data:image/png')} grids embedded")
    print(f"trials={args.trials} size_mib={size / 2**20:.2f} cap_mib={MAX_BYTES / 2**20:.2f} build_s={build_s:.2f} "
          f"load_ms_median={statistics.median(loads):.0f} load_ms_max={max(loads):.0f} "
          f"chromium_wall_s={statistics.median(walls):.2f} blank_wall_s={statistics.median(blanks):.2f} "
          f"open_overhead_s={statistics.median(w - b for w, b in zip(walls, blanks)):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
