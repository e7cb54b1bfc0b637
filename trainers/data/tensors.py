"""Stored values -> the model's range."""
from __future__ import annotations

import numpy as np
import torch

_SCALE = np.float32(127.5)
_LOOKUP: dict[torch.device, torch.Tensor] = {}  # the 256 pixel values in model range, per device


def _numpy_to_model_range(source: np.ndarray) -> np.ndarray:
    out = np.empty(source.shape, dtype=np.float32)
    np.divide(source, _SCALE, out=out, dtype=np.float32)
    out -= np.float32(1.0)
    return out


def images_to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW in [0, 255] -> float32 in [-1, 1] (0 -> -1, 255 -> 1 exactly).

    On the CPU numpy does the arithmetic: for batch-sized tensors torch's intra-op thread pool costs far more than
    the work (measured here: 0.1 ms in numpy vs 0.8 ms in torch with 2 threads on a busy machine). Images held on an
    accelerator look their values up in a 256-entry table made by that same arithmetic, so both give identical
    floats (CUDA divides by a scalar as a multiplication by its reciprocal: 1 ulp off for some values).
    """
    if images.device.type == "cpu":
        return torch.from_numpy(_numpy_to_model_range(images.numpy()))
    lookup = _LOOKUP.get(images.device)
    if lookup is None:
        table = _numpy_to_model_range(np.arange(256, dtype=np.uint8))
        lookup = _LOOKUP[images.device] = torch.from_numpy(table).to(images.device)
    return lookup[images.to(torch.int64)]
