"""ResidentStream: a small data set decoded once and held on the training device, served in BatchStream's order.

Streaming re-reads and re-decodes every row group each epoch and copies every batch from host to device. For a data
set that fits in `data.resident_mb` that is all overhead; on a GPU it is what bounds a small GAN's step (the host's
Parquet reads and conversions, not the GPU). Held on the device, a window is one gather and a batch's conversion to
the model's range runs there too.

Epoch plans, window permutations, DDP shares, holes left by skipped corrupt rows and the resume state are
BatchStream's own, so both serve identical batches and a checkpoint taken with one resumes with the other.
"""
from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
import torch

from trainers.data.errors import DataError
from trainers.data.plan import EpochPlan
from trainers.data.producer import Gap, Producer, ReaderPools, WindowStart
from trainers.data.stream import BatchStream, StoredData, StreamOptions, _Window, serving_order

log = logging.getLogger("ganforge.data")


class ResidentStream(BatchStream):
    def __init__(self, dataset: StoredData, options: StreamOptions) -> None:
        super().__init__(dataset, dataclasses.replace(options, readahead=0))  # nothing to read ahead once held
        self.device = torch.device(options.device)
        rows = np.asarray([s.rows for s in dataset.manifest.shards], dtype=np.int64)
        self._shard_base = np.concatenate([[0], np.cumsum(rows)])  # global index of each shard's first row
        # Loaded on the first batch, where a streamed data set would first be read (and fail, if it is bad).
        self._samples: torch.Tensor | None = None
        self._labels: torch.Tensor | None = None
        self._valid: np.ndarray | None = None
        self._plan: EpochPlan | None = None

    def _load(self) -> None:
        started = time.perf_counter()
        info, manifest = self.dataset.info, self.dataset.manifest
        samples: np.ndarray | None = None
        labels: np.ndarray | None = None
        valid = np.ones(info.num_rows, dtype=bool)
        pools = ReaderPools.for_data(self.dataset.location, manifest)  # for this one pass only
        try:
            producer = Producer(self.dataset.location, manifest, self._order, skip_corrupt=self.on_corrupt == "skip",
                                stats=self._producer_stats, pools=pools)
            for item in producer.read_all():
                if isinstance(item, Gap):
                    valid[item.position : item.position + item.count] = False
                    continue
                if samples is None:
                    samples = np.empty((info.num_rows, *item.samples.shape[1:]), dtype=item.samples.dtype)
                    labels = np.empty(info.num_rows, dtype=np.int64) if item.labels is not None else None
                samples[item.position : item.position + len(item.samples)] = item.samples
                if labels is not None:
                    labels[item.position : item.position + len(item.labels)] = item.labels
        finally:
            pools.close()
        if samples is None:  # nothing valid at all: no window will gather a row
            samples = np.empty((0, *self._sample_shape()), dtype=np.float32)
        self._samples = torch.from_numpy(samples).to(self.device)
        self._labels = torch.from_numpy(labels).to(self.device) if labels is not None else None
        self._valid = valid
        self._wait_s += time.perf_counter() - started
        log.info("%s: %d rows (%.1f MiB) held on %s", self.dataset.uri, info.num_rows, samples.nbytes / 2**20,
                 self.device)

    def _epoch_plan(self) -> EpochPlan:
        plan, order = self._plan, self._order  # a restored state may bring another seed and window
        if plan is None or (plan.epoch, plan.seed, plan.window) != (self._epoch, order.seed, order.window):
            plan = self._plan = order.plan(self.dataset.manifest, self._epoch)
        return plan

    def _assemble(self) -> _Window:
        """The window holding the current position: its rows gathered on the device in BatchStream's order."""
        if self._closed:
            raise DataError(f"{self.dataset.uri}: stream is closed")
        if self._samples is None:
            self._load()
        plan = self._epoch_plan()
        w = self._position // plan.window
        start, stop = plan.window_range(w)
        segments = plan.segments(start, stop)
        rows = np.concatenate([np.arange(seg.start, seg.stop) + self._shard_base[seg.shard] for seg in segments])
        permutation = plan.window_permutation(w)
        order, planned = serving_order(permutation, self._valid[rows])
        index = torch.from_numpy(rows[order]).to(self.device)
        x = self._samples.index_select(0, index)
        y = self._labels.index_select(0, index) if self._labels is not None else None
        return _Window(WindowStart(self._epoch, w, start, stop, permutation), x, y, planned)

    def close(self) -> None:
        super().close()
        self._samples = self._labels = None  # give the device memory back
