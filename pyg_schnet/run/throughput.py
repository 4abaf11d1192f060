"""How many threads and processes train fastest on this machine, and the
default that follows from it.

``pyg-schnet throughput`` times real ``pyg-schnet train`` runs, the same
command with only the threads or processes changed, for two model sizes (the
quickstart's and PyG's default SchNet), and prints training molecules per
second (all processes together) for each setting; the README's rule and
figures come from it. :func:`default_threads` is that rule.

On 2 cores (README, "Threads and processes"): a small model's operations are
too small to split across threads, so one thread per process is fastest and
two processes (``torchrun`` or ``--jobs`` in a study) use the second core; at
PyG's size the operations are large enough for two threads to pay.
"""

from __future__ import annotations

import argparse
import csv
import os
import os.path as osp
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

import yaml

from pyg_schnet.errors import UserError
from pyg_schnet.run.distributed import usable_cpus
from pyg_schnet.run.rundir import RunDir

#: Work per molecule (``num_filters`` times edges per molecule times blocks,
#: from :func:`work_per_molecule`) above which one process uses every core:
#: between the quickstart model (0.054 M) and PyG's size (0.24 M), where the
#: measured winner changes (README).
THREADS_WORK_THRESHOLD = 1.2e5

#: Mean neighbours per atom in QM9 within a cutoff (Å): measured on 3,000
#: random molecules (18.1 atoms each) with the radius graph's cap of 32;
#: linear in between.
_NEIGHBOURS = (
    (2.0, 2.64),
    (3.0, 8.26),
    (4.0, 12.56),
    (5.0, 15.65),
    (6.0, 16.99),
    (8.0, 17.59),
    (10.0, 17.62),
)

#: The two model sizes of the grid: the quickstart model and PyG's default SchNet.
SIZES: Dict[str, Dict[str, Any]] = {
    "quickstart": dict(
        hidden_channels=64,
        num_filters=64,
        num_interactions=3,
        cutoff=5.0,
        filter={"name": "gaussian", "num_gaussians": 25},
        batch_size=50,
    ),
    "pyg": dict(
        hidden_channels=128,
        num_filters=128,
        num_interactions=6,
        cutoff=10.0,
        filter={"name": "gaussian", "num_gaussians": 50},
        batch_size=100,
    ),
}
#: (threads per process, processes)
SETTINGS: List[Tuple[int, int]] = [(1, 1), (2, 1), (1, 2)]


def neighbours_per_atom(cutoff: float) -> float:
    pts = _NEIGHBOURS
    if cutoff <= pts[0][0]:
        return pts[0][1] * cutoff / pts[0][0]
    for (c0, n0), (c1, n1) in zip(pts, pts[1:], strict=False):
        if cutoff <= c1:
            return n0 + (n1 - n0) * (cutoff - c0) / (c1 - c0)
    return pts[-1][1]


def work_per_molecule(num_filters: int, num_interactions: int, cutoff: float) -> float:
    """A size measure of one molecule's training step: filter width times
    edges (18 atoms per QM9 molecule) times interaction blocks."""
    return num_filters * 18.0 * neighbours_per_atom(cutoff) * num_interactions


def default_threads(
    num_filters: int,
    num_interactions: int,
    cutoff: float,
    processes: int = 1,
    cores: Optional[int] = None,
) -> int:
    """Threads per process when the config sets none: one for small models,
    the process's share of the cores for large ones (the measured rule)."""
    cores = cores or usable_cpus()
    share = max(1, cores // max(1, processes))
    if work_per_molecule(num_filters, num_interactions, cutoff) < THREADS_WORK_THRESHOLD:
        return 1
    return share


def _run(
    size: str,
    threads: int,
    processes: int,
    root: Optional[str],
    source: str,
    molecules: int,
    epochs: int,
    work: str,
    wait_policy: Optional[str] = None,
    fast: bool = True,
) -> float:
    """Training molecules/s of one setting: the median of the epochs after
    the first (warm-up), summed over processes."""
    out = tempfile.mkdtemp(prefix=f"{size}_t{threads}_p{processes}_", dir=work)
    cfg = dict(
        SIZES[size],
        root=root,
        source=source,
        max_molecules=molecules + 200,
        train_size=molecules,
        val_size=100,
        test_size=100,
        epochs=epochs,
        patience=epochs,
        lr=1e-3,
        out=out,
        wandb="disabled",
        fast=fast,
    )
    if threads:  # 0: the default (neither threads nor processes set)
        cfg.update(num_threads=threads, processes=processes)
    path = osp.join(out, "config_in.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    cmd = [
        sys.executable,
        "-m",
        "pyg_schnet.cli",
        "train",
        "--config",
        path,
        "--quiet",
        "--overwrite",
    ]
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    if wait_policy:
        env["OMP_WAIT_POLICY"] = wait_policy
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise UserError(
            f"throughput: training failed ({size}, {threads} threads, {processes} "
            f"processes): {proc.stderr.strip().splitlines()[-1:]}"
        )
    with open(RunDir(out).log_path) as f:
        rows = list(csv.DictReader(f))
    # log.csv: molecules/s of all ranks together (the epoch's molecules over its seconds)
    return statistics.median(float(r["molecules_per_second"]) for r in rows[1:])


def run(a: argparse.Namespace) -> int:
    """Time the grid the command line ``a`` asks for (see the module docstring)."""
    if a.rounds < 1 or a.epochs < 2:
        raise UserError("throughput: need --rounds >= 1 and --epochs >= 2")
    cores = usable_cpus()
    print(
        f"{cores} cores; training molecules/s of all processes together, median of epochs "
        f"2..{a.epochs}; settings alternate within each round"
    )
    results: Dict[Tuple[str, int, int], List[float]] = {}
    with tempfile.TemporaryDirectory() as work:
        for _ in range(a.rounds):
            for size in a.sizes:
                molecules = a.molecules or (4000 if size == "quickstart" else 1500)
                settings = SETTINGS + [(0, 0)]  # the default: no thread or process setting
                for threads, procs in settings:
                    t0 = time.perf_counter()
                    rate = _run(
                        size,
                        threads,
                        procs,
                        a.root,
                        a.source,
                        molecules,
                        a.epochs,
                        work,
                        fast=a.fast,
                    )
                    results.setdefault((size, threads, procs), []).append(rate)
                    name = "default" if not threads else f"{threads} thr x {procs} proc"
                    print(
                        f"  {size:<11}{name:<16}{rate:8.0f} mol/s "
                        f"({time.perf_counter() - t0:.0f} s)",
                        flush=True,
                    )
    for size in a.sizes:
        m = SIZES[size]
        work_ = work_per_molecule(m["num_filters"], m["num_interactions"], m["cutoff"])
        rates = {k[1:]: statistics.median(v) for k, v in results.items() if k[0] == size}
        best = max((k for k in rates if k[0]), key=lambda k: rates[k])
        cells = ", ".join(f"{t} thr x {pr} proc {r:.0f}" for (t, pr), r in rates.items() if t)
        threads = default_threads(m["num_filters"], m["num_interactions"], m["cutoff"], cores)
        print(
            f"{size} (work {work_ / 1e6:.3f} M): {cells}; best {best[0]} thr x {best[1]} "
            f"proc; default ({cores} proc x {threads} thr) {rates[(0, 0)]:.0f} = "
            f"{rates[(0, 0)] / rates[best]:.2f} of best"
        )
    return 0
