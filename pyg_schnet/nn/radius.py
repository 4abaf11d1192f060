"""Radius-graph edges on torch-cluster, with the truncation made visible.

PyG's ``radius_graph`` silently drops neighbours beyond ``max_num_neighbors``
and, in PyG 2.8, needs ``pyg-lib``. Here the full radius graph comes from
:func:`torch_cluster.radius_graph`; when a node has more neighbours than the
cap, its *nearest* ``max_num_neighbors`` are kept and the number of dropped
edges is reported. Every model builds its edges here; the transform on PyG's
``Data`` (:class:`~pyg_schnet.nn.graph.RadiusGraph`) is in
:mod:`pyg_schnet.nn.graph`, so a model that only predicts does not import PyG.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple, Optional

import torch
import torch_cluster
from torch import Tensor


class Edges(NamedTuple):
    edge_index: Tensor  # [2, E], row 0 = source j, row 1 = target i
    edge_vec: Tensor  # [E, 3], r_j - r_i
    edge_weight: Tensor  # [E], |r_j - r_i|
    num_dropped: int  # edges removed by the neighbour cap


def radius_edges(
    pos: Tensor,
    batch: Optional[Tensor] = None,
    cutoff: float = 10.0,
    max_num_neighbors: int = 32,
    warn: bool = True,
) -> Edges:
    """All pairs ``i != j`` of the same graph with ``|r_j - r_i| <= cutoff``,
    capped at the ``max_num_neighbors`` nearest sources per target.

    Args:
        pos (Tensor): Positions ``[N, 3]``.
        batch (Tensor, optional): Graph of each node ``[N]``, sorted.
            (default: :obj:`None`, one graph)
        cutoff (float): Radius in Å. (default: :obj:`10.0`)
        max_num_neighbors (int): Cap on incoming edges per node. (default: :obj:`32`)
        warn (bool): Warn with the number of dropped edges. (default: :obj:`True`)
    """
    n = pos.size(0)
    if batch is None:
        batch = pos.new_zeros(n, dtype=torch.long)
    if n == 0:
        empty = torch.zeros(2, 0, dtype=torch.long, device=pos.device)
        return Edges(empty, pos.new_zeros(0, 3), pos.new_zeros(0), 0)
    # The largest graph bounds the true neighbour count: ask for all of them.
    full_cap = int(torch.bincount(batch).max())
    edge_index = torch_cluster.radius_graph(
        pos, r=cutoff, batch=batch, loop=False, max_num_neighbors=full_cap, flow="source_to_target"
    )
    src, dst = edge_index
    edge_vec = pos[src] - pos[dst]  # [E, 3]
    dist = edge_vec.norm(dim=-1)  # [E]
    num_dropped = 0
    deg = torch.bincount(dst, minlength=n)
    if int(deg.max()) > max_num_neighbors:
        # keep the nearest max_num_neighbors sources of every target
        order = torch.argsort(dist, stable=True)
        order = order[torch.argsort(dst[order], stable=True)]
        start = torch.cumsum(deg, 0) - deg  # first edge of each target in `order`
        rank = torch.arange(order.numel(), device=pos.device) - start[dst[order]]
        keep = order[rank < max_num_neighbors].sort().values
        num_dropped = int(edge_index.size(1) - keep.numel())
        edge_index, edge_vec, dist = edge_index[:, keep], edge_vec[keep], dist[keep]
        if warn:
            warnings.warn(
                f"radius graph: max_num_neighbors={max_num_neighbors} dropped "
                f"{num_dropped} of {num_dropped + keep.numel()} edges (kept the nearest)",
                stacklevel=2,
            )
    return Edges(edge_index, edge_vec, dist, num_dropped)
