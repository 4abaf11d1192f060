"""What this process may use: memory, checked before a command allocates it.

A setting or an input that needs more memory than exists (a filter table of
billions of rows, a model of a trillion parameters) is refused up front with
the size it would need, instead of failing inside an allocation (or being
killed by the kernel) after files were written.
"""

from __future__ import annotations

import os
import resource
from typing import Optional

from pyg_schnet.errors import UserError

GIB = 1024**3


def _meminfo_available() -> Optional[int]:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes (Linux), else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available() -> Optional[int]:
    """What a container's cgroup (v2 ``memory.max``) still allows, else None."""
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit == "max":
            return None
        with open("/sys/fs/cgroup/memory.current") as f:
            return max(int(limit) - int(f.read().strip()), 0)
    except (OSError, ValueError):
        return None


def _rlimit_as() -> Optional[int]:
    """The address-space limit (``ulimit -v``) in bytes, else None."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def available_memory() -> Optional[int]:
    """Bytes this process can still allocate: the least of the free memory,
    the cgroup's allowance and ``ulimit -v``; ``PYG_SCHNET_MEMORY`` (bytes)
    overrides them all. None where none of them can be read."""
    forced = os.environ.get("PYG_SCHNET_MEMORY")
    if forced:
        try:
            return int(float(forced))
        except ValueError:
            pass
    known = [m for m in (_meminfo_available(), _cgroup_available(), _rlimit_as()) if m]
    return min(known) if known else None


def format_bytes(n: float) -> str:
    """``9.6 GB``, ``512 MB``: decimal units, as ``free -h`` users read them."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n / 1e3:.0f} kB"


def check_memory(needed: float, what: str, advice: str = "") -> None:
    """Raise :class:`~pyg_schnet.errors.UserError` if ``what`` needs more
    than :func:`available_memory`: one line with both sizes and ``advice``."""
    have = available_memory()
    if have is not None and needed > have:
        raise UserError(
            f"{what} needs about {format_bytes(needed)} of memory; this machine has "
            f"{format_bytes(have)} available" + (f"; {advice}" if advice else "")
        )
