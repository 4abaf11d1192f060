"""Data parallelism over processes (``torchrun`` or ``pyg-schnet train``'s
launcher, :mod:`pyg_schnet.run.launch`): how many CPUs this process may use,
how many processes a run starts by default, which process this is, and sums
over all of them."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import List, Optional

import torch
import torch.distributed as dist


#: Default processes stop here, whatever the machine: two one-thread processes
#: beat one two-thread process on this project's 2-core machine (1.2x at the
#: studies' size, 1.45x at PyG's); beyond 8 the gain is not measured, and each
#: process holds its own copy of the data (about 0.46 GiB).
MAX_DEFAULT_PROCESSES = 8
#: ... and no process gets fewer molecules per step than this: the smallest
#: share measured to gain (batch 50 over two processes).
MIN_MOLECULES_PER_PROCESS = 25


def _cgroup_cpu_quota() -> Optional[float]:
    """CPUs a container's cgroup allows (cgroup v2 ``cpu.max``, v1
    ``cpu.cfs_quota_us``), or None when unlimited or unknown."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
            quota_us = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
            period_us = int(f.read())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity (``taskset``, a SLURM
    allocation), not the whole node's count, and at most its container's
    CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        n = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        n = min(n, max(1, math.floor(quota)))
    return max(1, n)


def default_processes(batch_size: int, device: str = "cpu") -> int:
    """Data-parallel processes when the config sets none: one per usable CPU,
    at most :data:`MAX_DEFAULT_PROCESSES`, and so many that each still gets
    :data:`MIN_MOLECULES_PER_PROCESS` molecules of a batch; one on a GPU."""
    if device != "cpu":
        return 1
    by_batch = batch_size // MIN_MOLECULES_PER_PROCESS
    return max(1, min(usable_cpus(), MAX_DEFAULT_PROCESSES, by_batch))


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


def broadcast(values: List[float], info: DistInfo) -> List[float]:
    """Rank 0's ``values`` on every process (float64): one clock for all, so
    decisions that depend on time (a time budget, a schedule over seconds)
    are the same on every rank."""
    if info.world_size == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.broadcast(t, src=0)
    return t.tolist()


def allreduce(values: List[float], info: DistInfo) -> List[float]:
    """``values`` summed over every process (float64)."""
    if info.world_size == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()
