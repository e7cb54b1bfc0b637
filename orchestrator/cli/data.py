"""`ganforge data import SOURCE DEST` and `ganforge data inspect URI`."""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from typing import IO

from orchestrator.errors import DataSourceError


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser("data", help="import and inspect data sets", description="Import and inspect data sets.")
    actions = group.add_subparsers(dest="data_command", metavar="ACTION")
    group.set_defaults(handler=lambda args: _usage(group))

    imp = actions.add_parser(
        "import",
        help="import images or arrays as Parquet shards + manifest (local path, file:// or s3://)",
        description=(
            "Import SOURCE into DEST as Parquet shards plus a manifest. SOURCE is builtin:digits|ring8|grid25, a folder "
            "of PNG/JPEG images (class sub-folders become labels), a .npz/.npy file, an MNIST IDX images file "
            "(gzipped or not) or CIFAR-10 binary batches. Re-running an interrupted import keeps the shards that verify."
        ),
    )
    imp.add_argument("source", help="builtin:NAME, a folder, .npz/.npy, IDX or CIFAR-10 .bin file/folder")
    imp.add_argument("dest", help="where the data set goes: a path, file:// or s3://bucket/prefix")
    imp.add_argument("--shard-rows", type=int, default=None, metavar="N", help="rows per Parquet shard (default: ~16 MiB shards)")
    imp.add_argument("--overwrite", action="store_true", help="replace a data set already at DEST")
    imp.add_argument("--format", dest="fmt", default=None, metavar="NAME", help="source format if it cannot be sniffed (npz, npy, mnist-idx, cifar10-binary, image-folder; two-domain translation folders: pix2pix, cyclegan)")
    imp.set_defaults(handler=_import)

    ins = actions.add_parser("inspect", help="print a data set's manifest summary", description="Print a data set's manifest summary.")
    ins.add_argument("uri", help="builtin:NAME, a path, file:// or s3:// URI")
    ins.add_argument("--grid", metavar="FILE.png", default=None, help="also write a grid of real samples")
    ins.add_argument("-n", "--samples", type=int, default=64, help="samples in the grid (default 64)")
    ins.add_argument("--seed", type=int, default=0, help="which samples go in the grid")
    ins.add_argument("--verify", action="store_true", help="re-hash every shard against the manifest")
    ins.add_argument("--json", action="store_true", help='print {"uri", "num_rows", "checksum", "decoded_bytes", "verified", "manifest"}')
    ins.set_defaults(handler=_inspect)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _import(args: argparse.Namespace) -> int:
    from trainers.data import DataError, import_dataset

    bar = ProgressBar(f"importing {args.source}")
    try:
        manifest = import_dataset(args.source, args.dest, shard_rows=args.shard_rows, overwrite=args.overwrite, fmt=args.fmt, progress=bar.update)
    except DataError as exc:
        raise DataSourceError(str(exc)) from exc
    finally:
        bar.finish()
    print(f"{args.dest}: {manifest.num_rows:,} rows in {len(manifest.shards)} shard(s), checksum {manifest.checksum}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from trainers.data import DataError, open_dataset

    try:
        ds = open_dataset(args.uri)
        if args.json:
            if args.verify:
                from trainers.data.verify import verify_shards

                verify_shards(ds)
            m = ds.manifest
            print(json.dumps({"uri": ds.uri, "num_rows": m.num_rows, "checksum": m.checksum,
                              "decoded_bytes": ds.decoded_bytes, "verified": args.verify,
                              "manifest": dataclasses.asdict(m)}, indent=2, default=str))
            return 0
        print(describe(ds))
        if args.verify:
            from trainers.data.verify import verify_shards

            verify_shards(ds)
            print(f"verified {len(ds.manifest.shards)} shard(s): checksums match the manifest")
        if args.grid:
            from trainers.metrics.grid import save_grid  # written alongside; loaded only when a grid is wanted

            samples, _ = ds.real_samples(args.samples, seed=args.seed)
            mixture = ds.info.extra.get("mixture")
            save_grid(samples, ds.info.kind, args.grid, **({"means": mixture["means"]} if mixture else {}))
            print(f"wrote {args.grid} ({len(samples)} samples)")
    except DataError as exc:
        raise DataSourceError(str(exc)) from exc
    return 0


def describe(ds) -> str:
    """The manifest summary `inspect` prints: rows, shape, labels, shards, provenance."""
    m = ds.manifest
    shape = "x".join(str(v) for v in m.shape)
    if m.labels:
        shown = ", ".join(m.labels[:10]) + (", ..." if len(m.labels) > 10 else "")
        labels = f"{len(m.labels)} classes: {shown}"
    else:
        labels = "none"
    source = m.source.get("source", "?")
    from trainers.config import DataConfig

    needed_mib = math.ceil(ds.decoded_bytes / 2**20 * 100) / 100  # rounded up: that setting does hold it
    lines = [
        ds.uri,
        f"  name      {m.name}",
        f"  kind      {m.kind}, {shape} {m.dtype} ({m.encoding})",
        f"  rows      {m.num_rows:,} in {len(m.shards)} shard(s), row groups of {m.row_group_rows:,}",
        f"  decoded   {needed_mib:g} MiB: trials hold it in memory when data.resident_mb >= {needed_mib:g} "
        f"(default {DataConfig.model_fields['resident_mb'].default:g}), else stream it",
        f"  labels    {labels}",
        f"  checksum  {m.checksum}",
        f"  made by   {m.source.get('importer', '?')} from {source} ({m.source.get('created', '?')}, ganforge {m.source.get('ganforge', '?')})",
    ]
    if "mixture" in m.extra:
        mix = m.extra["mixture"]
        lines.append(f"  mixture   {len(mix['means'])} Gaussians, sigma {mix['sigma']}")
    lines.append("  shards")
    for s in m.shards:
        lines.append(f"    {s.path}  {s.rows:>9,} rows  {_size(s.bytes):>9}  sha256 {s.sha256[:12]}")
    return "\n".join(lines)


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


class ProgressBar:
    """A one-line progress bar on stderr; on a non-terminal it prints one line at the end instead of redrawing."""

    WIDTH = 30

    def __init__(self, label: str, stream: IO[str] | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.started = time.monotonic()
        self.done = self.total = 0

    def update(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        if self.live:
            self.stream.write("\r" + self._line())
            self.stream.flush()

    def _line(self) -> str:
        frac = self.done / self.total if self.total else 1.0
        filled = int(frac * self.WIDTH)
        rate = self.done / max(1e-9, time.monotonic() - self.started)
        return f"{self.label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {self.done:,}/{self.total:,} rows ({rate:,.0f}/s)"

    def finish(self) -> None:
        if self.total:
            self.stream.write(("\r" if self.live else "") + self._line() + "\n")
            self.stream.flush()
