"""Training rates of the paper-size candidates (issue "Shipped models at the
paper's accuracy"), measured side by side so that the size comparison can give
each size the same compute as a budget in epochs (a time budget would follow
this machine's drifting speed). SchNet with the Gaussian filter, 128 features
and filters, fast mode, batches of 50 molecules of the cards' 110,000 training
molecules, one thread: training steps as the trainer takes them (fused Adam, the
weight average's update, each molecule's pairs found once at the size's cutoff by
a ``PairTable``, gathered inside the timed step) of each size in turn within each
of ``ROUNDS`` rounds (the same batches for every size), molecules per CPU second.
Run from the repository root::

    taskset -c 1 env OMP_NUM_THREADS=1 python experiments/results/paper_size/measure.py [ROUNDS]
"""

import statistics
import sys
import time

import torch

from pyg_schnet.data import QM9, nested_split
from pyg_schnet.data.loader import MoleculeLoader, PairTable, apply_model
from pyg_schnet.nn.models import build
from pyg_schnet.run.recipe import ExponentialMovingAverage

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
SIZES = {  # the spec's variants: blocks and cutoff
    "s3_5A": dict(num_interactions=3, cutoff=5.0),
    "s6_5A": dict(num_interactions=6, cutoff=5.0),
    "s6_10A": dict(num_interactions=6, cutoff=10.0),
}
torch.set_num_threads(1)
torch.set_flush_denormal(True)  # as pyg-schnet train does

ds = QM9("data/qm9")
split = nested_split(len(ds), 110000, 10000, 10000, 0)
train = torch.as_tensor(split.train_idx)[:750]
loaders = {  # 3 warm-up + 12 batches timed
    cutoff: MoleculeLoader(ds, train, 50, target=7, pairs=PairTable.build(ds, train, cutoff))
    for cutoff in {kw["cutoff"] for kw in SIZES.values()}
}
models, opts, averages = {}, {}, {}
for name, kw in SIZES.items():
    torch.manual_seed(0)
    models[name] = build("schnet", hidden_channels=128, num_filters=128, fast=True, **kw)
    opts[name] = torch.optim.Adam(models[name].parameters(), lr=1e-4, fused=True)
    averages[name] = ExponentialMovingAverage(models[name], 0.999)


def steps(name, index):
    m, opt = models[name], opts[name]
    loader = loaders[SIZES[name]["cutoff"]]
    m.train()
    for i in index:
        b = loader.gather(train[50 * i : 50 * (i + 1)])
        loss = ((apply_model(m, b).view(-1) - b.y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        averages[name].update(m)


for name in SIZES:
    steps(name, range(3))  # warm-up (and compiling)
rates = {name: [] for name in SIZES}
mols = len(train) - 150
for _ in range(ROUNDS):
    for name in SIZES:
        t0 = time.process_time()
        steps(name, range(3, 15))
        rates[name].append(mols / (time.process_time() - t0))
ref = "s3_5A"
for name, r in rates.items():
    ratio = [x / y for x, y in zip(r, rates[ref], strict=True)]
    print(
        f"{name}: {statistics.median(r):.0f} training molecules per CPU second (median of "
        f"{ROUNDS}; {min(r):.0f}-{max(r):.0f}); per round over {ref}: "
        f"{statistics.median(ratio):.3f} ({min(ratio):.3f}-{max(ratio):.3f})"
    )
