"""The order in which one DDP rank sees a data set in one epoch: a pure function of (seed, epoch, rank, world size).

Level 1: shards are permuted and the concatenated sequence rotated by a random offset (both from (seed, epoch)
alone, so every rank agrees); rank r takes the r-th of `world_size` equal contiguous slices (the remainder is
dropped, a different part each epoch). Level 2: the slice is cut into windows of `window` rows and each window is
permuted in memory. A position inside the slice is therefore enough to resume exactly: re-read that position's
window, re-apply its permutation, skip what was already served.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

# Distinct first words keep the epoch-level and window-level random streams apart.
_EPOCH_STREAM = 0x5EED_0001
_WINDOW_STREAM = 0x5EED_0002


@dataclass(frozen=True)
class Segment:
    """Rows [start, stop) of shard `shard`, which land at positions [position, position + stop - start)."""

    shard: int
    start: int
    stop: int
    position: int


class EpochPlan:
    def __init__(self, shard_rows: Sequence[int], seed: int, epoch: int, rank: int, world_size: int, window: int) -> None:
        self.seed, self.epoch, self.rank, self.window = seed, epoch, rank, max(1, window)
        self.total_rows = int(sum(shard_rows))
        self.share_rows = self.total_rows // world_size
        rng = np.random.default_rng([_EPOCH_STREAM, seed, epoch])
        self.shard_order = rng.permutation(len(shard_rows))
        self.offset = int(rng.integers(self.total_rows)) if self.total_rows else 0
        rows = np.asarray(shard_rows, dtype=np.int64)[self.shard_order]
        self._starts = np.concatenate([[0], np.cumsum(rows)])  # of each permuted shard in the unrotated sequence
        self._share_start = rank * self.share_rows

    @property
    def num_windows(self) -> int:
        return math.ceil(self.share_rows / self.window)

    def window_range(self, w: int) -> tuple[int, int]:
        return w * self.window, min((w + 1) * self.window, self.share_rows)

    def window_permutation(self, w: int) -> np.ndarray:
        start, stop = self.window_range(w)
        return np.random.default_rng([_WINDOW_STREAM, self.seed, self.epoch, self.rank, w]).permutation(stop - start)

    def segments(self, start: int, stop: int) -> list[Segment]:
        """Shard row ranges for positions [start, stop) of this rank's slice, in sequence order."""
        out: list[Segment] = []
        position = start
        while position < stop:
            u = (self._share_start + position + self.offset) % self.total_rows
            k = int(np.searchsorted(self._starts, u, side="right")) - 1  # which permuted shard holds row u
            row = u - int(self._starts[k])
            take = min(stop - position, int(self._starts[k + 1]) - u)  # to the end of that shard at most
            out.append(Segment(int(self.shard_order[k]), row, row + take, position))
            position += take
        return out
