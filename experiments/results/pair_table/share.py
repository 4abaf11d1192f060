"""What the per-step radius-graph search costs a SchNet training step, before
the pair table: milliseconds per batch of the search as ``SchNet.forward`` ran
it (``radius_edges``, torch-cluster, then the pairs and their distances,
``EdgeSet.build``) against a whole training step (fast Gaussian SchNet, 3
blocks, 5 Å, batches of 50, fused Adam, one thread), medians of 3 rounds over
20 batches, at the studies' size (64 features) and the shipped one (128).
Run from the repository root::

    taskset -c 1 python experiments/results/pair_table/share.py
"""

import statistics
import time

import torch

from pyg_schnet.data import QM9
from pyg_schnet.data.loader import MoleculeLoader
from pyg_schnet.nn.aggregation import EdgeSet
from pyg_schnet.nn.models import build
from pyg_schnet.nn.radius import radius_edges

torch.set_num_threads(1)
torch.set_flush_denormal(True)
ds = QM9("data/qm9")
idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:1000]
batches = list(MoleculeLoader(ds, idx, 50, target=7))


def step(model, opt, b):
    """A training step as before the table: the model searches its graph."""
    loss = ((model(b.z, b.pos, b.batch).view(-1) - b.y) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


for features in (64, 128):
    torch.manual_seed(0)
    model = build(
        "schnet",
        hidden_channels=features,
        num_filters=features,
        num_interactions=3,
        cutoff=5.0,
        fast=True,
    )
    opt = torch.optim.Adam(model.parameters(), fused=True)

    for b in batches[:3]:
        step(model, opt, b)  # warm-up (and compiling)
    search, steps = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        for b in batches:
            edges = radius_edges(b.pos, b.batch, 5.0, 32)
            EdgeSet.build(b.pos, edges.edge_index, True)
        search.append((time.perf_counter() - t0) / len(batches) * 1e3)
        t0 = time.perf_counter()
        for b in batches:
            step(model, opt, b)
        steps.append((time.perf_counter() - t0) / len(batches) * 1e3)
    s, t = statistics.median(search), statistics.median(steps)
    print(f"{features} features: search {s:.2f} ms of a {t:.2f} ms step ({s / t:.1%})")
