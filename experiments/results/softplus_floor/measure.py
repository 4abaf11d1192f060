"""The shifted softplus' floor with one backward pass (``_FlooredSoftplus``)
against the form it replaced (``softplus(x.clamp(min=-18))`` under autograd: the
clamp's mask is a second backward pass), alternating in one process: CPU seconds
of 10 training steps (Adam, batches of 50, one thread, denormals flushed as
``pyg-schnet train`` does), per round, for the shipped models' size in the fast
mode (Gaussian filter, 128 features, 3 blocks, 5 Å) and the studies' size with
exact ``coords`` (64, 3, 5 Å). Run from the repository root::

    taskset -c 1 python experiments/results/softplus_floor/measure.py [ROUNDS]
"""

import statistics
import sys
import time
from unittest import mock

import torch

from pyg_schnet.data import QM9
from pyg_schnet.data.loader import MoleculeLoader
from pyg_schnet.nn.filters import ShiftedSoftplus, shifted_softplus
from pyg_schnet.nn.models import build

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
torch.set_num_threads(1)
torch.set_flush_denormal(True)


ONE_PASS = ShiftedSoftplus.forward


def two_pass_forward(self, x):  # the form before: the clamp recorded by autograd
    if torch.is_grad_enabled() and x.requires_grad:
        return shifted_softplus(x)
    return ONE_PASS(self, x)


def steps(model, opt, batches):
    for b in batches:
        loss = ((model(b.z, b.pos, b.batch).view(-1) - b.y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


ds = QM9("data/qm9")
idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))
batches = list(MoleculeLoader(ds, idx[1000:1600], 50, target=7))  # 2 warm-up + 10 timed
sizes = {
    "shipped size, gaussian, fast": dict(filter="gaussian", hidden_channels=128, fast=True),
    "studies' size, coords, exact": dict(filter="coords", hidden_channels=64, fast=False),
}
for name, kw in sizes.items():
    torch.manual_seed(0)
    model = build(num_filters=kw["hidden_channels"], num_interactions=3, cutoff=5.0, **kw)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    steps(model, opt, batches[:2])
    t = {"one pass": [], "two passes": []}
    for r in range(ROUNDS):
        for form in ("one pass", "two passes") if r % 2 == 0 else ("two passes", "one pass"):
            with mock.patch.object(
                ShiftedSoftplus,
                "forward",
                ONE_PASS if form == "one pass" else two_pass_forward,
            ):
                t0 = time.process_time()
                steps(model, opt, batches[2:])
                t[form].append(time.process_time() - t0)
    ratio = [b / a for a, b in zip(t["one pass"], t["two passes"], strict=True)]
    print(
        f"{name}: one pass {statistics.median(t['one pass']):.3f} s, two passes "
        f"{statistics.median(t['two passes']):.3f} s per 10 steps; two / one per round "
        f"{statistics.median(ratio):.3f} ({min(ratio):.3f}-{max(ratio):.3f})"
    )
