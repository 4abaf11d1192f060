"""The radius-graph transform on PyG's ``Data``: :class:`RadiusGraph`, on
:func:`~pyg_schnet.nn.radius.radius_edges` (torch-cluster; the nearest
neighbours kept under the cap, the truncation reported), which this module
also exports for code written against it.
"""

from __future__ import annotations

from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

from pyg_schnet.nn.radius import Edges, radius_edges

__all__ = ["Edges", "RadiusGraph", "radius_edges"]


class RadiusGraph(BaseTransform):
    r"""Creates edges between the atoms within ``cutoff`` of each other, as
    :class:`torch_geometric.transforms.RadiusGraph` does, which in PyG 2.8
    needs ``pyg-lib``; this one runs on ``torch-cluster``
    (:func:`radius_edges`). It sets ``edge_index`` (``[2, E]``, no
    self-loops, row 0 the source) and ``num_dropped_edges``; of a node with
    more than ``max_num_neighbors`` neighbours it keeps the nearest and
    warns (PyG drops arbitrary ones, silently). A batch (``data.batch``)
    gets edges within each of its graphs only.

    .. code-block:: python

        from pyg_schnet import QM9, RadiusGraph

        ds = QM9(pre_transform=RadiusGraph(5.0))  # in place of T.RadiusGraph(r=5.0)

    Args:
        cutoff (float): Radius in Å (PyG's ``r``).
        max_num_neighbors (int): Cap on incoming edges per node. (default: :obj:`32`)
    """

    def __init__(self, cutoff: float, max_num_neighbors: int = 32) -> None:
        self.cutoff = cutoff
        self.max_num_neighbors = max_num_neighbors

    def forward(self, data: Data) -> Data:
        batch = data.batch if "batch" in data else None
        edges = radius_edges(data.pos, batch, self.cutoff, self.max_num_neighbors)
        data.edge_index = edges.edge_index
        data.num_dropped_edges = edges.num_dropped
        return data

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(cutoff={self.cutoff}, "
            f"max_num_neighbors={self.max_num_neighbors})"
        )
