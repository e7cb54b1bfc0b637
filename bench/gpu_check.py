"""One short GPU check of the trainers: precision/memory-format speed, packing trials onto one GPU, quality on GPU.

Run on a machine with a CUDA GPU (trainers only: no Ray or MLflow needed there):

    python bench/gpu_check.py --out DIR [--seconds 8] [--pack 1,2,4,8] [--pack-seconds 20]

1. Speed of one training step (`GANTrainer.train_steps`) for DCGAN and the small StyleGAN on 32x32 RGB images,
   batch 256: fp32, bf16 autocast (`train.precision: bf16`), and bf16 + channels_last (`train.channels_last`), each
   with the data set streamed through Arrow (`data.resident_mb: 0`) and held in GPU memory (the default for a data
   set this small).
2. Packing: N trainer processes (DCGAN 32x32, batch 64, bf16: a typical small trial) share the GPU at once, as
   `resources.gpus_per_trial: 1/N` places them; aggregate generator steps/s against one process alone.
3. Quality on GPU: the digits DCGAN of jobs/quickstart.yaml trained in fp32 and in bf16 from the same seed; FID and
   KID against the real-vs-real floor, so bf16 is seen to train as well, not only faster.

The 32x32 images are synthetic (coloured Gaussian blobs, 10 classes by colour: no downloads on that machine),
imported through the normal npz importer into Parquet and streamed through Arrow like any data set. Results go to
stdout as a markdown table and to DIR/gpu_check.json.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainers.config import GANConfig  # noqa: E402
from trainers.loop import GANTrainer  # noqa: E402

BLOBS = 10_000


def make_blobs(path: Path, n: int = BLOBS, size: int = 32, seed: int = 0) -> None:
    """n RGB images of one soft blob each: class = colour (10), position and width random."""
    rng = np.random.default_rng(seed)
    colours = rng.uniform(0.2, 1.0, size=(10, 3))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    labels = rng.integers(0, 10, n)
    cx, cy = rng.uniform(8, size - 8, (2, n)).astype(np.float32)
    sigma = rng.uniform(2.5, 6.0, n).astype(np.float32)
    images = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        blob = np.exp(-((xx - cx[i]) ** 2 + (yy - cy[i]) ** 2) / (2 * sigma[i] ** 2))
        images[i] = (255 * blob[..., None] * colours[labels[i]]).astype(np.uint8)
    np.savez(path, images=images, labels=labels)


def blobs_uri(workdir: Path) -> str:
    from trainers.data.importer import import_dataset

    dest = workdir / "blobs32"
    if not (dest / "manifest.json").exists():
        make_blobs(workdir / "blobs32.npz")
        import_dataset(str(workdir / "blobs32.npz"), str(dest))
    return str(dest)


DATA_PATHS = {"streamed": 0, "held": 512}  # data.resident_mb


def config(uri: str, family: str, batch: int, precision: str, channels_last: bool, device: str,
           data_path: str = "held", **train) -> GANConfig:
    return GANConfig.model_validate({
        "data": {"uri": uri, "batch_size": batch, "resident_mb": DATA_PATHS[data_path]},
        "model": {"family": family, "latent_dim": 64, "width": 64},
        "train": {"ema_decay": 0.0, "precision": precision, "channels_last": channels_last, "device": device,
                  "eval_samples": 1000, **train},
    })


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def step_speed(uri: str, family: str, batch: int, precision: str, channels_last: bool, device: str, seconds: float,
               cache: str, data_path: str) -> float:
    """Generator steps per second (median of timed blocks after a warm-up)."""
    trainer = GANTrainer(config(uri, family, batch, precision, channels_last, device, data_path), cache_dir=cache)
    try:
        trainer.train_steps(10)  # warm-up: cuDNN autotune, allocator, first batches
        _sync(device)
        rates, deadline = [], time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(rates) < 3:
            t0 = time.perf_counter()
            trainer.train_steps(10)
            _sync(device)
            rates.append(10 / (time.perf_counter() - t0))
        return statistics.median(rates)
    finally:
        trainer.close()


def stream_rate(uri: str, batch: int, seconds: float, cache: str) -> float:
    """Batches/s the Arrow stream alone delivers (the ceiling on G steps/s when D takes one real batch a step)."""
    trainer = GANTrainer(config(uri, "dcgan", batch, "fp32", False, "cpu", "streamed"), cache_dir=cache)
    try:
        trainer.stream.next_batch()
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            trainer.stream.next_batch()
            n += 1
        return n / (time.perf_counter() - t0)
    finally:
        trainer.close()


def held_matches_streamed(uri: str, device: str, batches: int = 50) -> bool:
    """Batches held on the device equal the streamed ones bit for bit (same order, same conversion to [-1, 1])."""
    from trainers.data import open_dataset

    ds = open_dataset(uri)
    kw = dict(batch_size=96, seed=3, shuffle_buffer=500)
    with ds.stream(**kw) as streamed, ds.stream(**kw, resident_bytes=2**30, device=device) as held:
        for _ in range(batches):
            (xs, ys), (xh, yh) = streamed.next_batch(), held.next_batch()
            on_device = xh.device.type == torch.device(device).type
            if not (on_device and torch.equal(xs, xh.cpu()) and torch.equal(ys, yh.cpu())):
                return False
    return True


def _packed_worker(uri: str, device: str, seconds: float, cache: str, data_path: str, barrier, results) -> None:
    torch.set_num_threads(1)
    trainer = GANTrainer(config(uri, "dcgan", 64, "bf16", True, device, data_path), cache_dir=cache)
    trainer.train_steps(10)
    _sync(device)
    barrier.wait()
    t0, steps = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        trainer.train_steps(10)
        steps += 10
    _sync(device)
    results.put(steps / (time.perf_counter() - t0))
    trainer.close()


def packed_rate(uri: str, n: int, device: str, seconds: float, cache: str, data_path: str) -> float:
    """Aggregate generator steps/s of n trainer processes sharing the device."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_packed_worker, args=(uri, device, seconds, cache, data_path, barrier, results))
             for _ in range(n)]
    for p in procs:
        p.start()
    rates = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    return sum(rates)


def quality(precision: str, device: str, steps: int, cache: str) -> dict[str, float]:
    cfg = GANConfig.model_validate({
        "data": {"uri": "builtin:digits", "batch_size": 64},
        "model": {"family": "dcgan", "latent_dim": 32, "width": 32},
        "train": {"steps": steps, "eval_every": steps, "eval_samples": 1000, "ema_decay": 0.99, "seed": 0,
                  "lr_g": 4e-4, "lr_d": 2e-4, "precision": precision, "device": device},
    })
    trainer = GANTrainer(cfg, cache_dir=cache)
    try:
        t0 = time.perf_counter()
        trainer.train_steps(steps)
        _sync(device)
        seconds = time.perf_counter() - t0
        scores = trainer.evaluate()
        return {k: float(scores[k]) for k in ("fid", "fid_floor", "kid", "kid_floor") if k in scores} | {"train_s": seconds}
    finally:
        trainer.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--seconds", type=float, default=8.0, help="timed seconds per speed configuration")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--families", default="dcgan,stylegan")
    parser.add_argument("--pack", default="1,2,4,8")
    parser.add_argument("--pack-seconds", type=float, default=20.0)
    parser.add_argument("--quality-steps", type=int, default=1500)
    parser.add_argument("--data-paths", default="streamed,held", help="of " + ", ".join(DATA_PATHS))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(os.environ.get("GPU_CHECK_WORK", out / "work"))
    work.mkdir(exist_ok=True)
    cache = str(work / "cache")
    device = args.device
    report: dict = {"torch": torch.__version__,
                    "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu"}
    print(f"# gpu_check on {report['device']} (torch {report['torch']})", flush=True)
    uri = blobs_uri(work)

    report["held_matches_streamed"] = held_matches_streamed(uri, device)
    print(f"\nbatches held on {device} identical to streamed ones: {report['held_matches_streamed']}", flush=True)
    report["stream_batches_per_s"] = stream_rate(uri, args.batch, args.seconds, cache)
    print(f"\nArrow stream alone: {report['stream_batches_per_s']:.1f} batches/s of {args.batch}", flush=True)
    report["speed"] = []
    paths = args.data_paths.split(",")
    print("\n| family | precision | channels_last | data | G steps/s | img/s (D real) | vs fp32 streamed |\n"
          "|---|---|---|---|---:|---:|---:|")
    for family in args.families.split(","):
        base = None
        for precision, cl in (("fp32", False), ("bf16", False), ("bf16", True)):
            for data_path in paths:
                rate = step_speed(uri, family, args.batch, precision, cl, device, args.seconds, cache, data_path)
                base = base or rate
                row = {"family": family, "precision": precision, "channels_last": cl, "data": data_path,
                       "steps_per_s": rate, "vs_first": rate / base}
                report["speed"].append(row)
                print(f"| {family} | {precision} | {cl} | {data_path} | {rate:.1f} | {rate * args.batch:.0f} | "
                      f"{rate / base:.2f} |", flush=True)

    report["packing"] = []
    print("\n| trials on the GPU | data | aggregate G steps/s | vs 1 trial |\n|---:|---|---:|---:|")
    for data_path in paths:
        single = None
        for n in (int(v) for v in args.pack.split(",")):
            rate = packed_rate(uri, n, device, args.pack_seconds, cache, data_path)
            single = single or rate
            report["packing"].append({"trials": n, "data": data_path, "aggregate_steps_per_s": rate,
                                      "vs_one": rate / single})
            print(f"| {n} | {data_path} | {rate:.1f} | {rate / single:.2f} |", flush=True)

    report["quality"] = {}
    print("\n| digits dcgan | FID | FID floor | KID | KID floor | train s |\n|---|---:|---:|---:|---:|---:|")
    for precision in ("fp32", "bf16"):
        q = quality(precision, device, args.quality_steps, cache)
        report["quality"][precision] = q
        print(f"| {precision} | {q.get('fid', float('nan')):.3f} | {q.get('fid_floor', float('nan')):.3f} | "
              f"{q.get('kid', float('nan')):.4f} | {q.get('kid_floor', float('nan')):.4f} | {q['train_s']:.1f} |", flush=True)

    (out / "gpu_check.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
