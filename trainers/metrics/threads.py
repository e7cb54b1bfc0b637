"""Run metric work on one CPU thread.

The feature network and the metrics are tiny ops; with several intra-op threads on a busy machine (trials share the
cores) the threads mostly spin: measured here, training the digits classifier took 45 s with 2 threads against 7 s
with 1 while other processes loaded both cores.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
