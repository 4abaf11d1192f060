"""PaiNN: polarizable atom interaction neural network (no PyG class exists)."""

from __future__ import annotations

import math
from typing import Optional, Tuple, cast

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing

from pyg_schnet.errors import UserError
from pyg_schnet.nn.atomistic import AtomisticModel
from pyg_schnet.nn.fast import CompiledPaiNNAggregation, FilterTable
from pyg_schnet.nn.filters import CosineCutoff, RadialFilter
from pyg_schnet.nn.radius import radius_edges


def _reset_linears(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every linear layer in
    ``module`` (a :class:`PaiNNFilter` is one), in registration order."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, PaiNNFilter)):
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


class PaiNNFilter(RadialFilter):
    r"""PaiNN's radial filter: a linear map of the sine basis
    (:class:`SineBesselBasis`) to ``3 * hidden_channels`` gates, times the
    cosine envelope. A :class:`~pyg_schnet.nn.filters.RadialFilter`, so the
    fast mode tabulates it (:class:`~pyg_schnet.nn.fast.FilterTable`).

    Its weights are named and drawn as those of the ``nn.Linear`` it replaces
    (``filter.weight``, ``filter.bias``): checkpoints and seeded
    initialisations of earlier versions are unchanged.

    Args:
        num_filters (int): Gates, ``3 * hidden_channels``.
        cutoff (float): Cutoff in Å.
        num_rbf (int): Basis functions.
    """

    name = "painn"

    def __init__(self, num_filters: int, cutoff: float, num_rbf: int) -> None:
        super().__init__(num_filters, cutoff)
        self.hparams = dict(num_filters=num_filters, cutoff=cutoff, num_rbf=num_rbf)
        lin = nn.Linear(num_rbf, num_filters)  # the same draws as the layer it replaces
        self.weight, self.bias = lin.weight, lin.bias
        self.freq: Tensor  # the model's basis, not saved a second time
        self.register_buffer("freq", SineBesselBasis(cutoff, num_rbf).freq, persistent=False)

    def reset_parameters(self) -> None:
        _reset_linears(self)

    @property
    def feature_width(self) -> float:
        return 1.0 / float(self.freq[-1])

    def project(self, rbf: Tensor) -> Tensor:
        """The linear map ``[E, num_filters]`` of a basis ``[E, num_rbf]``."""
        return nn.functional.linear(rbf, self.weight, self.bias)

    def network(self, dist: Tensor) -> Tensor:
        d = dist.unsqueeze(-1)  # [E, 1]
        return self.project(torch.sin(d * self.freq) / d.clamp(min=1e-6))


class PaiNNMessage(MessagePassing):
    """Message block: neighbours' scalars and vectors, gated by a radial filter,
    summed into scalar and vector updates (equivariant).

    Args:
        hidden_channels (int): Feature size.
        num_rbf (int): Radial basis functions.
        cutoff (float): Cutoff in Å.
        filter_table (FilterTable, optional): Evaluates the filter by table
            lookup; it runs on every edge when :obj:`None`. (default: :obj:`None`)
        aggregation (CompiledPaiNNAggregation, optional): The message summed
            over atom pairs (both directions at once); over directed edges
            (PyG's ``propagate``) when :obj:`None`. (default: :obj:`None`)
    """

    def __init__(
        self,
        hidden_channels: int,
        num_rbf: int,
        cutoff: float,
        filter_table: Optional[FilterTable] = None,
        aggregation: Optional[CompiledPaiNNAggregation] = None,
    ) -> None:
        super().__init__(aggr="add")
        F_ = hidden_channels
        self.hidden_channels = F_
        self.phi = nn.Sequential(nn.Linear(F_, F_), nn.SiLU(), nn.Linear(F_, 3 * F_))
        self.filter = PaiNNFilter(3 * F_, cutoff, num_rbf)
        self.filter_table = filter_table
        self.pair_sum = aggregation

    def reset_parameters(self) -> None:
        _reset_linears(self)

    def weights(self, dist: Tensor, rbf: Optional[Tensor], env: Optional[Tensor]) -> Tensor:
        """Filter weights ``[E, 3F]``: looked up at ``dist``, or from the
        basis ``rbf`` and envelope ``env`` computed once for all blocks."""
        if self.filter_table is not None:
            return self.filter_table(self.filter, dist)
        assert rbf is not None and env is not None
        return self.filter.project(rbf) * env.unsqueeze(-1)

    def pairs(
        self, s: Tensor, v: Tensor, pairs: Tensor, dist: Tensor, unit: Tensor
    ) -> Tuple[Tensor, Tensor]:
        """The message over atom pairs ``[2, P]`` (smaller index first; ``unit``
        points from the first atom's side, ``r_first - r_second``)."""
        assert self.pair_sum is not None
        return self.pair_sum(self.phi(s), v, self.weights(dist, None, None), unit, pairs)

    def forward(
        self,
        s: Tensor,
        v: Tensor,
        edge_index: Tensor,
        dist: Tensor,
        rbf: Optional[Tensor],
        env: Optional[Tensor],
        unit: Tensor,
    ) -> Tuple[Tensor, Tensor]:
        W = self.weights(dist, rbf, env)  # [E, 3F]
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
        fast (bool): The fast mode (:mod:`pyg_schnet.nn.fast`): filters by
            table lookup, and messages summed over atom pairs by compiled
            kernels (when no neighbour was dropped by the cap).
            (default: :obj:`False`)
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
        fast: bool = False,
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
            hidden_channels=hidden_channels,
            num_interactions=num_interactions,
            num_rbf=num_rbf,
            fast=bool(fast),
        )
        self.fast = bool(fast)
        self.hidden_channels = hidden_channels
        self.embedding = nn.Embedding(max_z, hidden_channels)
        self.basis = SineBesselBasis(cutoff, num_rbf)
        self.envelope = CosineCutoff(cutoff)
        table, pair_sum = (FilterTable(), CompiledPaiNNAggregation()) if fast else (None, None)
        self.messages = nn.ModuleList(
            PaiNNMessage(hidden_channels, num_rbf, cutoff, table, pair_sum)
            for _ in range(num_interactions)
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
        s = self.embedding(z)  # [N, F]
        v = s.new_zeros(s.size(0), 3, self.hidden_channels)  # [N, 3, F]
        messages = [cast(PaiNNMessage, m) for m in self.messages]
        if self.fast and edges.num_dropped == 0:  # symmetric: one row per atom pair
            keep = edges.edge_index[0] < edges.edge_index[1]
            pairs = edges.edge_index[:, keep]  # [2, P]
            dist = edges.edge_weight[keep]  # [P]
            unit = edges.edge_vec[keep] / dist.clamp(min=1e-9).unsqueeze(-1)  # [P, 3]
            for message, update in zip(messages, self.updates, strict=False):
                ds, dv = message.pairs(s, v, pairs, dist, unit)
                s, v = s + ds, v + dv
                ds, dv = update(s, v)
                s, v = s + ds, v + dv
            return self.out(s)  # [N, 1]
        dist = edges.edge_weight  # [E]
        unit = edges.edge_vec / dist.clamp(min=1e-9).unsqueeze(-1)  # [E, 3], r_j - r_i
        rbf = env = None
        if not self.fast:  # one basis for all blocks
            rbf, env = self.basis(dist), self.envelope(dist)  # [E, num_rbf], [E]
        for message, update in zip(messages, self.updates, strict=False):
            ds, dv = message(s, v, edges.edge_index, dist, rbf, env, unit)
            s, v = s + ds, v + dv
            ds, dv = update(s, v)
            s, v = s + ds, v + dv
        return self.out(s)  # [N, 1]
