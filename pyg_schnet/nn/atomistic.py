"""What every model of the registry (:mod:`pyg_schnet.nn.models`) shares: the
call ``model(z, pos, batch) -> [num_graphs, 1]``, the output standardisation
(per-atom ``mean`` and ``std``, per-element references) and the readout.

A model computes raw per-atom outputs :math:`h_i` (standardised units); the
prediction of a graph is the readout of
:math:`\\sigma h_i + \\mu + \\mathrm{ref}(z_i)` over its atoms: the sum for
extensive targets, the mean for intensive ones. Train, evaluate, predict, the
benchmark and the study runner see only this interface.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from torch import Tensor, nn

from pyg_schnet.errors import UserError

READOUTS = ("add", "mean")


def graph_pool(src: Tensor, batch: Tensor, num_graphs: int, reduce: str = "add") -> Tensor:
    """The sum (``"add"`` or ``"sum"``) or mean (``"mean"``) of the rows of
    ``src`` ``[N, ...]`` per graph ``batch`` ``[N]``: ``[num_graphs, ...]``.
    The operations of :func:`torch_geometric.utils.scatter` on ``dim=0``
    (``scatter_add_``; the mean divides by the atom count clamped at 1), so
    the same numbers bit for bit (``tests/nn/test_models.py``), without
    importing PyG, and ``torch._dynamo`` with it, where a model only predicts."""
    if reduce not in ("add", "sum", "mean"):
        raise ValueError(f"unknown reduce {reduce!r}; choose add, sum or mean")
    shape = (-1,) + (1,) * (src.dim() - 1)
    out = src.new_zeros((num_graphs,) + tuple(src.shape[1:]))
    out.scatter_add_(0, batch.view(shape).expand_as(src), src)
    if reduce == "mean":
        count = src.new_zeros(num_graphs).scatter_add_(0, batch, src.new_ones(src.size(0)))
        out = out / count.clamp(min=1).view(shape).expand_as(out)
    return out


class AtomisticModel(nn.Module):
    """Base class: standardisation buffers, readout and the graph-level call.

    Subclasses set :attr:`name`, keep their constructor arguments in
    :attr:`settings` (what :meth:`hparams` returns) and implement
    :meth:`atom_outputs` (raw per-atom outputs) or, for wrapped models that
    only return per-graph sums, :meth:`graph_sums`.

    Args:
        cutoff (float): Cutoff in Å of the model's radius graph.
        max_num_neighbors (int): Neighbour cap of the radius graph.
        readout (str): ``"add"`` or ``"mean"`` over atoms. (default: :obj:`"add"`)
        mean (float): Per-atom output shift. (default: :obj:`0.0`)
        std (float): Per-atom output scale. (default: :obj:`1.0`)
        atomref (Tensor, optional): Per-element reference ``[max_z]`` added
            per atom. (default: :obj:`None`)
        max_z (int): Largest atomic number + 1. (default: :obj:`100`)
    """

    name: str = ""
    #: The QM9 target the weights were trained on (``"U0"``, ``"gap"``, ...):
    #: set by :func:`~pyg_schnet.run.checkpoint.model_from_checkpoint` from the
    #: checkpoint's config, so a loaded model says what it predicts (the ASE
    #: calculator refuses one that is not an energy); ``None`` for a model
    #: built afresh.
    target: Optional[str] = None
    #: Whether :meth:`forward` takes ``pairs``: each molecule's atom pairs
    #: ``i < j`` within the cutoff, precomputed
    #: (:class:`~pyg_schnet.data.loader.PairTable`), instead of building its
    #: radius graph per call.
    takes_pairs: bool = False

    def __init__(
        self,
        cutoff: float,
        max_num_neighbors: int,
        readout: str = "add",
        mean: float = 0.0,
        std: float = 1.0,
        atomref: Optional[Tensor] = None,
        max_z: int = 100,
    ) -> None:
        super().__init__()
        if readout not in READOUTS:
            raise UserError(f"unknown readout {readout!r}; choose one of: {', '.join(READOUTS)}")
        if not (cutoff > 0):
            raise UserError(f"cutoff must be a positive number of Å, got {cutoff}")
        for key, value, least in (
            ("max_num_neighbors", max_num_neighbors, 1),
            ("max_z", max_z, 10),
        ):
            if value < least:
                raise UserError(f"{key} must be at least {least}, got {value}")
        self.cutoff = float(cutoff)
        self.max_num_neighbors = int(max_num_neighbors)
        self.readout = readout
        self.max_z = int(max_z)
        self.settings: Dict[str, Any] = {}
        self.mean: Tensor
        self.std: Tensor
        self.atomref: Tensor
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))
        self.register_buffer("atomref", torch.zeros(max_z))
        self.set_standardization(mean, std, atomref)

    def set_standardization(
        self, mean: float, std: float, atomref: Optional[Tensor] = None
    ) -> None:
        """Set the per-atom output scale/shift and per-element references."""
        self.mean.fill_(float(mean))
        self.std.fill_(float(std))
        self.atomref.zero_()
        if atomref is not None:
            ref = torch.as_tensor(atomref, dtype=torch.float32).view(-1)
            self.atomref[: ref.numel()] = ref[: self.max_z]

    def hparams(self) -> Dict[str, Any]:
        """Names and numbers that rebuild this model with
        :func:`pyg_schnet.nn.models.build` (standardisation aside)."""
        return dict(
            model=self.name,
            cutoff=self.cutoff,
            max_num_neighbors=self.max_num_neighbors,
            readout=self.readout,
            max_z=self.max_z,
            **self.settings,
        )

    def atom_outputs(self, z: Tensor, pos: Tensor, batch: Tensor) -> Tensor:
        """Raw per-atom outputs ``[N, 1]`` (before standardisation)."""
        raise NotImplementedError

    def graph_sums(self, z: Tensor, pos: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        """Per-graph sums of the raw per-atom outputs ``[num_graphs, 1]``."""
        return graph_pool(self.atom_outputs(z, pos, batch), batch, num_graphs)

    def forward(
        self,
        z: Tensor,
        pos: Tensor,
        batch: Optional[Tensor] = None,
        num_graphs: Optional[int] = None,
    ) -> Tensor:
        """Predict one value per graph ``[num_graphs, 1]``.

        Args:
            z (Tensor): Atomic numbers ``[N]``.
            pos (Tensor): Positions in Å ``[N, 3]``.
            batch (Tensor, optional): Graph of each atom ``[N]``, sorted.
                (default: one graph)
            num_graphs (int, optional): Number of graphs (saves a sync).
        """
        if batch is None:
            batch = torch.zeros_like(z)
        if num_graphs is None:
            num_graphs = int(batch.max()) + 1 if batch.numel() else 0
        sums = self.graph_sums(z, pos, batch, num_graphs)  # [G, 1]
        ones = torch.ones_like(pos[:, 0])
        atoms = graph_pool(ones, batch, num_graphs).unsqueeze(-1)
        refs = graph_pool(self.atomref[z], batch, num_graphs).unsqueeze(-1)  # [G, 1]
        total = sums * self.std + atoms * self.mean + refs  # the sum over atoms
        if self.readout == "mean":
            return total / atoms.clamp(min=1.0)
        return total


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters of a model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
