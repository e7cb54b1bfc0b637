"""BatchStream: endless, seeded, resumable batches of real samples in the model's range.

The hot path (`next_batch`) only slices tensors of an already permuted window and, for images, converts uint8 to
float in one pass; Arrow work happens per record batch in the readahead thread.

Memory is bounded whatever the data set's size: the window being served plus, while the next one is assembled
and permuted, two more of `shuffle_buffer` rows; at most `readahead` decoded record batches queued (a row group
of ~1 MiB each, plus up to 4 being read); for remote data, the current and next shard's bytes (~16 MiB each).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Iterator, Protocol

import numpy as np
import torch

from trainers.data.errors import DataError
from trainers.data.fs import Location
from trainers.data.info import DataInfo
from trainers.data.manifest import Manifest
from trainers.data.producer import Gap, Producer, ProducerStats, ReaderPools, Rows, StreamOrder, WindowStart
from trainers.data.readahead import Inline, Readahead
from trainers.data.tensors import images_to_model_range

log = logging.getLogger("ganforge.data")

ON_CORRUPT = ("error", "skip")
STATE_VERSION = 1


@dataclass(frozen=True)
class StreamOptions:
    """How a data set is served, as one value from the job's data section to the stream (`Dataset.stream`)."""

    batch_size: int
    seed: int
    shuffle_buffer: int = 4096  # rows in a window shuffled as one
    readahead: int = 2  # record batches decoded ahead in a thread (0: in the caller's thread)
    rank: int = 0  # this process's share of a data-parallel run ...
    world_size: int = 1  # ... of this many
    on_corrupt: str = "error"  # or "skip" a corrupt row group with a warning
    resident_bytes: int = 0  # a data set whose decoded rows fit is held on `device` (ResidentStream)
    device: str | torch.device = "cpu"

    @classmethod
    def from_config(cls, data: Any, *, seed: int, rank: int = 0, world_size: int = 1,
                    device: str | torch.device = "cpu") -> "StreamOptions":
        """From a job's `data` section (trainers.config.DataConfig) and the run's seed, rank and device."""
        return cls(batch_size=data.batch_size, seed=seed, shuffle_buffer=data.shuffle_buffer,
                   readahead=data.readahead, rank=rank, world_size=world_size, on_corrupt=data.on_corrupt,
                   resident_bytes=int(data.resident_mb * 2**20), device=device)


class StoredData(Protocol):
    """What a stream reads from (a `trainers.data.Dataset`)."""

    uri: str
    location: Location
    manifest: Manifest

    @property
    def info(self) -> DataInfo: ...


class _Window:
    """One permuted window being served. `planned[i]` is the window offset (in permuted order) of served row i;
    it differs from i only when skipped corrupt rows left holes."""

    def __init__(self, head: WindowStart, samples: torch.Tensor, labels: torch.Tensor | None, planned: np.ndarray | None) -> None:
        self.epoch, self.index, self.start, self.stop = head.epoch, head.index, head.start, head.stop
        self.samples, self.labels, self.planned = samples, labels, planned
        self.cursor = 0

    @property
    def remaining(self) -> int:
        return len(self.samples) - self.cursor

    def next_position(self) -> int:
        """Position (in the rank's slice) of the next row to serve; `stop` once the window is used up."""
        if self.cursor >= len(self.samples):
            return self.stop
        return self.start + (int(self.planned[self.cursor]) if self.planned is not None else self.cursor)

    def skip_to(self, position: int) -> None:
        offset = position - self.start
        self.cursor = int(np.searchsorted(self.planned, offset)) if self.planned is not None else offset

    def take(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        lo, hi = self.cursor, self.cursor + n
        self.cursor = hi
        return self.samples[lo:hi], (self.labels[lo:hi] if self.labels is not None else None)


def serving_order(permutation: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """A window's serving order (offsets into the window), and where skipped corrupt rows left holes: `planned[i]`,
    the permuted offset of served row i (None when every row is valid)."""
    if valid.all():
        return permutation, None
    keep = valid[permutation]
    return permutation[keep], np.flatnonzero(keep)


class BatchStream:
    def __init__(self, dataset: StoredData, options: StreamOptions) -> None:
        batch_size, on_corrupt, rank, world_size = options.batch_size, options.on_corrupt, options.rank, options.world_size
        if batch_size < 1:
            raise DataError(f"{dataset.uri}: batch_size must be >= 1, got {batch_size}")
        if on_corrupt not in ON_CORRUPT:
            raise DataError(f"{dataset.uri}: data.on_corrupt must be one of {', '.join(ON_CORRUPT)}, got {on_corrupt!r}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise DataError(f"{dataset.uri}: rank {rank} is not within world_size {world_size}")
        if dataset.info.num_rows < world_size:
            raise DataError(f"{dataset.uri}: {dataset.info.num_rows} rows cannot give each of {world_size} ranks a share")
        self.dataset = dataset
        self.batch_size = batch_size
        self.readahead = max(0, options.readahead)
        self.on_corrupt = on_corrupt
        self._order = StreamOrder(seed=options.seed, window=max(1, options.shuffle_buffer), rank=rank,
                                  world_size=world_size)
        self._share_rows = dataset.info.num_rows // world_size
        self._epoch, self._position = 0, 0
        self._window: _Window | None = None
        self._source: Inline | Readahead | None = None
        self._producer_stats = ProducerStats()
        self._wait_s = 0.0
        self._images = dataset.info.is_image
        self._pools: ReaderPools | None = None  # made with the first source, kept across restarts of it
        self._closed = False

    # ------------------------------------------------------------------------------------------------ batches

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The next `batch_size` samples (crossing windows and epochs as needed), in model range."""
        xs, ys = [], []
        need = self.batch_size
        while need:
            window = self._current_window()
            x, y = window.take(min(need, window.remaining))
            xs.append(x)
            ys.append(y)
            need -= len(x)
            self._position = window.next_position()
        x = xs[0] if len(xs) == 1 else torch.cat(xs)
        y = None if ys[0] is None else (ys[0] if len(ys) == 1 else torch.cat(ys))
        return (images_to_model_range(x) if self._images else x), y

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        while True:
            yield self.next_batch()

    def _current_window(self) -> _Window:
        window = self._window
        if window is not None and window.remaining:
            return window
        if self._position >= self._share_rows:  # the epoch is used up
            self._epoch, self._position = self._epoch + 1, 0
        skipped = 0
        while True:
            window = self._assemble()
            if window.epoch == self._epoch and window.start <= self._position < window.stop:
                window.skip_to(self._position)
            if window.remaining:
                self._window = window
                return window
            # Every row left in this window was skipped as corrupt: move on, unless nothing readable is left at all
            # (two whole epochs of this rank's share skipped; shares move between epochs).
            skipped += window.stop - max(window.start, self._position if window.epoch == self._epoch else 0)
            if skipped >= 2 * self._share_rows:
                raise DataError(f"{self.dataset.uri}: no readable rows left: data.on_corrupt=skip skipped every row of "
                                f"two epochs ({len(self._producer_stats.corrupt_shards)} corrupt shards)")
            self._epoch, self._position = (window.epoch, window.stop) if window.stop < self._share_rows else (window.epoch + 1, 0)

    def _assemble(self) -> _Window:
        """Collect one window's rows from the producer, then permute it once."""
        source = self._ensure_source()
        started = time.perf_counter()
        head = source.get()
        if not isinstance(head, WindowStart):
            raise AssertionError(f"data producer out of step: expected a window, got {type(head).__name__}")
        size = head.stop - head.start
        samples: np.ndarray | None = None
        labels: np.ndarray | None = None
        valid = np.ones(size, dtype=bool)
        filled = 0
        while filled < size:
            item = source.get()
            offset = item.position - head.start
            if isinstance(item, Gap):
                valid[offset : offset + item.count] = False
                filled += item.count
                continue
            assert isinstance(item, Rows)
            if samples is None:
                samples = np.empty((size, *item.samples.shape[1:]), dtype=item.samples.dtype)
                labels = np.empty(size, dtype=np.int64) if item.labels is not None else None
            n = len(item.samples)
            samples[offset : offset + n] = item.samples
            if labels is not None:
                labels[offset : offset + n] = item.labels
            filled += n
        self._wait_s += time.perf_counter() - started
        order, planned = serving_order(head.permutation, valid)
        if samples is None:  # nothing valid at all
            samples = np.empty((0, *self._sample_shape()), dtype=np.float32)
        x = torch.from_numpy(samples[order])
        y = torch.from_numpy(labels[order]) if labels is not None else None
        return _Window(head, x, y, planned)

    def _sample_shape(self) -> tuple[int, ...]:
        shape = self.dataset.info.shape
        return (shape[2], shape[0], shape[1]) if self._images else tuple(shape)

    def _ensure_source(self) -> Inline | Readahead:
        if self._closed:
            raise DataError(f"{self.dataset.uri}: stream is closed")
        if self._source is None:
            if self._pools is None:
                self._pools = ReaderPools.for_data(self.dataset.location, self.dataset.manifest)
            producer = Producer(
                self.dataset.location,
                self.dataset.manifest,
                self._order,
                skip_corrupt=self.on_corrupt == "skip",
                stats=self._producer_stats,
                pools=self._pools,
            )
            items = producer.run(self._epoch, self._position)
            self._source = Readahead(items, self.readahead) if self.readahead else Inline(items)
        return self._source

    # ------------------------------------------------------------------------------------------------ resume

    def state_dict(self) -> dict[str, Any]:
        """Small and JSON-able: where this stream is, plus what makes its order reproducible."""
        epoch, position = self._epoch, self._position
        if position >= self._share_rows:
            epoch, position = epoch + 1, 0
        return {
            "version": STATE_VERSION,
            "epoch": epoch,
            "position": position,
            "seed": self._order.seed,
            "shuffle_buffer": self._order.window,
            "world_size": self._order.world_size,
            "checksum": self.dataset.info.checksum,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where `state` was taken: same seed and buffer, so the same remaining order.

        The position is rank-independent (ranks advance in lockstep), so rank 0's state resumes every rank.
        """
        try:
            epoch, position = int(state["epoch"]), int(state["position"])
            seed, window = int(state.get("seed", self._order.seed)), int(state.get("shuffle_buffer", self._order.window))
            world_size = int(state.get("world_size", self._order.world_size))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{self.dataset.uri}: malformed data stream state ({type(exc).__name__}: {exc})") from None
        checksum = state.get("checksum")
        if checksum and checksum != self.dataset.info.checksum:
            log.warning("%s: data set changed since the checkpoint (%s -> %s); resume order is not exact",
                        self.dataset.uri, checksum, self.dataset.info.checksum)
        if world_size != self._order.world_size:
            # Keep the same fraction of the epoch consumed; the order cannot match a different split.
            log.warning("%s: resuming with %d ranks instead of %d; data order is not exact",
                        self.dataset.uri, self._order.world_size, world_size)
            position = position * world_size // self._order.world_size
        self._stop_source()
        self._order = StreamOrder(seed=seed, window=max(1, window), rank=self._order.rank, world_size=self._order.world_size)
        self._epoch, self._position = max(0, epoch), min(max(0, position), self._share_rows)

    # ------------------------------------------------------------------------------------------------ the rest

    @property
    def stats(self) -> dict[str, float]:
        """Trial metrics: fractional epoch, corrupt shards skipped, read retries, seconds spent waiting for data."""
        return {
            "data_epoch": self._epoch + self._position / self._share_rows,
            "data_corrupt_shards": float(len(self._producer_stats.corrupt_shards)),
            "data_read_retries": float(self._producer_stats.retries),
            "data_wait_s": self._wait_s,
        }

    def _stop_source(self) -> None:
        source, self._source, self._window = self._source, None, None
        if source is not None:
            source.close()

    def close(self) -> None:
        self._stop_source()
        if self._pools is not None:
            self._pools.close()
        self._closed = True

    def __enter__(self) -> "BatchStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # a forgotten stream must not leave its thread reading
        try:
            self._stop_source()
        except Exception:
            pass
