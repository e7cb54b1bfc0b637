"""Which real rows may shape a feature network and which judge generators: one fixed, seeded split per data set.

A feature network trained on the very samples that then serve as FID's reference and as the real-vs-real floor
rewards a generator that copies them; and a network trained on "the first eval_samples rows" changes its scale with
every job's eval_samples. So the rows are put in one seeded order that depends on the row count alone: the first
`fit_size` rows fit networks (never more than FIT_ROWS_MAX, never more than half), the rest are held out, and every
reference set is a prefix of the held-out rows (a larger eval_samples extends it, it never reshuffles it).
Scores in a space nothing was fitted in (pretrained Inception, the mixture modes) need no held-out rows: their
reference is a prefix of the whole order, as papers compute Inception FID against the full training set.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

import numpy as np

if TYPE_CHECKING:  # torch-free at import: the report and the run record use the sizes below
    from torch import Tensor

RealSamples = tuple["Tensor", Optional["Tensor"]]

SPLIT_SEED = 20_180_601
FIT_ROWS_MAX = 10_000
MIN_ROWS = 4  # two to fit, two to hold out


def fit_size(num_rows: int) -> int:
    """Rows that fit feature networks; the other num_rows - fit_size(num_rows) are held out."""
    return min(FIT_ROWS_MAX, num_rows // 2)


def reference_size(num_rows: int, num_samples: int, held_out: bool = True) -> int:
    """Real samples every score compares with: num_samples (held-out) rows, or all of them when fewer."""
    return min(num_samples, num_rows - fit_size(num_rows) if held_out else num_rows)


@dataclass
class RealRows:
    """A data set's rows, read on demand: `read(sorted row indices) -> (x in model range, labels or None)`."""

    num_rows: int
    read: Callable[[np.ndarray], RealSamples]
    name: str = "data"

    @classmethod
    def of(cls, x: "Tensor", y: Optional["Tensor"] = None, name: str = "data") -> "RealRows":
        """Rows already in memory (tests, small data sets)."""
        import torch

        return cls(len(x), lambda rows: (x[torch.from_numpy(rows)], None if y is None else y[torch.from_numpy(rows)]),
                   name)

    def __post_init__(self) -> None:
        if self.num_rows < MIN_ROWS:
            raise ValueError(f"data set {self.name!r} has {self.num_rows} rows; scoring needs at least {MIN_ROWS} "
                             "(half fit the feature network, half are held out to score against)")
        self._order = np.random.default_rng(SPLIT_SEED).permutation(self.num_rows)

    @property
    def fit_size(self) -> int:
        return fit_size(self.num_rows)

    def fit_rows(self) -> np.ndarray:
        return np.sort(self._order[: self.fit_size])

    def held_out_rows(self, n: int) -> np.ndarray:
        """The first min(n, held-out count) held-out rows, in ascending order."""
        return np.sort(self._order[self.fit_size :][:n])

    def reference_rows(self, n: int, held_out: bool = True) -> np.ndarray:
        """The rows scores compare with: the first n held-out rows, or (held_out=False) the first n of all rows."""
        return self.held_out_rows(n) if held_out else np.sort(self._order[:n])

    def fit(self) -> RealSamples:
        return self.read(self.fit_rows())

    def held_out(self, n: int) -> RealSamples:
        return self.read(self.held_out_rows(n))

    def reference(self, n: int, held_out: bool = True) -> RealSamples:
        return self.read(self.reference_rows(n, held_out))
