"""Adam as the trainer makes it (``fused=True``: one kernel over all parameters)
against PyTorch's default on CPU (a loop over the parameters), alternating in
one process: CPU seconds of 10 training steps (fast Gaussian SchNet, 3 blocks,
5 Å, batches of 50, one thread) and of the optimizer step alone, at the shipped
models' size (128 features) and the studies' (64). Run from the repository root::

    taskset -c 1 python experiments/results/optimizer/measure.py [ROUNDS]
"""

import statistics
import sys
import time

import torch

from pyg_schnet.data import QM9
from pyg_schnet.data.loader import MoleculeLoader
from pyg_schnet.nn.models import build

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 6
torch.set_num_threads(1)
torch.set_flush_denormal(True)
ds = QM9("data/qm9")
idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))
batches = list(MoleculeLoader(ds, idx[1000:1500], 50, target=7))


def steps(model, opt):
    for b in batches:
        loss = ((model(b.z, b.pos, b.batch).view(-1) - b.y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


for features in (128, 64):
    torch.manual_seed(0)
    model = build(
        filter="gaussian",
        hidden_channels=features,
        num_filters=features,
        num_interactions=3,
        cutoff=5.0,
        fast=True,
    ).train()
    opts = {
        "default": torch.optim.Adam(model.parameters(), lr=1e-5),
        "fused": torch.optim.Adam(model.parameters(), lr=1e-5, fused=True),
    }
    for opt in opts.values():
        steps(model, opt)  # warm-up, compiling
    train = {k: [] for k in opts}
    alone = {k: [] for k in opts}
    for r in range(ROUNDS):
        for k in list(opts) if r % 2 == 0 else list(opts)[::-1]:
            t0 = time.process_time()
            steps(model, opts[k])
            train[k].append(time.process_time() - t0)
            t0 = time.process_time()
            for _ in range(50):
                opts[k].step()
            alone[k].append((time.process_time() - t0) / 50 * 1e3)
    ratio = [d / f for d, f in zip(train["default"], train["fused"], strict=True)]
    print(
        f"{features} features: 10 steps default {statistics.median(train['default']):.3f} s, "
        f"fused {statistics.median(train['fused']):.3f} s, default / fused per round "
        f"{statistics.median(ratio):.3f} ({min(ratio):.3f}-{max(ratio):.3f}); the optimizer "
        f"step alone {statistics.median(alone['default']):.2f} ms against "
        f"{statistics.median(alone['fused']):.2f} ms"
    )
