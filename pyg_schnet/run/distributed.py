"""Data parallelism over processes (``torchrun`` or ``pyg-schnet train``'s
launcher, :mod:`pyg_schnet.run.launch`): which process this is, and sums over
all of them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    """This process's rank among ``world_size`` data-parallel processes."""

    rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistInfo:
    """Join the process group that ``WORLD_SIZE`` announces (none: one process)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size())


def allreduce(values: List[float], info: DistInfo) -> List[float]:
    """``values`` summed over every process (float64)."""
    if info.world_size == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()
