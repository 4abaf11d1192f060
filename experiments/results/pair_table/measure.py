"""Training steps with each molecule's pairs found once (a ``PairTable``, as
``pyg-schnet train`` does for SchNet) against the radius graph searched at every
step, alternating in one process on the same batches: CPU seconds of 10
training steps (fused Adam; batches of 50 QM9 molecules, 5 Å, fast mode, one
thread), per round the ratio without / with the table. Sizes: the studies'
(64 features, 3 blocks) with the Gaussian and the coordinate filter, and the
shipped models' (128 features). Also the table's build time for all of QM9.
Run from the repository root::

    taskset -c 1 python experiments/results/pair_table/measure.py [ROUNDS]
"""

import statistics
import sys
import time

import torch

from pyg_schnet.data import QM9
from pyg_schnet.data.loader import MoleculeLoader, PairTable, apply_model
from pyg_schnet.nn.models import build

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 6
torch.set_num_threads(1)
torch.set_flush_denormal(True)
ds = QM9("data/qm9")
t0 = time.process_time()
table = PairTable.build(ds, torch.arange(len(ds)), 5.0)
print(f"{table}: built in {time.process_time() - t0:.1f} CPU s")
idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[1000:1500]
loaders = {
    "searched": MoleculeLoader(ds, idx, 50, target=7),
    "table": MoleculeLoader(ds, idx, 50, target=7, pairs=table),
}
SIZES = {
    "gaussian, 64 features": dict(filter="gaussian", hidden_channels=64, num_filters=64),
    "coords, 64 features": dict(filter="coords", hidden_channels=64, num_filters=64),
    "gaussian, 128 features": dict(filter="gaussian", hidden_channels=128, num_filters=128),
}


def steps(model, opt, loader):
    t0 = time.process_time()
    for b in loader:  # gathering the batch (and its pairs) is part of the step
        loss = ((apply_model(model, b).view(-1) - b.y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.process_time() - t0


for name, kw in SIZES.items():
    torch.manual_seed(0)
    model = build("schnet", num_interactions=3, cutoff=5.0, fast=True, **kw)
    opt = torch.optim.Adam(model.parameters(), lr=1e-5, fused=True)
    for loader in loaders.values():
        steps(model, opt, loader)  # warm-up (and compiling)
    times = {k: [] for k in loaders}
    for _ in range(ROUNDS):
        for k, loader in loaders.items():
            times[k].append(steps(model, opt, loader))
    ratio = [a / b for a, b in zip(times["searched"], times["table"], strict=True)]
    print(
        f"{name}: 10 steps searched {statistics.median(times['searched']):.3f} s, table "
        f"{statistics.median(times['table']):.3f} s; searched / table per round "
        f"{statistics.median(ratio):.3f} ({min(ratio):.3f}-{max(ratio):.3f})"
    )
