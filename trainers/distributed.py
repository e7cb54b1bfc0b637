"""Data-parallel training: each rank trains on its share of the data; DistributedDataParallel averages gradients.

The process group is created by whoever starts the ranks (the orchestrator through a Ray TorchTrainer, or a test
with torch.multiprocessing); the trainer only wraps its networks when a group exists and `world_size > 1`.
Penalties differentiate D twice; they run through the unwrapped module, and their gradients are still averaged
because DDP's hooks fire on the parameters' accumulated gradients of the one backward pass.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def active(world_size: int) -> bool:
    return world_size > 1 and dist.is_available() and dist.is_initialized()


def wrap(module: nn.Module, device: torch.device, world_size: int) -> nn.Module:
    """`module` wrapped in DDP when a process group is active, else unchanged."""
    if not active(world_size) or not any(p.requires_grad for p in module.parameters()):
        return module
    device_ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids)


def any_rank(flag: bool, device: torch.device, world_size: int) -> bool:
    """True on every rank when `flag` is true on any rank (so all ranks stop together instead of deadlocking)."""
    if not active(world_size):
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
