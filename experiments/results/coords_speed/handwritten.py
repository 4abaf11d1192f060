"""A hand-written autograd function for ``coords``' fast path (issue 31), measured
against the shipped one (``CompiledCoordsAggregation``, whose backward
``torch.compile`` generates) and the exact path, on the mechanism study's trained
``coords`` model (seed 0, the studies' size), training molecules per CPU second
alternating within each round (Adam from the trained weights, batches of 50, one
thread). Not shipped: it measured no faster (``handwritten.txt``).

The function: the first layer of both directions in the softplus' loop
(``b1 +- r w1^T``, three products per value), the softplus as
``max(x, 0) + log(1 + exp(-|x|)) - ln 2`` (0.65 of ``softplus``'s time in
generated code), the second layer as one ``[2P, H] x [H, F]`` product, the pair
sum; the backward as two generated kernels (gathers and scatters; the softplus
slope ``1 - exp(-s) / 2`` from the saved output) around plain ``mm`` for the
three weight and input gradients, column sums as ``sum``. Run from the
repository root::

    taskset -c 1 env OMP_NUM_THREADS=1 \
        python experiments/results/coords_speed/handwritten.py [ROUNDS]
"""

import math
import statistics
import sys
import time

import torch
from torch import Tensor

from pyg_schnet.data import QM9
from pyg_schnet.data.loader import MoleculeLoader
from pyg_schnet.nn.fast import CompiledCoordsAggregation, CompiledPairAggregation, FilterTable
from pyg_schnet.nn.filters import CoordsFilter, make_filter, mlp_layers
from pyg_schnet.nn.models import build
from pyg_schnet.nn.schnet import MODEL_KEYS, SchNet
from pyg_schnet.run.checkpoint import load_checkpoint
from steps import train_steps

RUN = "experiments/studies/mechanism_time/runs/U0/coords/n20000_seed0/model.pt"


def compiled(fn):
    return torch.compile(fn, dynamic=True, options={"cpp.threads": 1})


def ssp(x: Tensor) -> Tensor:
    return x.clamp(min=0.0) + torch.log(1.0 + torch.exp(-x.abs())) - math.log(2.0)


def first_layer(vec, w1, b1, act=ssp):
    """``act`` of the first layer at ``r`` and at ``-r`` ``[2P, H]``."""
    a = vec[:, 0:1] * w1[:, 0] + vec[:, 1:2] * w1[:, 1] + vec[:, 2:3] * w1[:, 2]  # [P, H]
    return torch.cat([act(b1 + a), act(b1 - a)])


def pair_sum(h, y, env, pi, pj):
    """``out[pj] += h[pi] * W(r)``, ``out[pi] += h[pj] * W(-r)``, ``W = y * env``."""
    P = pi.size(0)
    e = env.unsqueeze(-1)
    out = torch.zeros_like(h)
    out.index_add_(0, pj, h.index_select(0, pi) * y[:P] * e)
    return out.index_add_(0, pi, h.index_select(0, pj) * y[P:] * e)


@compiled
def forward_kernel(vec, w1, b1, env, w2, b2, h, pi, pj):
    s = first_layer(vec, w1, b1)  # [2P, H]
    y = torch.addmm(b2, s, w2.t())  # [2P, F]
    return pair_sum(h, y, env, pi, pj), s, y


@compiled
def pairs_backward(g, h, y, env, pi, pj):
    P = pi.size(0)
    e = env.unsqueeze(-1)
    g_j, g_i = g.index_select(0, pj), g.index_select(0, pi)
    dw_j, dw_i = h.index_select(0, pi) * g_j, h.index_select(0, pj) * g_i
    dh = torch.zeros_like(h)
    dh.index_add_(0, pi, y[:P] * e * g_j)
    dh.index_add_(0, pj, y[P:] * e * g_i)
    return dh, torch.cat([dw_j * e, dw_i * e]), (dw_j * y[:P] + dw_i * y[P:]).sum(-1)


@compiled
def slope(ds, s):
    return ds * (1.0 - 0.5 * torch.exp(-s)).clamp(min=0.0)


class CoordsPairs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, vec, w1, b1, env, w2, b2, h, pi, pj):
        out, s, y = forward_kernel(vec, w1, b1, env, w2, b2, h, pi, pj)
        ctx.save_for_backward(vec, w1, s, y, env, w2, h, pi, pj)
        return out

    @staticmethod
    def backward(ctx, g):
        vec, w1, s, y, env, w2, h, pi, pj = ctx.saved_tensors
        dh, dy, denv = pairs_backward(g.contiguous(), h, y, env, pi, pj)
        dw2, db2 = dy.t().mm(s), dy.sum(0)
        dpre = slope(dy.mm(w2), s)  # [2P, H]
        dw1 = torch.cat([vec, -vec]).t().mm(dpre).t()  # [H, 3]
        dvec = None
        if ctx.needs_input_grad[0]:
            t = dpre.mm(w1)
            dvec = t[: pi.size(0)] - t[pi.size(0) :]
        return dvec, dw1, dpre.sum(0), denv, dw2, db2, dh, None, None


class HandwrittenCoordsAggregation(CompiledCoordsAggregation):
    """``coords`` through :class:`CoordsPairs`; the shipped path otherwise."""

    def __call__(self, filter, h, edges):
        if not (isinstance(filter, CoordsFilter) and edges.pairs):
            return super().__call__(filter, h, edges)
        first, last = mlp_layers(filter.mlp)
        env = filter.envelope(edges.dist)
        return CoordsPairs.apply(
            edges.vec, first.weight, first.bias, env, last.weight, last.bias, h,
            edges.src, edges.dst,
        )  # fmt: skip


def main() -> None:
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)  # as pyg-schnet train does
    ckpt = load_checkpoint(RUN)
    hp = dict(ckpt["hparams"])
    models = {"exact": build(**dict(hp, fast=False)), "generated": build(**dict(hp, fast=True))}
    f = make_filter("coords", num_filters=hp["num_filters"], cutoff=hp["cutoff"])
    models["hand-written"] = SchNet(
        f,
        **{k: hp[k] for k in MODEL_KEYS if k in hp},
        filter_table=FilterTable(),
        aggregation=CompiledPairAggregation(),
        coords_aggregation=HandwrittenCoordsAggregation(),
    )
    for m in models.values():
        m.load_state_dict(ckpt["model"])

    ds = QM9("data/qm9")
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))
    check = list(MoleculeLoader(ds, idx[:500], 50, target=7))
    train = list(MoleculeLoader(ds, idx[1000:1600], 50, target=7))  # 2 warm-up + 10 timed

    with torch.no_grad():
        pred = {
            k: torch.cat([m.eval()(b.z, b.pos, b.batch).view(-1) for b in check])
            for k, m in models.items()
        }
    for k in ("generated", "hand-written"):
        d = (pred[k] - pred["exact"]).abs().max()
        print(f"{k} - exact on 500 molecules: max {1e3 * float(d):.3f} meV")

    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-4) for k, m in models.items()}
    for k, m in models.items():
        train_steps(m, opts[k], train[:2])  # warm-up and compiling
    times = {k: [] for k in models}
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    for _ in range(rounds):
        for k, m in models.items():
            t0 = time.process_time()
            train_steps(m, opts[k], train[2:])
            times[k].append(time.process_time() - t0)
    for k, t in times.items():
        print(f"{k}: {statistics.median(t):.3f} s per 10 batches ({min(t):.3f}-{max(t):.3f})")
    for k in ("generated", "hand-written"):
        r = [e / t for e, t in zip(times["exact"], times[k], strict=True)]
        print(f"{k} / exact per round: {statistics.median(r):.2f}x ({min(r):.2f}-{max(r):.2f})")


if __name__ == "__main__":
    main()
