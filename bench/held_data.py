"""What holding a data set in memory (`data.resident_mb`) costs up front and saves per epoch, on the CPU alone.

Synthetic 32x32x3 uint8 images are imported once; then, in alternating rounds, one stream of each kind serves three
epochs of batches (float32 in [-1, 1], what the trainer takes): `streamed` reads and decodes Parquet row groups as it
goes, `held` reads the whole set at its first batch and gathers windows from memory afterwards. No training: this is
the data path alone (on a GPU the held set also skips the host-to-device copies; see bench/gpu_check.py).

    .venv/bin/python bench/held_data.py [--images 50000] [--rounds 2] [--s3] [--threads 1]

`--threads N` gives the process N torch threads, as a trial with `resources.cpus_per_trial: N` gets; row groups
are then read on up to min(4, N) threads. `--s3` imports the images to a moto S3 server started in this process on 127.0.0.1 and reads them from there.

Final line: held_first_batch_s=… streamed_first_batch_s=… later_epochs_speedup=<streamed / held seconds for
epochs 2-3, median over rounds>
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from trainers.data import import_dataset, open_dataset

KINDS = {"streamed": 0, "held": 2**40}  # resident_bytes


def three_epochs(ds, resident_bytes: int, batch: int) -> tuple[float, float, float]:
    """Seconds to the first batch, to the end of epoch 1, and for epochs 2-3."""
    per_epoch = ds.info.num_rows // batch
    t0 = time.perf_counter()
    with ds.stream(batch_size=batch, seed=0, resident_bytes=resident_bytes) as stream:
        stream.next_batch()
        first = time.perf_counter() - t0
        for _ in range(per_epoch - 1):
            stream.next_batch()
        epoch1 = time.perf_counter() - t0
        for _ in range(2 * per_epoch):
            stream.next_batch()
        later = time.perf_counter() - t0 - epoch1
    return first, epoch1, later


@contextlib.contextmanager
def s3_prefix():
    """s3://gf-bench/ds on a moto server on loopback (the environment points boto3 and pyarrow at it)."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update({"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "bench",
                       "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"})
    boto3.client("s3").create_bucket(Bucket="gf-bench")
    try:
        yield "s3://gf-bench/ds"
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--s3", action="store_true", help="read from a moto S3 server on loopback")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a trial's cpus_per_trial)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp, (s3_prefix() if args.s3 else contextlib.nullcontext()) as remote:
        images = np.random.default_rng(0).integers(0, 256, (args.images, 32, 32, 3), dtype=np.uint8)
        np.save(Path(tmp) / "images.npy", images)
        uri = remote or str(Path(tmp) / "ds")
        import_dataset(str(Path(tmp) / "images.npy"), uri)
        ds = open_dataset(uri)
        print(f"{args.images} images 32x32x3 in {len(ds.manifest.shards)} shards ({'S3' if remote else 'local'}), "
              f"{ds.decoded_bytes / 2**20:.0f} MiB decoded, batch {args.batch}, {args.threads} thread(s)")
        runs: dict[str, list[tuple[float, float, float]]] = {kind: [] for kind in KINDS}
        for _ in range(args.rounds):
            for kind, resident_bytes in KINDS.items():
                first, epoch1, later = three_epochs(ds, resident_bytes, args.batch)
                runs[kind].append((first, epoch1, later))
                print(f"{kind:9s} first batch {first:.2f} s, epoch 1 {epoch1:.2f} s, epochs 2-3 {later:.2f} s")
    first = {kind: statistics.median(r[0] for r in rs) for kind, rs in runs.items()}
    speedup = statistics.median(s[2] / h[2] for s, h in zip(runs["streamed"], runs["held"]))
    print(f"held_first_batch_s={first['held']:.2f} streamed_first_batch_s={first['streamed']:.2f} "
          f"later_epochs_speedup={speedup:.1f}")


if __name__ == "__main__":
    main()
