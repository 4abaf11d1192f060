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

Every process reads the same config and data, so a bad input fails all of
them with the same message: only rank 0 writes to the terminal. The others'
stderr goes to a temporary file, shown only when one of them failed and rank
0 did not say why (it was stopped, or had succeeded).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from typing import IO, List, Sequence, Tuple


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


#: Seconds rank 0 is given to end by itself when another process failed:
#: every process checks the same inputs, and rank 0's message (the one shown)
#: may still be on its way out.
GRACE_SECONDS = 5.0


def _wait(procs: List[subprocess.Popen], seconds: float) -> None:
    """Wait until ``procs`` have ended, at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        time.sleep(0.05)


def launch(argv: List[str], processes: int) -> int:
    """Run ``pyg-schnet train ARGV`` as ``processes`` data-parallel processes;
    their exit status (the first failure's, else 0)."""
    with ExitStack() as stack:
        logs = [stack.enter_context(tempfile.TemporaryFile("w+b")) for _ in range(1, processes)]
        status, procs = _run(argv, processes, logs)
        if status != 0 and procs[0].returncode <= 0:  # rank 0 gave no reason: the failed one's
            codes = [p.returncode for p in procs[1:]]
            failed = [i for i, c in enumerate(codes) if c > 0] or [
                i for i, c in enumerate(codes) if c != 0
            ]
            if failed:
                logs[failed[0]].seek(0)
                sys.stderr.write(logs[failed[0]].read().decode("utf-8", "replace"))
                sys.stderr.flush()
    return status


def _run(
    argv: List[str], processes: int, logs: Sequence[IO[bytes]]
) -> Tuple[int, List[subprocess.Popen]]:
    """Start the processes (rank ``r > 0`` writing its stderr to ``logs[r - 1]``),
    wait for them, stop the others when one fails; the exit status and the
    processes."""
    port = _free_port()
    procs: List[subprocess.Popen] = []
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
                stderr=None if rank == 0 else logs[rank - 1],
                preexec_fn=_die_with_parent,
            )
        )
    status = 0
    try:
        while any(p.poll() is None for p in procs):
            failed = [p for p in procs if p.returncode not in (None, 0)]
            if failed:
                status = failed[0].returncode
                if procs[0].returncode is None:  # rank 0 may be failing for the same reason
                    _wait(procs[:1], GRACE_SECONDS)
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
    return status, procs
