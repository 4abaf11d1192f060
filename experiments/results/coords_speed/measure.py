"""The fast mode's coordinate filters (issue 31), on the mechanism study's
trained ``coords`` and ``coords_basis`` models (seed 0, the studies' size: 64
features, 3 blocks, 5 Å): how far the fast path's predictions are from the
exact path's on 1,000 random QM9 molecules (batches of 50), and training
molecules per CPU second of both paths, alternating within each of ``ROUNDS``
rounds (Adam steps from the trained weights, batches of 50, one thread). Run
from the repository root (the checkout's ``pyg_schnet`` is the one timed)::

    taskset -c 1 env OMP_NUM_THREADS=1 python experiments/results/coords_speed/measure.py [ROUNDS]
"""

import statistics
import sys
import time

import torch

from pyg_schnet.data import QM9
from pyg_schnet.data.loader import MoleculeLoader
from pyg_schnet.nn.models import build
from pyg_schnet.run.checkpoint import load_checkpoint

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
RUNS = "experiments/studies/mechanism/runs/U0/{}/n20000_seed0/model.pt"
torch.set_num_threads(1)
torch.set_flush_denormal(True)  # as pyg-schnet train does

ds = QM9("data/qm9")
idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))
check = list(MoleculeLoader(ds, idx[:1000], 50, target=7))
train = list(MoleculeLoader(ds, idx[1000:1600], 50, target=7))  # 2 warm-up + 10 timed


def models(name):
    ckpt = load_checkpoint(RUNS.format(name))
    out = {}
    for fast in (False, True):
        m = build(**dict(ckpt["hparams"], fast=fast))
        m.load_state_dict(ckpt["model"])
        out["fast" if fast else "exact"] = m
    return out


def train_steps(m, opt, batches):
    m.train()
    for b in batches:
        loss = ((m(b.z, b.pos, b.batch).view(-1) - b.y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


for name in ("coords", "coords_basis"):
    pair = models(name)
    with torch.no_grad():
        pred = {
            k: torch.cat([m.eval()(b.z, b.pos, b.batch).view(-1) for b in check])
            for k, m in pair.items()
        }
        for m in pair.values():  # the learned part alone: without the atom references
            m.atomref.zero_()
        learned = {
            k: torch.cat([m(b.z, b.pos, b.batch).view(-1) for b in check]) for k, m in pair.items()
        }
    for what, p in (("predictions", pred), ("learned part (no atom references)", learned)):
        diff = (p["fast"] - p["exact"]).abs()
        print(
            f"{name}, {what}, fast - exact on 1,000 molecules: max {1e3 * float(diff.max()):.3f}"
            f" meV, mean {1e3 * float(diff.mean()):.4f} meV, max / spread (std) of the exact "
            f"ones {float(diff.max() / p['exact'].std()):.1e}"
        )
    pair = models(name)  # the atom references back
    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-4) for k, m in pair.items()}
    for k, m in pair.items():
        train_steps(m, opts[k], train[:2])  # warm-up (and the fast path's compiling)
    rates = {k: [] for k in pair}
    mols = sum(b.num_graphs for b in train[2:])
    for _ in range(ROUNDS):
        for k, m in pair.items():
            t0 = time.process_time()
            train_steps(m, opts[k], train[2:])
            rates[k].append(mols / (time.process_time() - t0))
    for k, r in rates.items():
        print(
            f"{name} {k}: training {statistics.median(r):.0f} molecules per CPU second "
            f"(median of {ROUNDS}; {min(r):.0f}-{max(r):.0f})"
        )
    ratio = [f / e for f, e in zip(rates["fast"], rates["exact"], strict=True)]
    print(
        f"{name}: fast / exact per round {statistics.median(ratio):.2f}x "
        f"({min(ratio):.2f}-{max(ratio):.2f})"
    )
