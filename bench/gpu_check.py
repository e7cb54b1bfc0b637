"""One short GPU check of the trainers: precision/memory-format speed, packing trials onto one GPU, quality on GPU.

Run on a machine with a CUDA GPU (trainers only: no Ray or MLflow needed there):

    python bench/gpu_check.py --out DIR [--seconds 8] [--pack 1,2,4,8] [--pack-seconds 20]

or, for the packing figure through the path users take (Ray places `ganforge run` trials with
`resources.gpus_per_trial: 1/N` on one GPU; embedded Ray and a SQLite MLflow store in DIR):

    python bench/gpu_check.py --ray --out DIR [--pack 1,2,4,8] [--ray-steps 2000] [--data-paths held]
    python bench/gpu_check.py --ray --device cpu --pack 1,2 --ray-steps 40 --data-paths held   # smoke, no GPU

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


RAY_PACK_JOB = """\
name: pack-{n}
data: {{uri: "{uri}", batch_size: 64, resident_mb: {resident_mb}}}
model: {{family: dcgan, latent_dim: 64, width: 64}}
train: {{steps: {steps}, eval_every: {half}, eval_samples: 1000, ema_decay: 0.0, precision: bf16, channels_last: true,
        device: {device}}}
search: {{scheduler: fifo, num_samples: {n}, space: {{train.seed: {{randint: [0, 100000]}}}}}}
resources: {{cpus_per_trial: {cpus}, gpus_per_trial: {gpus}}}
storage: {{uri: "{work}/ray-pack-{n}-{data_path}"}}
registry: {{enabled: false, tracking_uri: "sqlite:///{work}/ray-pack.db"}}
"""


def ray_packed_rate(uri: str, n: int, device: str, steps: int, work: Path, data_path: str) -> tuple[float, bool]:
    """Aggregate generator steps/s of n trials that Ray placed on one GPU (`gpus_per_trial: 1/n`), the path users
    take: a `ganforge run` search of n trials. Each trial's rate is its second half (between its two reports, after
    model build, data warm-up and the first evaluation); the sum counts only if all n ran at once."""
    import io
    import json as _json

    import ray

    from orchestrator.runner import run_job
    from orchestrator.spec import load_job_text

    cpus = max(0.25, (ray.cluster_resources().get("CPU", 1.0) - 0.5) / n)  # the driver keeps a sliver
    text = RAY_PACK_JOB.format(n=n, uri=uri, resident_mb=DATA_PATHS[data_path], steps=steps, half=steps // 2,
                               device="auto" if device == "cuda" else device, cpus=f"{cpus:.3f}", gpus=1 / n,
                               work=work, data_path=data_path)
    outcome = run_job(load_job_text(text), stream=io.StringIO(), cache_dir=str(work / "cache"))
    rates, spans = [], []
    for trial in outcome.ranking:
        path = Path(outcome.run_path, f"trial_{trial.trial_id}", "result.json")
        first, last = [_json.loads(line) for line in path.read_text().splitlines()][:2]
        rates.append((last["step"] - first["step"]) / (last["reported_at"] - first["reported_at"]))
        spans.append((first["reported_at"], last["reported_at"]))
    # All at once: every trial's timed half overlaps every other's.
    together = len(rates) == n and max(start for start, _ in spans) < min(end for _, end in spans)
    return sum(rates), together


def ray_packing(args, uri: str, work: Path) -> None:
    """--ray: the packing table measured through Ray placement (one GPU; logical on a CPU-only smoke run)."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # A real GPU is detected; `--device cpu` declares one logical GPU so the same placement runs anywhere.
    ray.init(num_gpus=None if args.device == "cuda" else 1, include_dashboard=False, logging_level="WARNING")
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        if gpus != 1:
            raise SystemExit(f"--ray measures one GPU; this machine's Ray sees {gpus:g} (set CUDA_VISIBLE_DEVICES)")
        rows = []
        print("\n| trials per GPU (Ray placement) | gpus_per_trial | data | aggregate G steps/s | vs 1 trial | "
              "all at once |\n|---:|---:|---|---:|---:|---|")
        for data_path in args.data_paths.split(","):
            single = None
            for n in (int(v) for v in args.pack.split(",")):
                rate, together = ray_packed_rate(uri, n, args.device, args.ray_steps, work, data_path)
                single = single or rate
                rows.append({"trials": n, "data": data_path, "aggregate_steps_per_s": rate, "vs_one": rate / single,
                             "all_at_once": together})
                print(f"| {n} | {1 / n:g} | {data_path} | {rate:.1f} | {rate / single:.2f} | {together} |", flush=True)
    finally:
        ray.shutdown()
    (Path(args.out) / "gpu_check_ray.json").write_text(json.dumps({"device": args.device, "packing": rows}, indent=2))
    print(" ".join([f"device={args.device}", *(f"ray_pack_{r['trials']}_{r['data']}_vs_one={r['vs_one']:.2f}"
                                                 for r in rows)]))


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
        return {k: float(scores[k]) for k in ("fd_own", "fd_own_floor", "kd_own", "kd_own_floor") if k in scores} | {"train_s": seconds}
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
    parser.add_argument("--ray", action="store_true",
                        help="only the packing table, through Ray placement (gpus_per_trial 1/N) instead of processes")
    parser.add_argument("--ray-steps", type=int, default=2000, help="generator steps per trial with --ray")
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
    if args.ray:
        return ray_packing(args, uri, work)

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
        print(f"| {precision} | {q.get('fd_own', float('nan')):.3f} | {q.get('fd_own_floor', float('nan')):.3f} | "
              f"{q.get('kd_own', float('nan')):.4f} | {q.get('kd_own_floor', float('nan')):.4f} | {q['train_s']:.1f} |", flush=True)

    (out / "gpu_check.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
