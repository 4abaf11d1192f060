"""The weight average's update as the trainer makes it (one ``_foreach_lerp_``
over all parameters) against the per-parameter loop it replaced, alternating in
one process: milliseconds per update, fast Gaussian SchNet with 128 features
(the shipped size) at 3 and 6 blocks, one thread. Both forms are checked to give
the same average first. Run from the repository root::

    taskset -c 1 python experiments/results/optimizer/ema.py [ROUNDS]
"""

import statistics
import sys
import time

import torch

from pyg_schnet.nn.models import build
from pyg_schnet.run.recipe import ExponentialMovingAverage

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 6
UPDATES = 300
torch.set_num_threads(1)


class LoopAverage(ExponentialMovingAverage):
    """The update before: one ``lerp_`` per parameter."""

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        for avg, p in zip(self.module.parameters(), model.parameters(), strict=True):
            avg.lerp_(p.detach(), 1.0 - d)
        for avg_b, b in zip(self.module.buffers(), model.buffers(), strict=True):
            avg_b.copy_(b)


def per_update(average, model):
    t0 = time.perf_counter()
    for _ in range(UPDATES):
        average.update(model)
    return (time.perf_counter() - t0) / UPDATES * 1e3


for blocks in (3, 6):
    torch.manual_seed(0)
    model = build("schnet", hidden_channels=128, num_filters=128, num_interactions=blocks)
    forms = {"loop": LoopAverage(model, 0.999), "foreach": ExponentialMovingAverage(model, 0.999)}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    for average in forms.values():
        average.update(model)
    same = all(
        torch.equal(a, b)
        for a, b in zip(
            forms["loop"].module.parameters(), forms["foreach"].module.parameters(), strict=True
        )
    )
    times = {name: [] for name in forms}
    for _ in range(ROUNDS):
        for name, average in forms.items():
            times[name].append(per_update(average, model))
    ratio = [a / b for a, b in zip(times["loop"], times["foreach"], strict=True)]
    n = sum(1 for _ in model.parameters())
    print(
        f"{blocks} blocks ({n} parameter tensors): loop {statistics.median(times['loop']):.3f} ms, "
        f"foreach {statistics.median(times['foreach']):.3f} ms per update, loop / foreach per "
        f"round {statistics.median(ratio):.2f} ({min(ratio):.2f}-{max(ratio):.2f}); "
        f"the same average: {same}"
    )
