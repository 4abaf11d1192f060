"""The filter-weighted neighbour sum of an interaction block, and the edge
set it sums over: directed edges, or one row per unordered pair of a
symmetric radius graph (half the filter evaluations)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class EdgeSet(NamedTuple):
    """The edges an interaction block sums over.

    Either directed edges (``pairs=False``: ``out[dst] += h[src] * W``), or,
    for a symmetric radius graph and radial filters, one row per unordered
    pair standing for both directions (``pairs=True``): both directions share
    the filter weights, so the filter network runs on ``P = E / 2`` pairs, and
    the sum is a symmetric operator (its backward is the same sum with the
    gradient in place of the features).
    """

    src: Tensor  # [M] source atom j (for pairs: the smaller index)
    dst: Tensor  # [M] target atom i
    vec: Tensor  # [M, 3], r_src - r_dst
    dist: Tensor  # [M]
    pairs: bool

    @staticmethod
    def build(pos: Tensor, edge_index: Tensor, as_pairs: bool) -> "EdgeSet":
        """From a radius graph's directed edges ``[2, E]``: all of them, or
        (``as_pairs``, for a symmetric graph) the pairs ``src < dst``."""
        src, dst = edge_index
        if as_pairs:
            keep = src < dst
            src, dst = src[keep], dst[keep]
        vec = pos[src] - pos[dst]  # [M, 3]
        return EdgeSet(src, dst, vec, vec.norm(dim=-1), as_pairs)

    @staticmethod
    def from_pairs(pos: Tensor, pairs: Tensor, as_pairs: bool) -> "EdgeSet":
        """From unordered pairs ``[2, P]`` (``i < j``): the pairs themselves,
        or both directions of each as directed edges."""
        if not as_pairs:
            pairs = torch.cat([pairs, pairs.flip(0)], dim=1)  # [2, 2P]
        src, dst = pairs
        vec = pos[src] - pos[dst]  # [M, 3]
        return EdgeSet(src, dst, vec, vec.norm(dim=-1), as_pairs)


def is_symmetric(edge_index: Tensor, num_nodes: int) -> bool:
    """Whether every edge ``(j, i)`` has its reverse ``(i, j)`` and there are
    no self-loops (so the edges can be summed as pairs)."""
    src, dst = edge_index
    if bool((src == dst).any()):
        return False
    fwd = torch.sort(src * num_nodes + dst).values
    bwd = torch.sort(dst * num_nodes + src).values
    return torch.equal(fwd, bwd)


#: Bytes of a block of pairs in the blocked pair sums: small enough to stay in
#: a core's cache, large enough that a block's few operations cost more than
#: calling them (4 MiB measured as fast as 1 MiB and faster than 256 KiB).
CHUNK_BYTES = 4 << 20


def chunk_rows(x: Tensor) -> int:
    """Pairs per block of :data:`CHUNK_BYTES` for rows like ``x``'s."""
    return max(1, CHUNK_BYTES // max(1, x.size(1) * x.element_size()))


class SymmetricAggregate(torch.autograd.Function):
    """``out[i] = sum_{j ~ i} h[j] * W[pair(i, j)]`` over a symmetric graph.

    Works per pair (gather, in-place product, ``index_add_``) over blocks of
    :func:`chunk_rows` pairs, each block's product in one reused buffer, so
    that no ``[P, F]`` temporary is allocated: on CPU the allocation and first
    touch of large temporaries cost more than the arithmetic.
    """

    @staticmethod
    def _apply(h: Tensor, W: Tensor, pi: Tensor, pj: Tensor) -> Tensor:
        """The sum into ``pj`` from ``pi`` for every pair, then into ``pi``
        from ``pj``: each row receives its additions in pair order, the same
        whatever the block size (so the same bits as unblocked)."""
        P, rows = pi.numel(), chunk_rows(h)
        out = torch.zeros_like(h)
        buf = h.new_empty(min(rows, P), h.size(1))  # [rows, F]
        for src, dst in ((pi, pj), (pj, pi)):
            for a in range(0, P, rows):
                b = min(a + rows, P)
                g = torch.index_select(h, 0, src[a:b], out=buf[: b - a]).mul_(W[a:b])
                out.index_add_(0, dst[a:b], g)
        return out

    @staticmethod
    def forward(ctx, h: Tensor, W: Tensor, pi: Tensor, pj: Tensor) -> Tensor:
        ctx.save_for_backward(h, W, pi, pj)
        return SymmetricAggregate._apply(h, W, pi, pj)  # [N, F]

    @staticmethod
    def backward(ctx, grad: Tensor):
        h, W, pi, pj = ctx.saved_tensors
        grad = grad.contiguous()
        grad_h = grad_W = None
        if ctx.needs_input_grad[0]:  # the operator is symmetric
            grad_h = SymmetricAggregate._apply(grad, W, pi, pj)
        if ctx.needs_input_grad[1]:
            grad_W = h.index_select(0, pi).mul_(grad.index_select(0, pj))
            grad_W.add_(h.index_select(0, pj).mul_(grad.index_select(0, pi)))
        return grad_h, grad_W, None, None


def directed_sum(h: Tensor, W: Tensor, src: Tensor, dst: Tensor) -> Tensor:
    """``out[dst] += h[src] * W`` over directed edges (autograd does the backward)."""
    return torch.zeros_like(h).index_add_(0, dst, h.index_select(0, src) * W)


class PairAggregation:
    """The filter-weighted neighbour sum of a block: the symmetric pair sum
    (:class:`SymmetricAggregate`) for a pair edge set, :func:`directed_sum`
    otherwise. The fast mode passes a compiled variant
    (:class:`pyg_schnet.nn.fast.CompiledPairAggregation`). Holds no state."""

    def __call__(self, h: Tensor, W: Tensor, edges: EdgeSet) -> Tensor:
        if edges.pairs:
            return SymmetricAggregate.apply(h, W, edges.src, edges.dst)  # [N, F]
        return directed_sum(h, W, edges.src, edges.dst)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
