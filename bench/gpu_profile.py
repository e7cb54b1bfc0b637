"""Where a GPU training step's time goes: cProfile of `GANTrainer.train_steps` (DCGAN, 32x32 blobs, batch 256).

    python bench/gpu_profile.py [--steps 100] [--batch 256] [--family dcgan] [--data held|streamed]
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.gpu_check import blobs_uri, config  # noqa: E402
from trainers.loop import GANTrainer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--family", default="dcgan")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--data", default="held", choices=["held", "streamed"])
    args = parser.parse_args()
    work = Path(os.environ.get("GPU_CHECK_WORK", "/tmp/gcw"))
    work.mkdir(parents=True, exist_ok=True)
    uri = blobs_uri(work)
    trainer = GANTrainer(config(uri, args.family, args.batch, "fp32", False, args.device, args.data), cache_dir=str(work / "cache"))
    trainer.train_steps(20)
    profiler = cProfile.Profile()
    profiler.enable()
    trainer.train_steps(args.steps)
    if args.device == "cuda":
        torch.cuda.synchronize()
    profiler.disable()
    stats = pstats.Stats(profiler)
    print(f"total {stats.total_tt:.3f} s for {args.steps} steps")
    stats.sort_stats("tottime").print_stats(20)
    trainer.close()


if __name__ == "__main__":
    main()
