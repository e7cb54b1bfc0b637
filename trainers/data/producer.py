"""The reading half of a BatchStream: walks epoch plans and turns shard row groups into decoded row chunks.

It runs in the readahead thread (or inline when readahead is 0) and emits, per window of the plan, a WindowStart
(with that window's permutation) followed by Rows and Gaps that exactly cover the window's positions. A shard's row
groups are read on a small thread pool, a few at once (Parquet decoding releases the GIL), and emitted in order.
"""
from __future__ import annotations

import logging
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch

from trainers.data.fs import Location
from trainers.data.layout import DecodeError, decode
from trainers.data.manifest import Manifest
from trainers.data.plan import EpochPlan, Segment
from trainers.data.shards import ShardCorrupt, ShardReader

log = logging.getLogger("ganforge.data")


@dataclass
class WindowStart:
    epoch: int
    index: int
    start: int  # positions [start, stop) of the rank's slice
    stop: int
    permutation: np.ndarray


@dataclass
class Rows:
    position: int
    samples: np.ndarray
    labels: np.ndarray | None


@dataclass
class Gap:
    """Positions whose rows sit in a corrupt shard or row group that on_corrupt=skip leaves out."""

    position: int
    count: int


@dataclass
class ProducerStats:
    corrupt_shards: set[int] = field(default_factory=set)
    retries: int = 0
    rows_read: int = 0


@dataclass(frozen=True)
class StreamOrder:
    seed: int
    window: int
    rank: int
    world_size: int

    def plan(self, manifest: Manifest, epoch: int) -> EpochPlan:
        return EpochPlan([s.rows for s in manifest.shards], self.seed, epoch, self.rank, self.world_size, self.window)


def read_threads() -> int:
    """Row groups read at once: up to 4, within the process's CPU share (a trial sets torch's thread count to its
    resources.cpus_per_trial), so a 1-CPU trial reads one at a time and takes no core from its neighbours."""
    return max(1, min(4, torch.get_num_threads(), os.cpu_count() or 1))


@dataclass
class ReaderPools:
    """The thread pools a Producer reads with, each only where it pays; `close` shuts them down."""

    decode: ThreadPoolExecutor | None = None  # PNG/JPEG bytes
    fetch: ThreadPoolExecutor | None = None  # the next remote shard's download, overlapping this one's decoding
    read: ThreadPoolExecutor | None = None  # a shard's row groups, several at once (Parquet decoding releases the GIL)
    read_threads: int = 1

    @classmethod
    def for_data(cls, location: Location, manifest: Manifest) -> "ReaderPools":
        threads = read_threads()
        return cls(
            decode=(ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="ganforge-decode")
                    if manifest.encoding == "encoded" else None),
            fetch=ThreadPoolExecutor(max_workers=1, thread_name_prefix="ganforge-fetch") if location.is_remote else None,
            read=ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ganforge-read") if threads > 1 else None,
            read_threads=threads,
        )

    def close(self) -> None:
        for pool in (self.decode, self.fetch, self.read):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self.decode = self.fetch = self.read = None


class Producer:
    def __init__(
        self,
        location: Location,
        manifest: Manifest,
        order: StreamOrder,
        skip_corrupt: bool,
        stats: ProducerStats,
        pools: ReaderPools,
    ) -> None:
        self.location, self.manifest, self.order = location, manifest, order
        self.skip_corrupt = skip_corrupt
        self.stats = stats
        self.pools = pools  # owned by the caller, which closes them
        self._reader: ShardReader | None = None
        self._next_reader: ShardReader | None = None
        self._bad_shards: set[int] = set()  # unopenable: every segment of them is a gap
        self._bad_row_groups: set[tuple[int, int]] = set()
        self._cached: tuple[tuple[int, int], object] | None = None  # last row group read, shared by adjacent windows

    def run(self, epoch: int, position: int) -> Iterator[WindowStart | Rows | Gap]:
        schedule = self._schedule(epoch, position)
        upcoming: list[WindowStart | Segment] = []
        try:
            while True:
                item = upcoming.pop(0) if upcoming else next(schedule)
                if isinstance(item, WindowStart):
                    yield item
                    continue
                # Look one segment ahead so the next shard downloads while this one is decoded.
                while not any(isinstance(u, Segment) for u in upcoming):
                    upcoming.append(next(schedule))
                self._prefetch(next(u for u in upcoming if isinstance(u, Segment)).shard, item.shard)
                yield from self._read_segment(item)
        finally:
            self._close_reader()

    def read_all(self) -> Iterator[Rows | Gap]:
        """Every row of the data set once, in file order (position = global row index): loads a resident copy."""
        first = 0
        try:
            for shard, entry in enumerate(self.manifest.shards):
                if shard + 1 < len(self.manifest.shards):
                    self._prefetch(shard + 1, shard)  # the next shard downloads while this one is decoded
                yield from self._read_segment(Segment(shard, 0, entry.rows, first))
                first += entry.rows
        finally:
            self._close_reader()

    def _schedule(self, epoch: int, position: int) -> Iterator[WindowStart | Segment]:
        """Every window head and shard segment from (epoch, position) on, endlessly."""
        while True:
            plan = self.order.plan(self.manifest, epoch)
            for w in range(position // plan.window, plan.num_windows):
                start, stop = plan.window_range(w)
                yield WindowStart(epoch, w, start, stop, plan.window_permutation(w))
                yield from plan.segments(start, stop)
            epoch, position = epoch + 1, 0

    def _prefetch(self, shard: int, current: int) -> None:
        if self.pools.fetch is None or shard == current or shard in self._bad_shards:
            return
        if self._next_reader is not None and self._next_reader.index == shard:
            return
        if self._next_reader is not None:
            self._next_reader.close()
        self._next_reader = ShardReader(self.location, self.manifest, shard, on_retry=self._count_retry)
        self._next_reader.prefetch(self.pools.fetch)

    def _read_segment(self, seg: Segment) -> Iterator[Rows | Gap]:
        reader = self._reader_for(seg.shard)
        if reader is None:
            yield Gap(seg.position, seg.stop - seg.start)
            return
        try:
            bounds = reader.row_group_bounds
        except ShardCorrupt as exc:
            self._corrupt(seg.shard, None, exc)
            yield Gap(seg.position, seg.stop - seg.start)
            return
        spans = [(rg, lo, hi, rg_start) for rg, (rg_start, rg_stop) in enumerate(bounds)
                 if (lo := max(seg.start, rg_start)) < (hi := min(seg.stop, rg_stop))]
        ahead = self._reads_ahead(reader, [rg for rg, *_ in spans])
        for rg, lo, hi, rg_start in spans:
            position = seg.position + lo - seg.start
            table = self._row_group(reader, rg, next(ahead))
            if table is None:
                yield Gap(position, hi - lo)
                continue
            try:
                samples, labels = decode(table.slice(lo - rg_start, hi - lo), self.manifest, self.pools.decode)
            except DecodeError as exc:
                self._corrupt(seg.shard, rg, ShardCorrupt(f"{reader.uri}: row group {rg}: {exc}"))
                yield Gap(position, hi - lo)
                continue
            self.stats.rows_read += hi - lo
            yield Rows(position, samples, labels)

    def _reader_for(self, shard: int) -> ShardReader | None:
        if shard in self._bad_shards:
            return None
        if self._reader is None or self._reader.index != shard:
            self._close_current()
            if self._next_reader is not None and self._next_reader.index == shard:
                self._reader, self._next_reader = self._next_reader, None
            else:
                self._reader = ShardReader(self.location, self.manifest, shard, on_retry=self._count_retry)
        return self._reader

    def _reads_ahead(self, reader: ShardReader, row_groups: list[int]) -> Iterator[Future | None]:
        """Per row group of `row_groups`, in order: its read already running on the read pool, or None (read it
        here). At most `pools.read_threads` run at once, so decoded memory stays bounded."""
        pool, at_once = self.pools.read, self.pools.read_threads
        if pool is None or at_once < 2 or len(row_groups) < 2 or not reader.reads_in_parallel:
            yield from (None for _ in row_groups)
            return
        wanted = [rg for rg in row_groups if not self._known(reader.index, rg)]
        running: deque[tuple[int, Future]] = deque()
        submitted = 0
        for rg in row_groups:
            while submitted < len(wanted) and len(running) < at_once:
                running.append((wanted[submitted], pool.submit(reader.read_row_group_alone, wanted[submitted])))
                submitted += 1
            yield running.popleft()[1] if running and running[0][0] == rg else None

    def _known(self, shard: int, rg: int) -> bool:
        """Whether a row group needs no read: known corrupt, or the one kept from the last window."""
        key = (shard, rg)
        return key in self._bad_row_groups or (self._cached is not None and self._cached[0] == key)

    def _row_group(self, reader: ShardReader, rg: int, running: Future | None = None):
        key = (reader.index, rg)
        if key in self._bad_row_groups:
            return None
        if self._cached is not None and self._cached[0] == key:
            return self._cached[1]
        try:
            table = None
            if running is not None:
                try:
                    table = running.result()
                except ShardCorrupt:
                    raise
                except Exception:  # anything transient: read it again below, with the reader's retries
                    pass
            if table is None:
                table = reader.read_row_group(rg)
        except ShardCorrupt as exc:
            self._corrupt(reader.index, rg, exc)
            return None
        self._cached = (key, table)
        return table

    def _count_retry(self) -> None:
        self.stats.retries += 1

    def _corrupt(self, shard: int, rg: int | None, exc: ShardCorrupt) -> None:
        """Fail the stream, or with on_corrupt=skip remember the bad part (deterministically) and warn once."""
        if not self.skip_corrupt:
            raise exc
        if rg is None:
            self._bad_shards.add(shard)
        else:
            self._bad_row_groups.add((shard, rg))
        if shard not in self.stats.corrupt_shards:
            self.stats.corrupt_shards.add(shard)
            log.warning("skipping corrupt data (data.on_corrupt=skip): %s", exc)

    def _close_current(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._cached = None

    def _close_reader(self) -> None:
        self._close_current()
        if self._next_reader is not None:
            self._next_reader.close()
            self._next_reader = None
