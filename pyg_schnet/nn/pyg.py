"""PyG's own models behind the registry's interface (:mod:`pyg_schnet.nn.models`).

Each adapter builds the PyG model, feeds it this project's radius graph
(:func:`pyg_schnet.nn.radius.radius_edges`: PyG 2.8's ``radius_graph`` needs
``pyg-lib``) and returns raw per-atom outputs, so standardisation and readout
are :class:`~pyg_schnet.nn.atomistic.AtomisticModel`'s, the same for every model.
"""

from __future__ import annotations

import itertools
import math
from typing import Optional, Tuple

import torch
from torch import Tensor, nn
from torch_geometric.nn.models import SchNet as PyGSchNet
from torch_geometric.nn.models import ViSNet
from torch_geometric.nn.models.dimenet import (
    BesselBasisLayer,
    EmbeddingBlock,
    Envelope,
    InteractionPPBlock,
    OutputPPBlock,
)
from torch_geometric.nn.resolver import activation_resolver

from pyg_schnet.errors import UserError
from pyg_schnet.nn.atomistic import AtomisticModel
from pyg_schnet.nn.radius import radius_edges


def _at_least(**values: int) -> None:
    for key, value in values.items():
        if value < 1:
            raise UserError(f"{key} must be at least 1, got {value}")


class RadiusInteractionGraph(nn.Module):
    """PyG SchNet's ``interaction_graph`` on :func:`radius_edges`: returns
    ``(edge_index, edge_weight)``."""

    def __init__(self, cutoff: float, max_num_neighbors: int) -> None:
        super().__init__()
        self.cutoff, self.max_num_neighbors = cutoff, max_num_neighbors

    def forward(self, pos: Tensor, batch: Tensor) -> Tuple[Tensor, Tensor]:
        edges = radius_edges(pos, batch, self.cutoff, self.max_num_neighbors)
        return edges.edge_index, edges.edge_weight


class RadiusDistance(nn.Module):
    """ViSNet's ``Distance`` module on :func:`radius_edges`: edges with self
    loops (zero vector and length), ``(edge_index, edge_weight, edge_vec)``."""

    def __init__(self, cutoff: float, max_num_neighbors: int) -> None:
        super().__init__()
        self.cutoff, self.max_num_neighbors = cutoff, max_num_neighbors

    def forward(self, pos: Tensor, batch: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        edges = radius_edges(pos, batch, self.cutoff, self.max_num_neighbors)
        loops = torch.arange(pos.size(0), device=pos.device).repeat(2, 1)  # [2, N]
        edge_index = torch.cat([edges.edge_index, loops], dim=1)
        edge_vec = torch.cat([edges.edge_vec, pos.new_zeros(pos.size(0), 3)])
        edge_weight = torch.cat([edges.edge_weight, pos.new_zeros(pos.size(0))])
        return edge_index, edge_weight, edge_vec


class PyGSchNetRef(AtomisticModel):
    r"""PyG's :class:`~torch_geometric.nn.models.SchNet`, unchanged, as a
    reference row ("ours equals PyG" in a study).

    Args:
        hidden_channels (int): Atom feature size. (default: :obj:`128`)
        num_filters (int): Filter width. (default: :obj:`128`)
        num_interactions (int): Interaction blocks. (default: :obj:`6`)
        num_gaussians (int): Gaussians of the distance expansion. (default: :obj:`50`)
        cutoff (float): Cutoff in Å. (default: :obj:`10.0`)
        max_num_neighbors (int): Neighbour cap. (default: :obj:`32`)
        readout, mean, std, atomref, max_z: see
            :class:`~pyg_schnet.nn.atomistic.AtomisticModel`.
    """

    name = "pyg_schnet_ref"

    def __init__(
        self,
        hidden_channels: int = 128,
        num_filters: int = 128,
        num_interactions: int = 6,
        num_gaussians: int = 50,
        cutoff: float = 10.0,
        max_num_neighbors: int = 32,
        readout: str = "add",
        mean: float = 0.0,
        std: float = 1.0,
        atomref: Optional[Tensor] = None,
        max_z: int = 100,
    ) -> None:
        super().__init__(cutoff, max_num_neighbors, readout, mean, std, atomref, max_z)
        _at_least(
            hidden_channels=hidden_channels,
            num_filters=num_filters,
            num_interactions=num_interactions,
            num_gaussians=num_gaussians,
        )
        self.settings = dict(
            hidden_channels=hidden_channels,
            num_filters=num_filters,
            num_interactions=num_interactions,
            num_gaussians=num_gaussians,
        )
        self.net = PyGSchNet(
            hidden_channels=hidden_channels,
            num_filters=num_filters,
            num_interactions=num_interactions,
            num_gaussians=num_gaussians,
            cutoff=cutoff,
            max_num_neighbors=max_num_neighbors,
            interaction_graph=RadiusInteractionGraph(cutoff, max_num_neighbors),
        )

    def reset_parameters(self) -> None:
        self.net.reset_parameters()

    def graph_sums(self, z: Tensor, pos: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        sums = self.net(z, pos, batch)  # [batch.max() + 1, 1]: PyG's sum readout
        if sums.size(0) < num_graphs:  # trailing graphs without atoms
            sums = torch.cat([sums, sums.new_zeros(num_graphs - sums.size(0), 1)])
        return sums


class ViSNetModel(AtomisticModel):
    r"""PyG's :class:`~torch_geometric.nn.models.ViSNet` (`Wang et al. 2022
    <https://arxiv.org/abs/2210.16518>`_): its representation and per-atom
    output, with the radius graph of :class:`RadiusDistance`.

    Args:
        hidden_channels (int): Feature size. (default: :obj:`128`)
        num_interactions (int): ViSNet layers. (default: :obj:`6`)
        cutoff (float): Cutoff in Å. (default: :obj:`5.0`)
        num_rbf (int): Radial basis functions. (default: :obj:`32`)
        lmax (int): Highest spherical-harmonic degree. (default: :obj:`1`)
        num_heads (int): Attention heads. (default: :obj:`8`)
        max_num_neighbors (int): Neighbour cap. (default: :obj:`32`)
        readout, mean, std, atomref, max_z: see
            :class:`~pyg_schnet.nn.atomistic.AtomisticModel`.
    """

    name = "visnet"

    def __init__(
        self,
        hidden_channels: int = 128,
        num_interactions: int = 6,
        cutoff: float = 5.0,
        num_rbf: int = 32,
        lmax: int = 1,
        num_heads: int = 8,
        max_num_neighbors: int = 32,
        readout: str = "add",
        mean: float = 0.0,
        std: float = 1.0,
        atomref: Optional[Tensor] = None,
        max_z: int = 100,
    ) -> None:
        super().__init__(cutoff, max_num_neighbors, readout, mean, std, atomref, max_z)
        _at_least(
            hidden_channels=hidden_channels,
            num_interactions=num_interactions,
            num_rbf=num_rbf,
            lmax=lmax,
            num_heads=num_heads,
        )
        if hidden_channels % num_heads:
            raise UserError(
                f"hidden_channels ({hidden_channels}) must be a multiple of num_heads ({num_heads})"
            )
        self.settings = dict(
            hidden_channels=hidden_channels,
            num_interactions=num_interactions,
            num_rbf=num_rbf,
            lmax=lmax,
            num_heads=num_heads,
        )
        self.net = ViSNet(
            lmax=lmax,
            num_heads=num_heads,
            num_layers=num_interactions,
            hidden_channels=hidden_channels,
            num_rbf=num_rbf,
            cutoff=cutoff,
            max_num_neighbors=max_num_neighbors,
            max_z=max_z,
        )
        # the one component PyG's constructor does not take: the radius graph
        self.net.representation_model.distance = RadiusDistance(cutoff, max_num_neighbors)
        # PyG's atom references (100 weights) are never used here: atom_outputs stops
        # before them and AtomisticModel adds its own. An unused parameter would stop
        # DistributedDataParallel at its second step.
        self.net.prior_model = None

    def reset_parameters(self) -> None:
        self.net.reset_parameters()

    def atom_outputs(self, z: Tensor, pos: Tensor, batch: Tensor) -> Tensor:
        x, v = self.net.representation_model(z, pos, batch)  # [N, F], [N, L, F]
        return self.net.output_model.pre_reduce(x, v)  # [N, 1]


def triplets(edge_index: Tensor, num_nodes: int) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Every two-edge path ``k -> j -> i`` with ``k != i`` of a directed graph
    (``edge_index[0]`` source, ``[1]`` target), without ``torch-sparse``.

    Returns ``(idx_i, idx_j, idx_k, idx_kj, idx_ji)``: the atoms of each
    triplet ``[T]`` and the indices of its edges ``k -> j`` and ``j -> i``.
    """
    src, dst = edge_index
    order = torch.argsort(dst, stable=True)  # edges grouped by target
    count = torch.bincount(dst, minlength=num_nodes)  # incoming edges per atom
    start = torch.cumsum(count, 0) - count  # first of each atom's group in `order`
    num = count[src]  # per edge j -> i: the edges k -> j into its source
    idx_ji = torch.repeat_interleave(torch.arange(src.numel(), device=src.device), num)
    offset = torch.arange(idx_ji.numel(), device=src.device) - torch.repeat_interleave(
        torch.cumsum(num, 0) - num, num
    )  # rank within the group
    idx_kj = order[start[src[idx_ji]] + offset]
    idx_i, idx_j, idx_k = dst[idx_ji], src[idx_ji], src[idx_kj]
    keep = idx_i != idx_k  # no k = i back-and-forth paths
    return idx_i[keep], idx_j[keep], idx_k[keep], idx_kj[keep], idx_ji[keep]


class SphericalBasis(nn.Module):
    r"""DimeNet's spherical basis, the functions of PyG's ``SphericalBasisLayer``
    in closed form: for degree :math:`l < L` and root :math:`n < K`,

    .. math::
        a_{ln}(d, \theta) = u(d / c)\, \frac{j_l(z_{ln} d / c)}{\sqrt{j_{l+1}(z_{ln})^2 / 2}}
        \sqrt{\tfrac{2l + 1}{4\pi}}\, P_l(\cos\theta),

    with :math:`z_{ln}` the roots of the spherical Bessel function
    :math:`j_l` (PyG's, in float32), :math:`u` PyG's envelope and
    :math:`P_l` the Legendre polynomials. :math:`j_l` is the finite sum
    :math:`\sum_{k \le l} \frac{(l+k)!}{2^k k! (l-k)!} \sin(x + (k-l)\pi/2) / x^{k+1}`,
    the expression PyG derives with sympy when it builds the layer (20 s for
    the default 7 x 6 here, on every start of a process); evaluated here it
    takes a fraction of a second to build. No parameters or saved buffers, like PyG's.

    Args:
        num_spherical (int): Degrees :math:`L`.
        num_radial (int): Roots per degree :math:`K`.
        cutoff (float): Cutoff :math:`c` in Å. (default: :obj:`5.0`)
        envelope_exponent (int): The envelope's exponent. (default: :obj:`5`)
    """

    roots: Tensor  # [L, K]
    norm: Tensor  # [L, K]
    sin_coef: Tensor  # [L, 1, L]
    cos_coef: Tensor  # [L, 1, L]
    prefactor: Tensor  # [L]

    def __init__(
        self, num_spherical: int, num_radial: int, cutoff: float = 5.0, envelope_exponent: int = 5
    ) -> None:
        super().__init__()
        import numpy as np
        from torch_geometric.nn.models.dimenet_utils import Jn, Jn_zeros

        L, K = num_spherical, num_radial
        self.num_spherical, self.num_radial, self.cutoff = L, K, cutoff
        self.envelope = Envelope(envelope_exponent)
        roots = Jn_zeros(L, K)  # [L, K] float32, PyG's roots
        norm = 1.0 / np.sqrt(0.5 * np.stack([Jn(roots[d], d + 1) for d in range(L)]) ** 2)
        # j_l(x) = sum_k (sin_coef[l, k] sin x + cos_coef[l, k] cos x) / x^(k+1)
        sin_coef = torch.zeros(L, L, dtype=torch.float64)
        cos_coef = torch.zeros(L, L, dtype=torch.float64)
        for deg, k in itertools.product(range(L), range(L)):
            if k <= deg:  # sin(x + m pi/2) = sin x, cos x, -sin x, -cos x for m = 0, 1, 2, 3
                a = math.factorial(deg + k) / (2**k * math.factorial(k) * math.factorial(deg - k))
                m = (k - deg) % 4
                (sin_coef if m % 2 == 0 else cos_coef)[deg, k] = a if m < 2 else -a
        # float64: at degree 6 the sum cancels to 2e-4 of its largest value in float32
        self.register_buffer("roots", torch.from_numpy(roots).double(), persistent=False)
        self.register_buffer("norm", torch.from_numpy(norm), persistent=False)
        self.register_buffer("sin_coef", sin_coef.view(L, 1, L), persistent=False)
        self.register_buffer("cos_coef", cos_coef.view(L, 1, L), persistent=False)
        prefactor = [math.sqrt((2 * deg + 1) / (4 * math.pi)) for deg in range(L)]
        self.register_buffer("prefactor", torch.tensor(prefactor), persistent=False)

    def bessel(self, dist: Tensor) -> Tensor:
        """The enveloped radial part of every (l, n) at distances ``dist`` [E]: [E, L, K]
        (computed in float64, returned in ``dist``'s type)."""
        d = dist.to(self.roots.dtype) / self.cutoff
        x = self.roots * d.view(-1, 1, 1)  # [E, L, K]
        sin, cos, inv = torch.sin(x), torch.cos(x), 1.0 / x
        j, power = torch.zeros_like(x), inv
        for k in range(self.num_spherical):
            j = j + (self.sin_coef[..., k] * sin + self.cos_coef[..., k] * cos) * power
            power = power * inv
        return (self.envelope(d).view(-1, 1, 1) * self.norm * j).to(dist.dtype)

    def legendre(self, angle: Tensor) -> Tensor:
        """:math:`\\sqrt{(2l+1)/4\\pi}\\, P_l(\\cos\\theta)` at ``angle`` [T]: [T, L]."""
        z = torch.cos(angle)
        p = [torch.ones_like(z), z]
        for deg in range(2, self.num_spherical):
            p.append(((2 * deg - 1) * z * p[deg - 1] - (deg - 1) * p[deg - 2]) / deg)
        return torch.stack(p[: self.num_spherical], dim=1) * self.prefactor

    def forward(self, dist: Tensor, angle: Tensor, idx_kj: Tensor) -> Tensor:
        """Per triplet [T]: the radial part of its edge ``k -> j`` at
        ``dist[idx_kj]`` times the angular part at ``angle``: [T, L * K]."""
        L, K = self.num_spherical, self.num_radial
        rbf = self.bessel(dist)[idx_kj]  # [T, L, K]
        return (rbf * self.legendre(angle).view(-1, L, 1)).view(-1, L * K)


class DimeNetPlusPlusBlocks(nn.Module):
    r"""PyG's DimeNet++ blocks (its Bessel basis, embedding, interaction and
    output blocks) with :class:`SphericalBasis` for its spherical basis, under
    the attribute names of PyG's
    :class:`~torch_geometric.nn.models.DimeNetPlusPlus`: the state dicts of
    the two load into each other. Built in milliseconds (PyG's constructor
    derives the spherical basis with sympy first).

    Args: those of PyG's ``DimeNetPlusPlus`` with ``out_channels=1`` and its
    defaults for the rest (swish, 1 layer before and 2 after each skip, 3
    output layers, output layers starting at zero).
    """

    def __init__(
        self,
        hidden_channels: int,
        num_blocks: int,
        int_emb_size: int,
        basis_emb_size: int,
        out_emb_channels: int,
        num_spherical: int,
        num_radial: int,
        cutoff: float = 5.0,
        envelope_exponent: int = 5,
    ) -> None:
        super().__init__()
        if num_spherical < 2:
            raise UserError(f"num_spherical must be at least 2, got {num_spherical}")
        act = activation_resolver("swish")
        self.rbf = BesselBasisLayer(num_radial, cutoff, envelope_exponent)
        self.sbf = SphericalBasis(num_spherical, num_radial, cutoff, envelope_exponent)
        self.emb = EmbeddingBlock(num_radial, hidden_channels, act)
        self.output_blocks = nn.ModuleList(
            [
                OutputPPBlock(num_radial, hidden_channels, out_emb_channels, 1, 3, act, "zeros")
                for _ in range(num_blocks + 1)
            ]
        )
        self.interaction_blocks = nn.ModuleList(
            [
                InteractionPPBlock(
                    hidden_channels,
                    int_emb_size,
                    basis_emb_size,
                    num_spherical,
                    num_radial,
                    1,
                    2,
                    act,
                )
                for _ in range(num_blocks)
            ]
        )

    def reset_parameters(self) -> None:
        """Every random weight, in PyG's order (the same seed, the same weights)."""
        self.rbf.reset_parameters()
        self.emb.reset_parameters()
        for block in [*self.output_blocks, *self.interaction_blocks]:
            block.reset_parameters()


class DimeNetPlusPlusModel(AtomisticModel):
    r"""PyG's :class:`~torch_geometric.nn.models.DimeNetPlusPlus` (`Gasteiger et
    al. 2020 <https://arxiv.org/abs/2011.14115>`_): its embedding,
    interaction and output blocks and radial basis, with :class:`SphericalBasis`
    (:class:`DimeNetPlusPlusBlocks`), run on this project's radius graph and
    :func:`triplets` (PyG's need ``pyg-lib`` and ``torch-sparse``).

    Args:
        hidden_channels (int): Feature size. (default: :obj:`128`)
        num_interactions (int): Interaction blocks. (default: :obj:`4`)
        cutoff (float): Cutoff in Å. (default: :obj:`5.0`)
        int_emb_size (int): Interaction embedding size. (default: :obj:`64`)
        basis_emb_size (int): Basis embedding size. (default: :obj:`8`)
        out_emb_channels (int): Output embedding size. (default: :obj:`256`)
        num_spherical (int): Spherical harmonics. (default: :obj:`7`)
        num_radial (int): Radial basis functions. (default: :obj:`6`)
        max_num_neighbors (int): Neighbour cap. (default: :obj:`32`)
        readout, mean, std, atomref, max_z: see
            :class:`~pyg_schnet.nn.atomistic.AtomisticModel`.
    """

    name = "dimenet++"

    def __init__(
        self,
        hidden_channels: int = 128,
        num_interactions: int = 4,
        cutoff: float = 5.0,
        int_emb_size: int = 64,
        basis_emb_size: int = 8,
        out_emb_channels: int = 256,
        num_spherical: int = 7,
        num_radial: int = 6,
        max_num_neighbors: int = 32,
        readout: str = "add",
        mean: float = 0.0,
        std: float = 1.0,
        atomref: Optional[Tensor] = None,
        max_z: int = 100,
    ) -> None:
        super().__init__(cutoff, max_num_neighbors, readout, mean, std, atomref, max_z)
        _at_least(
            hidden_channels=hidden_channels,
            num_interactions=num_interactions,
            int_emb_size=int_emb_size,
            basis_emb_size=basis_emb_size,
            out_emb_channels=out_emb_channels,
            num_spherical=num_spherical,
            num_radial=num_radial,
        )
        self.settings = dict(
            hidden_channels=hidden_channels,
            num_interactions=num_interactions,
            int_emb_size=int_emb_size,
            basis_emb_size=basis_emb_size,
            out_emb_channels=out_emb_channels,
            num_spherical=num_spherical,
            num_radial=num_radial,
        )
        with torch.random.fork_rng(devices=[]):  # the weights come from reset_parameters
            self.net = DimeNetPlusPlusBlocks(
                hidden_channels,
                num_interactions,
                int_emb_size,
                basis_emb_size,
                out_emb_channels,
                num_spherical,
                num_radial,
                cutoff,
            )
        self.net.reset_parameters()

    def reset_parameters(self) -> None:
        self.net.reset_parameters()

    def atom_outputs(self, z: Tensor, pos: Tensor, batch: Tensor) -> Tensor:
        net, n = self.net, z.numel()
        edges = radius_edges(pos, batch, self.cutoff, self.max_num_neighbors)
        j, i = edges.edge_index  # edge j -> i
        idx_i, idx_j, idx_k, idx_kj, idx_ji = triplets(edges.edge_index, n)
        pos_ij, pos_jk = pos[idx_i] - pos[idx_j], pos[idx_j] - pos[idx_k]  # [T, 3]
        angle = torch.atan2(
            torch.cross(pos_ij, pos_jk, dim=1).norm(dim=-1), (pos_ij * pos_jk).sum(dim=-1)
        )  # [T]
        rbf = net.rbf(edges.edge_weight)  # [E, num_radial]
        sbf = net.sbf(edges.edge_weight, angle, idx_kj)  # [T, num_spherical * num_radial]
        x = net.emb(z, rbf, i, j)  # [E, hidden]
        out = net.output_blocks[0](x, rbf, i, num_nodes=n)  # [N, 1]
        for interaction, output in zip(net.interaction_blocks, net.output_blocks[1:], strict=False):
            x = interaction(x, rbf, sbf, idx_kj, idx_ji)
            out = out + output(x, rbf, i, num_nodes=n)
        return out
