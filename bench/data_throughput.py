"""Data throughput: ganforge's Arrow reader on local disk and on S3, against Ray Data and a download-then-read loop.

Synthetic 32x32x3 uint8 images (random pixels, unlabelled) are imported once per scale with `ganforge`'s importer, copied
to a moto S3 server running in its own process on 127.0.0.1, then read once, start to finish, by each case in a
fresh subprocess (so its peak RSS is its own):

  local    ganforge BatchStream over the local Parquet copy
  s3       ganforge BatchStream over s3:// (moto on loopback)
  raydata  ray.data.read_parquet(s3://...) + iter_torch_batches, same S3 data, same batch size
  boto3    boto3 get_object of every shard + pq.read_table, then batches sliced from the table

Every case hands out batches of `--batch-size` as float32 NCHW in [-1, 1] (what the trainer consumes), one pass
over all images. `img/s` is end to end: images over the seconds from opening the data set to the last batch (a
reader that prefetches during a slow start cannot look faster than it is); `steady` is the rate after the first
batch. `first_batch_s` is from opening the data set to holding the first batch (Ray's `ray.init` is excluded, which
flatters Ray). The final line compares end-to-end rates:

  s3_vs_local=<s3/local img/s at 1x> vs_raydata=<s3/raydata img/s at 1x> rss_10x_vs_1x=<s3 peak RSS 10x / 1x>
  first_batch_s=<s3 at 1x>

At the smallest scale every case runs `--repeats` times, interleaved, and the medians are reported (the machine is
shared and noisy); larger scales run once.

Usage:  RAY_AUTH_MODE=disabled .venv/bin/python bench/data_throughput.py [--images 50000] [--scales 1,10]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orchestrator.stack import free_port  # noqa: E402

BUCKET = "ganforge-bench"
CASES = ("local", "s3", "raydata", "boto3")
RESULT_TAG = "RESULT "


# ---------------------------------------------------------------------------------------------------- cases


def _peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _drain(batches, to_model) -> tuple[int, float, float]:
    """Consume an iterator of batches; (images, seconds to first batch, seconds after it)."""
    start = time.perf_counter()
    n, first = 0, None
    for x in batches:
        x = to_model(x)
        n += len(x)
        if first is None:
            first = time.perf_counter()
    end = time.perf_counter()
    return n, first - start, end - first


def case_ganforge(uri: str, images: int, batch_size: int, readahead: int) -> dict:
    from trainers.data import open_dataset

    def batches():
        ds = open_dataset(uri)
        with ds.stream(batch_size=batch_size, seed=0, readahead=readahead) as stream:
            for _ in range(images // batch_size):
                yield stream.next_batch()[0]  # already float32 NCHW in [-1, 1]

    return _result(*_drain(batches(), lambda x: x))


def case_raydata(uri: str, images: int, batch_size: int, readahead: int) -> dict:
    import logging

    import ray
    import torch

    from trainers.data.fs import s3_filesystem

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False

    def batches():
        ds = ray.data.read_parquet(uri.removeprefix("s3://"), filesystem=s3_filesystem())
        for batch in ds.iter_torch_batches(batch_size=batch_size, drop_last=True):
            yield batch["image"]

    def to_model(x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2).to(torch.float32).div_(127.5).sub_(1.0)

    result = _result(*_drain(batches(), to_model))
    ray.shutdown()
    return result


def case_boto3(uri: str, images: int, batch_size: int, readahead: int) -> dict:
    import boto3
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    bucket, prefix = uri.removeprefix("s3://").split("/", 1)

    def batches():
        client = boto3.client("s3")
        manifest = json.loads(client.get_object(Bucket=bucket, Key=f"{prefix}/manifest.json")["Body"].read())
        tables = []
        for shard in manifest["shards"]:
            body = client.get_object(Bucket=bucket, Key=f"{prefix}/{shard['path']}")["Body"].read()
            tables.append(pq.read_table(pa.BufferReader(body)))
            del body
        column = pa.concat_tables(tables).column("image").combine_chunks()
        array = column.storage.flatten().to_numpy(zero_copy_only=False).reshape(len(column), 32, 32, 3)
        x = torch.from_numpy(array)
        for i in range(0, (len(x) // batch_size) * batch_size, batch_size):
            yield x[i : i + batch_size]

    def to_model(x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2).to(torch.float32).div_(127.5).sub_(1.0)

    return _result(*_drain(batches(), to_model))


def _result(n: int, first_s: float, rest_s: float) -> dict:
    return {
        "images": n,
        "first_batch_s": round(first_s, 3),
        "img_per_s": round(n / max(first_s + rest_s, 1e-9)),
        "steady_img_per_s": round((n - 1) / max(rest_s, 1e-9)),
        "wall_s": round(first_s + rest_s, 2),
        "peak_rss_mb": round(_peak_rss_mb()),
    }


CASE_FUNCTIONS = {"local": case_ganforge, "s3": case_ganforge, "raydata": case_raydata, "boto3": case_boto3}


# ---------------------------------------------------------------------------------------------------- set-up


def start_moto(port: int) -> subprocess.Popen:
    code = (
        "import logging, os, time; logging.getLogger('werkzeug').setLevel(logging.ERROR);"
        "from moto.server import ThreadedMotoServer;"
        f"s = ThreadedMotoServer(ip_address='127.0.0.1', port={port}, verbose=False); s.start();"
        f"parent = {os.getpid()}\n"
        "while os.getppid() == parent: time.sleep(1)"  # never outlive the benchmark
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("moto server did not start")


def make_images(path: Path, n: int, seed: int = 0) -> None:
    """n random 32x32x3 uint8 images as a .npy file, written in chunks to bound memory."""
    import numpy as np

    rng = np.random.default_rng(seed)
    images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, 32, 32, 3))
    for start in range(0, n, 50_000):
        stop = min(n, start + 50_000)
        images[start:stop] = rng.integers(0, 256, (stop - start, 32, 32, 3), dtype=np.uint8)
    images.flush()
    del images


def prepare(workdir: Path, scale: int, images: int) -> tuple[str, str, dict]:
    import pyarrow.fs as pafs

    from trainers.data import import_dataset
    from trainers.data.fs import s3_filesystem

    n = images * scale
    npy = workdir / f"images-{scale}x.npy"
    local = workdir / f"local-{scale}x"
    t0 = time.perf_counter()
    make_images(npy, n, seed=scale)
    manifest = import_dataset(str(npy), str(local), overwrite=True)
    npy.unlink()
    t1 = time.perf_counter()
    remote = f"s3://{BUCKET}/images-{scale}x"
    pafs.copy_files(str(local), remote.removeprefix("s3://"), destination_filesystem=s3_filesystem(), use_threads=True)
    t2 = time.perf_counter()
    info = {
        "images": n,
        "shards": len(manifest.shards),
        "bytes": sum(s.bytes for s in manifest.shards),
        "import_s": round(t1 - t0, 1),
        "upload_s": round(t2 - t1, 1),
    }
    return str(local), remote, info


def run_case(case: str, uri: str, images: int, args: argparse.Namespace, env: dict) -> dict:
    cmd = [
        sys.executable, __file__, "--run-case", case, "--uri", uri, "--images", str(images),
        "--batch-size", str(args.batch_size), "--readahead", str(args.readahead),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.case_timeout)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=50_000, help="images at 1x (default 50,000)")
    parser.add_argument("--scales", default="1,10", help="comma-separated multiples of --images (default 1,10)")
    parser.add_argument("--cases", default=",".join(CASES), help=f"subset of {','.join(CASES)}")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--readahead", type=int, default=2)
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a temp folder, removed afterwards)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of all cases at the smallest scale (median kept); 1 at larger scales")
    parser.add_argument("--case-timeout", type=int, default=900)
    parser.add_argument("--run-case", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--uri", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.run_case:  # child: one measurement, one JSON line
        result = CASE_FUNCTIONS[args.run_case](args.uri, args.images, args.batch_size, args.readahead)
        print(RESULT_TAG + json.dumps(result), flush=True)
        return 0

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up below when killed
    scales = [int(s) for s in args.scales.split(",")]
    cases = [c for c in args.cases.split(",") if c]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="ganforge-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    moto = start_moto(port)
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        GANFORGE_CACHE=str(workdir / "cache"),
    )
    os.environ.pop("AWS_ENDPOINT_URL_S3", None)
    env = dict(os.environ)
    results: dict[tuple[int, str], dict] = {}
    try:
        import boto3

        boto3.client("s3").create_bucket(Bucket=BUCKET)
        print(f"# {os.cpu_count()} CPUs; batch {args.batch_size}; readahead {args.readahead}; moto S3 in its own process", flush=True)
        for scale in scales:
            local, remote, info = prepare(workdir, scale, args.images)
            print(f"# {scale}x: {info['images']:,} images, {info['shards']} shards, {info['bytes'] / 1e6:,.0f} MB "
                  f"(import {info['import_s']} s, upload {info['upload_s']} s)", flush=True)
            # Rounds interleave the cases, so load from other processes on the machine hits them alike.
            rounds = args.repeats if scale == min(scales) else 1
            runs: dict[str, list[dict]] = {case: [] for case in cases}
            for _ in range(rounds):
                for case in cases:
                    runs[case].append(run_case(case, local if case == "local" else remote, info["images"], args, env))
            for case in cases:
                results[(scale, case)] = r = median_result(runs[case])
                if "error" in r:
                    print(f"{scale:>3}x {case:<8} ERROR {r['error']}", flush=True)
                else:
                    print(f"{scale:>3}x {case:<8} {r['img_per_s']:>9,} img/s  steady {r['steady_img_per_s']:>9,}  "
                          f"first batch {r['first_batch_s']:>7.3f} s  peak RSS {r['peak_rss_mb']:>6,} MB  "
                          f"wall {r['wall_s']:>7.1f} s  ({len(runs[case])} run{'s' if len(runs[case]) > 1 else ''})", flush=True)
            shutil.rmtree(local, ignore_errors=True)
    finally:
        moto.kill()
        moto.wait()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    print(summary(results, scales))
    return 0


def median_result(runs: list[dict]) -> dict:
    """Median of each timing over the rounds; the largest peak RSS."""
    good = [r for r in runs if "error" not in r]
    if not good:
        return runs[-1]
    out = {k: statistics.median(r[k] for r in good) for k in ("img_per_s", "steady_img_per_s", "first_batch_s", "wall_s")}
    out["img_per_s"], out["steady_img_per_s"] = round(out["img_per_s"]), round(out["steady_img_per_s"])
    out["first_batch_s"] = round(out["first_batch_s"], 3)
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in good)
    out["images"] = good[0]["images"]
    return out


def summary(results: dict, scales: list[int]) -> str:
    def get(scale: int, case: str, key: str):
        r = results.get((scale, case), {})
        return r.get(key)

    def ratio(a, b) -> str:
        return f"{a / b:.2f}" if a and b else "n/a"

    lo, hi = min(scales), max(scales)
    return (
        f"s3_vs_local={ratio(get(lo, 's3', 'img_per_s'), get(lo, 'local', 'img_per_s'))} "
        f"vs_raydata={ratio(get(lo, 's3', 'img_per_s'), get(lo, 'raydata', 'img_per_s'))} "
        f"rss_10x_vs_1x={ratio(get(hi, 's3', 'peak_rss_mb'), get(lo, 's3', 'peak_rss_mb')) if hi != lo else 'n/a'} "
        f"first_batch_s={get(lo, 's3', 'first_batch_s') if get(lo, 's3', 'first_batch_s') is not None else 'n/a'}"
    )


if __name__ == "__main__":
    sys.exit(main())
