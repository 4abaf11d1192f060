"""PaiNN: polarizable atom interaction neural network (no PyG class exists)."""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing

from pyg_schnet.errors import UserError
from pyg_schnet.nn.atomistic import AtomisticModel
from pyg_schnet.nn.filters import CosineCutoff
from pyg_schnet.nn.graph import radius_edges


def _reset_linears(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every linear layer in ``module``."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class SineBesselBasis(nn.Module):
    r"""PaiNN's radial basis :math:`\sin(n \pi d / r_c) / d`, :math:`n = 1 \dots K`.

    Args:
        cutoff (float): Cutoff in Å.
        num_rbf (int): Number of basis functions :math:`K`. (default: :obj:`20`)
    """

    def __init__(self, cutoff: float, num_rbf: int = 20) -> None:
        super().__init__()
        self.freq: Tensor
        self.register_buffer("freq", torch.arange(1, num_rbf + 1) * math.pi / cutoff)

    def forward(self, dist: Tensor) -> Tensor:
        d = dist.unsqueeze(-1)  # [E, 1]
        return torch.sin(d * self.freq) / d.clamp(min=1e-6)  # [E, num_rbf]


class PaiNNMessage(MessagePassing):
    """Message block: neighbours' scalars and vectors, gated by a radial filter,
    summed into scalar and vector updates (equivariant)."""

    def __init__(self, hidden_channels: int, num_rbf: int) -> None:
        super().__init__(aggr="add")
        F_ = hidden_channels
        self.hidden_channels = F_
        self.phi = nn.Sequential(nn.Linear(F_, F_), nn.SiLU(), nn.Linear(F_, 3 * F_))
        self.filter = nn.Linear(num_rbf, 3 * F_)

    def reset_parameters(self) -> None:
        _reset_linears(self)

    def forward(
        self, s: Tensor, v: Tensor, edge_index: Tensor, rbf: Tensor, env: Tensor, unit: Tensor
    ) -> Tuple[Tensor, Tensor]:
        W = self.filter(rbf) * env.unsqueeze(-1)  # [E, 3F]
        x = self.phi(s)  # [N, 3F]
        # vectors flattened for propagate: [N, 3 * F]
        ds, dv = self.propagate(edge_index, x=x, v=v.reshape(v.size(0), -1), W=W, unit=unit)
        return ds, dv.view_as(v)

    def message(self, x_j: Tensor, v_j: Tensor, W: Tensor, unit: Tensor) -> Tuple[Tensor, Tensor]:
        F_ = self.hidden_channels
        gate_s, gate_vv, gate_vs = torch.split(x_j * W, F_, dim=-1)  # 3 x [E, F]
        v_j = v_j.view(-1, 3, F_)
        dv = v_j * gate_vv.unsqueeze(1) + unit.unsqueeze(-1) * gate_vs.unsqueeze(1)  # [E, 3, F]
        return gate_s, dv.reshape(dv.size(0), -1)

    def aggregate(
        self, inputs: Tuple[Tensor, Tensor], index: Tensor, dim_size: Optional[int] = None
    ) -> Tuple[Tensor, Tensor]:
        ds, dv = inputs
        return (
            self.aggr_module(ds, index, dim_size=dim_size),
            self.aggr_module(dv, index, dim_size=dim_size),
        )

    def update(self, inputs: Tuple[Tensor, Tensor]) -> Tuple[Tensor, Tensor]:
        return inputs


class PaiNNUpdate(nn.Module):
    """Update block: mixes each atom's vector channels and couples them to its
    scalars through invariant norms and scalar products."""

    def __init__(self, hidden_channels: int) -> None:
        super().__init__()
        F_ = hidden_channels
        self.hidden_channels = F_
        self.U = nn.Linear(F_, F_, bias=False)
        self.V = nn.Linear(F_, F_, bias=False)
        self.mlp = nn.Sequential(nn.Linear(2 * F_, F_), nn.SiLU(), nn.Linear(F_, 3 * F_))

    def reset_parameters(self) -> None:
        _reset_linears(self)

    def forward(self, s: Tensor, v: Tensor) -> Tuple[Tensor, Tensor]:
        Uv, Vv = self.U(v), self.V(v)  # [N, 3, F]
        norm = torch.sqrt((Vv * Vv).sum(dim=1) + 1e-8)  # [N, F]; eps: finite gradient at 0
        a_vv, a_sv, a_ss = torch.split(
            self.mlp(torch.cat([s, norm], dim=-1)), self.hidden_channels, dim=-1
        )
        dv = a_vv.unsqueeze(1) * Uv
        ds = a_ss + a_sv * (Uv * Vv).sum(dim=1)
        return ds, dv


class PaiNN(AtomisticModel):
    r"""PaiNN from `"Equivariant message passing for the prediction of tensorial
    properties and molecular spectra" <https://arxiv.org/abs/2102.03150>`_
    (Schütt, Unke and Gastegger, 2021): scalar and vector features per atom,
    rotation-equivariant messages, an invariant per-atom output.

    Called like the other models: ``model(z, pos, batch) -> [num_graphs, 1]``.

    Args:
        hidden_channels (int): Scalar and vector feature size. (default: :obj:`128`)
        num_interactions (int): Message and update blocks. (default: :obj:`3`)
        cutoff (float): Cutoff in Å: radius graph, basis and envelope.
            (default: :obj:`5.0`)
        num_rbf (int): Radial basis functions. (default: :obj:`20`)
        max_num_neighbors (int): Neighbour cap of the radius graph.
            (default: :obj:`32`)
        readout (str): ``"add"`` or ``"mean"``. (default: :obj:`"add"`)
        mean (float): Per-atom output shift. (default: :obj:`0.0`)
        std (float): Per-atom output scale. (default: :obj:`1.0`)
        atomref (Tensor, optional): Per-element reference. (default: :obj:`None`)
        max_z (int): Embedding size. (default: :obj:`100`)
    """

    name = "painn"

    def __init__(
        self,
        hidden_channels: int = 128,
        num_interactions: int = 3,
        cutoff: float = 5.0,
        num_rbf: int = 20,
        max_num_neighbors: int = 32,
        readout: str = "add",
        mean: float = 0.0,
        std: float = 1.0,
        atomref: Optional[Tensor] = None,
        max_z: int = 100,
    ) -> None:
        super().__init__(cutoff, max_num_neighbors, readout, mean, std, atomref, max_z)
        for key, value, least in (
            ("hidden_channels", hidden_channels, 2),
            ("num_interactions", num_interactions, 1),
            ("num_rbf", num_rbf, 1),
        ):
            if value < least:
                raise UserError(f"{key} must be at least {least}, got {value}")
        self.settings = dict(
            hidden_channels=hidden_channels, num_interactions=num_interactions, num_rbf=num_rbf
        )
        self.hidden_channels = hidden_channels
        self.embedding = nn.Embedding(max_z, hidden_channels)
        self.basis = SineBesselBasis(cutoff, num_rbf)
        self.envelope = CosineCutoff(cutoff)
        self.messages = nn.ModuleList(
            PaiNNMessage(hidden_channels, num_rbf) for _ in range(num_interactions)
        )
        self.updates = nn.ModuleList(PaiNNUpdate(hidden_channels) for _ in range(num_interactions))
        self.out = nn.Sequential(
            nn.Linear(hidden_channels, hidden_channels // 2),
            nn.SiLU(),
            nn.Linear(hidden_channels // 2, 1),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.embedding.reset_parameters()
        _reset_linears(self)

    def atom_outputs(self, z: Tensor, pos: Tensor, batch: Tensor) -> Tensor:
        edges = radius_edges(pos, batch, self.cutoff, self.max_num_neighbors)
        dist = edges.edge_weight  # [E]
        unit = edges.edge_vec / dist.clamp(min=1e-9).unsqueeze(-1)  # [E, 3], r_j - r_i
        rbf, env = self.basis(dist), self.envelope(dist)  # [E, num_rbf], [E]
        s = self.embedding(z)  # [N, F]
        v = s.new_zeros(s.size(0), 3, self.hidden_channels)  # [N, 3, F]
        for message, update in zip(self.messages, self.updates, strict=False):
            ds, dv = message(s, v, edges.edge_index, rbf, env, unit)
            s, v = s + ds, v + dv
            ds, dv = update(s, v)
            s, v = s + ds, v + dv
        return self.out(s)  # [N, 1]
