"""How close a training step is to this CPU's matrix-multiply limit.

A model's dense layers (every :class:`torch.nn.Linear` call of one training
step, at the shapes it really ran: in the fast mode a filter network runs on
its table's grid, not on every pair) are the work no implementation of the
same model can avoid. :func:`dense_bound` records those shapes, times each
matrix product alone at one thread, and states what the step would take if it
did nothing but those products:

* at each shape's own measured rate (``dense_seconds``), and
* at the best rate measured over the shapes (``peak_seconds``, the CPU's
  matrix-multiply peak for this model's shapes).

``fraction = dense_seconds / step_seconds`` is the share of the step's time
the unavoidable products would take; 1.0 would be a step with no other cost.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Tuple

import torch
from torch import Tensor, nn

#: (rows, in_features, out_features, whether the input needs a gradient)
Shape = Tuple[int, int, int, bool]


@dataclass
class DenseBound:
    """A training step's dense layers against this CPU's matrix-multiply rate."""

    flops: float  # multiply-adds x 2 of the step's products (forward and backward)
    dense_seconds: float  # the products alone, each at its measured rate
    peak_gflops: float  # the best rate over the model's shapes, one thread
    products: int  # matrix products per step

    @property
    def peak_seconds(self) -> float:
        return self.flops / (self.peak_gflops * 1e9)


def linear_shapes(model: nn.Module, forward: Callable[[], Any]) -> List[Shape]:
    """The shape of every :class:`~torch.nn.Linear` call while ``forward`` runs."""
    shapes: List[Shape] = []

    def hook(mod: nn.Linear, inputs: Tuple[Tensor, ...], _out: Tensor) -> None:
        x = inputs[0]
        k = x.shape[-1]
        shapes.append((x.numel() // max(k, 1), k, mod.out_features, x.requires_grad))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Linear)]
    try:
        forward()
    finally:
        for h in handles:
            h.remove()
    return shapes


def _gemms(shape: Shape) -> List[Tuple[int, int, int]]:
    """The (m, k, n) products of one Linear call in a training step: forward,
    the weight's gradient, and the input's gradient where the input needs one."""
    m, k, n, needs_grad = shape
    out = [(m, k, n), (n, m, k)]  # y = x W^T; dW = dy^T x
    if needs_grad:
        out.append((m, n, k))  # dx = dy W
    return out


def _seconds(m: int, k: int, n: int, repeats: int = 3, min_time: float = 0.01) -> float:
    """The fastest time of one [m, k] x [k, n] product, from ``repeats`` timings
    of loops long enough to measure."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    out = torch.empty(m, n)
    torch.mm(a, b, out=out)
    loops = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(loops):
            torch.mm(a, b, out=out)
        if time.perf_counter() - t0 >= min_time:
            break
        loops *= 2
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(loops):
            torch.mm(a, b, out=out)
        best = min(best, (time.perf_counter() - t0) / loops)
    return best


def dense_bound(shapes: List[Shape]) -> DenseBound:
    """Time every distinct product of a training step with these Linear calls at
    the current thread count (call under ``torch.set_num_threads(1)``)."""
    count: Dict[Tuple[int, int, int], int] = Counter(g for s in shapes for g in _gemms(s))
    seconds = {g: _seconds(*g) for g in count if min(g) > 0}
    flops = sum(2.0 * m * k * n * c for (m, k, n), c in count.items())
    rates = [2.0 * m * k * n / t for (m, k, n), t in seconds.items()]
    return DenseBound(
        flops=flops,
        dense_seconds=sum(t * count[g] for g, t in seconds.items()),
        peak_gflops=max(rates) / 1e9 if rates else float("nan"),
        products=sum(count.values()),
    )
