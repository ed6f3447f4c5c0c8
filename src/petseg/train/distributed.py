"""DDP plumbing: the same `petseg train` runs alone or under `torchrun`.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; when they are absent the run is a
single process and every helper here is a no-op. Metrics are reduced by summing
confusion matrices and loss sums, so every rank ends an epoch with the figures of
the whole split, and only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from petseg.errors import PetsegError, clipped


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launcher_number(variable: str, default: int | None, high: int | None = None) -> int:
    """A whole number that torchrun puts in the environment; `default` when unset (None: required)."""
    text = os.environ.get(variable)
    if text is None and default is None:
        raise PetsegError(f"{variable} is not set, but WORLD_SIZE is: start distributed runs with torchrun")
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0 or (high is not None and value > high):
        bounds = f" in 0..{high}" if high is not None else ", 0 or more"
        raise PetsegError(f"{variable}={clipped(text)!r} must be a whole number{bounds} (torchrun sets it)")
    return value


def setup_distributed(device_type: str) -> DistributedContext:
    """Join the process group torchrun prepared (gloo on CPU, nccl on CUDA), if any."""
    world_size = launcher_number("WORLD_SIZE", 1)
    if world_size <= 1:
        return DistributedContext()
    import torch
    import torch.distributed as dist

    context = DistributedContext(launcher_number("RANK", None, world_size - 1), world_size,
                                 launcher_number("LOCAL_RANK", 0, world_size - 1))
    if device_type == "cuda":
        torch.cuda.set_device(context.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return context


def cleanup_distributed(context: DistributedContext) -> None:
    if context.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def barrier(context: DistributedContext) -> None:
    if context.enabled:
        import torch.distributed as dist

        dist.barrier()


def all_reduce_sum(context: DistributedContext, tensor):
    """Sum a tensor over ranks in place (a no-op for one process) and return it."""
    if context.enabled:
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_lists(context: DistributedContext, values: list[Any]) -> list[Any]:
    """Concatenate a small per-rank Python list over all ranks."""
    if not context.enabled:
        return values
    import torch.distributed as dist

    gathered: list[list[Any]] = [[] for _ in range(context.world_size)]
    dist.all_gather_object(gathered, values)
    return [value for part in gathered for value in part]
