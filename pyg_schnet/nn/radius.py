"""Radius-graph edges on torch-cluster, with the truncation made visible.

PyG's ``radius_graph`` silently drops neighbours beyond ``max_num_neighbors``
and, in PyG 2.8, needs ``pyg-lib``. Here the full radius graph comes from
:func:`torch_cluster.radius_graph`; when a node has more neighbours than the
cap, its *nearest* ``max_num_neighbors`` are kept and the number of dropped
edges is reported. Every model builds its edges here; the transform on PyG's
``Data`` (:class:`~pyg_schnet.nn.graph.RadiusGraph`) is in
:mod:`pyg_schnet.nn.graph`, so a model that only predicts does not import PyG.
Nor scipy: torch-cluster's package imports it (for ``nearest``, 0.5 s of a
one-thread ``predict``), so only its radius operator is loaded
(:func:`_radius_graph`).
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import os.path as osp
import sys
import warnings
from typing import Callable, NamedTuple, Optional

import torch
from torch import Tensor


@functools.lru_cache(maxsize=None)
def _radius_graph() -> Callable[..., Tensor]:
    """:func:`torch_cluster.radius_graph` itself (found once per process):
    from the imported package if something imported it, else from its
    ``radius`` module and compiled operator alone (the package's ``__init__``
    loads every operator and imports scipy)."""
    if "torch_cluster" in sys.modules:
        return sys.modules["torch_cluster"].radius_graph
    spec = importlib.util.find_spec("torch_cluster")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("torch-cluster is not installed (see the README's install command)")
    folder = list(spec.submodule_search_locations)[0]
    for library in ("_version", "_radius"):
        found = importlib.machinery.PathFinder().find_spec(f"{library}_cpu", [folder])
        found = importlib.machinery.PathFinder().find_spec(f"{library}_cuda", [folder]) or found
        if found is None or found.origin is None:
            raise ImportError(f"torch-cluster in {folder} has no {library} operator")
        torch.ops.load_library(found.origin)  # loading one twice is a no-op
    module_spec = importlib.util.spec_from_file_location(
        "pyg_schnet._torch_cluster_radius", osp.join(folder, "radius.py")
    )
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.radius_graph


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
    edge_index = _radius_graph()(
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
