"""Data-parallel training on this machine without torchrun: ``pyg-schnet
train`` starts its processes itself when it runs more than one (``processes``
in the config; by default one per core, the measured fastest setting, see
:mod:`pyg_schnet.run.throughput`).

Each process is ``python -m pyg_schnet.cli train ARGS`` with the environment
``torchrun --standalone`` would give it (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
``MASTER_PORT``, ...); rank 0 holds the run directory's lock and writes. When
one process fails the others are stopped, so a refused or broken run ends with
its one error line rather than a process waiting for a partner that is gone;
the processes die with the launcher (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import List


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child before exec (Linux)
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def launch(argv: List[str], processes: int) -> int:
    """Run ``pyg-schnet train ARGV`` as ``processes`` data-parallel processes;
    their exit status (the first failure's, else 0)."""
    port = _free_port()
    procs = []
    for rank in range(processes):
        env = dict(
            os.environ,
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE=str(processes),
            LOCAL_WORLD_SIZE=str(processes),
            GROUP_RANK="0",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "pyg_schnet.cli", "train", *argv],
                env=env,
                preexec_fn=_die_with_parent,
            )
        )
    status = 0
    try:
        while any(p.poll() is None for p in procs):
            failed = [p for p in procs if p.returncode not in (None, 0)]
            if failed:
                status = failed[0].returncode
                break
            time.sleep(0.05)
    except KeyboardInterrupt:
        status = 130
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    if status == 0:
        status = next((p.returncode for p in procs if p.returncode != 0), 0)
    return status
