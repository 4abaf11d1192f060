"""Fast mini-batches straight from the dataset's flat storage.

PyG's ``DataLoader`` builds one ``Data`` per molecule and collates them; for
QM9's small molecules that Python work costs as much as a SchNet step on two
cores. :class:`MoleculeLoader` gathers ``z``, ``pos``, ``batch`` and ``y`` of a
batch with a few vectorised index operations instead. The batches equal PyG's
``Batch`` fields for the same molecules (tested).

A molecule's radius graph at its stored geometry is the same every epoch:
a :class:`PairTable` finds every molecule's atom pairs within the cutoff once
(with :func:`~pyg_schnet.nn.radius.radius_edges`, torch-cluster) and the
loader gathers a batch's pairs from it, instead of the model searching them
at every step (a tenth of a training step at the studies' size).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, List, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from pyg_schnet.nn.radius import radius_edges
from pyg_schnet.nn.rotations import random_rotations

if TYPE_CHECKING:
    from torch import nn

    from pyg_schnet.data.qm9 import QM9

#: Molecule positions: a list, a numpy array or a tensor of integers.
Indices = Union[Sequence[int], np.ndarray, Tensor]


class MoleculeBatch(NamedTuple):
    z: Tensor  # [N]
    pos: Tensor  # [N, 3]
    batch: Tensor  # [N]
    y: Tensor  # [B] (the selected target) or [B, 19]
    num_graphs: int
    index: Tensor  # type: ignore[assignment]  # [B] positions in the dataset (shadows tuple.index)
    pairs: Optional[Tensor] = None  # [2, P] atom pairs i < j within the cutoff (a PairTable's)

    def to(self, device: torch.device) -> "MoleculeBatch":
        return MoleculeBatch(
            self.z.to(device),
            self.pos.to(device),
            self.batch.to(device),
            self.y.to(device),
            self.num_graphs,
            self.index,
            None if self.pairs is None else self.pairs.to(device),
        )


def apply_model(model: nn.Module, b: MoleculeBatch) -> Tensor:
    """``model``'s prediction for batch ``b`` ``[num_graphs, 1]``, given the
    batch's pairs when it has them (a loader with a :class:`PairTable`)."""
    if b.pairs is None:
        return model(b.z, b.pos, b.batch, num_graphs=b.num_graphs)
    return model(b.z, b.pos, b.batch, num_graphs=b.num_graphs, pairs=b.pairs)


class PairTable:
    """Every molecule's atom pairs within a cutoff, found once.

    The pairs ``i < j`` of each molecule at its stored geometry, as
    :func:`~pyg_schnet.nn.radius.radius_edges` (torch-cluster) finds them, in
    its order, stored as indices within the molecule. A
    :class:`MoleculeLoader` given the table gathers a batch's pairs
    (:attr:`MoleculeBatch.pairs`), which a model that takes them
    (:attr:`~pyg_schnet.nn.atomistic.AtomisticModel.takes_pairs`) uses
    instead of building its radius graph: the same pairs in the same order,
    so the same predictions. Made by :meth:`build`.

    Args:
        local (Tensor): Pair indices within their molecule ``[2, total]``.
        start (Tensor): First column of each storage row's pairs ``[rows]``
            (``-1`` for a molecule not in the table).
        count (Tensor): Pairs of each storage row ``[rows]``.
        cutoff (float): The cutoff in Å the pairs were found at.
        max_num_neighbors (int): The neighbour cap they were found with.
    """

    def __init__(
        self, local: Tensor, start: Tensor, count: Tensor, cutoff: float, max_num_neighbors: int
    ) -> None:
        self.local, self.start, self.count = local, start, count
        self.cutoff, self.max_num_neighbors = float(cutoff), int(max_num_neighbors)

    @classmethod
    def build(
        cls,
        dataset: QM9,
        indices: Indices,
        cutoff: float,
        max_num_neighbors: int = 32,
        chunk: int = 1000,
    ) -> Optional["PairTable"]:
        """The pairs of the molecules at ``indices`` of ``dataset``, searched
        ``chunk`` molecules at a time (about 6 s for all of QM9 at 5 Å, one
        thread); ``None`` when the neighbour cap drops an edge of some molecule
        (its graph is then not symmetric: the model builds it per batch).

        Args:
            dataset (QM9): The data set (a subset view is fine).
            indices (sequence of int): Positions in ``dataset``.
            cutoff (float): The model's cutoff in Å.
            max_num_neighbors (int): The model's neighbour cap. (default: :obj:`32`)
            chunk (int): Molecules per search. (default: :obj:`1000`)
        """
        loader = MoleculeLoader(dataset, torch.unique(torch.as_tensor(np.asarray(indices))), chunk)
        rows_all = len(loader._slices) - 1
        sizes = loader._slices[1:] - loader._slices[:-1]
        dtype = torch.uint8 if rows_all == 0 or int(sizes.max()) <= 256 else torch.int32
        start = torch.full((rows_all,), -1, dtype=torch.long)
        count = torch.zeros(rows_all, dtype=torch.long)
        parts, offset = [], 0
        for index in loader._batches():
            b = loader.gather(index)
            edges = radius_edges(b.pos, b.batch, cutoff, max_num_neighbors, warn=False)
            if edges.num_dropped:
                return None
            src, dst = edges.edge_index
            keep = src < dst
            src, dst = src[keep], dst[keep]  # [P] each, grouped by molecule (atoms are)
            graph = b.batch[dst]
            per_graph = torch.bincount(graph, minlength=b.num_graphs)
            atoms = torch.bincount(b.batch, minlength=b.num_graphs)
            first = torch.cumsum(atoms, 0) - atoms  # [B] each molecule's first atom
            rows = loader._base[index]
            count[rows] = per_graph
            start[rows] = offset + torch.cumsum(per_graph, 0) - per_graph
            parts.append(torch.stack([src - first[graph], dst - first[graph]]).to(dtype))
            offset += int(src.numel())
        local = torch.cat(parts, 1) if parts else torch.zeros(2, 0, dtype=dtype)
        return cls(local, start, count, cutoff, max_num_neighbors)

    def gather(self, rows: Tensor, first: Tensor) -> Tensor:
        """The pairs of storage ``rows`` as atom indices of their batch ``[2, P]``,
        molecule ``k``'s atoms starting at ``first[k]``."""
        count = self.count[rows]
        start = self.start[rows]
        if bool((start < 0).any()):
            raise ValueError("a molecule of the batch is not in the pair table")
        before = torch.cumsum(count, 0) - count  # [B] its first pair in the batch
        column = torch.repeat_interleave(start - before, count) + torch.arange(int(count.sum()))
        return self.local[:, column].long() + torch.repeat_interleave(first, count)

    def __repr__(self) -> str:
        built = int((self.start >= 0).sum())
        return f"PairTable({built} molecules, {self.local.size(1)} pairs within {self.cutoff:g} Å)"


class MoleculeLoader:
    """Iterate over ``indices`` of a :class:`~pyg_schnet.data.qm9.QM9` in batches.

    Args:
        dataset (QM9): The data set (a subset view is fine).
        indices (sequence of int): Positions in ``dataset`` to iterate over.
        batch_size (int): Molecules per batch (per optimizer step: shuffled
            loaders split each batch across the ranks, see :meth:`_batches`;
            evaluation loaders give each rank batches of this size).
        target (int, optional): Column of ``y`` to return; all 19 if :obj:`None`.
        shuffle (bool): Reshuffle every epoch. (default: :obj:`False`)
        seed (int): Seed of the shuffle and the rotations; the generator of
            epoch ``e`` is seeded from ``(seed, e)`` (and the rank), so a run
            resumed at an epoch boundary sees the same batches. (default: :obj:`0`)
        rotate (bool): Rotate every molecule of every batch by a random
            rotation about the origin (rotation augmentation). (default: :obj:`False`)
        pairs (PairTable, optional): Each molecule's pairs within the model's
            cutoff; the batches carry theirs. Not with ``rotate`` (the pairs are
            found at the stored geometry). (default: :obj:`None`)
        rank (int), world_size (int): Shard for distributed runs. Shuffled
            (training) loaders give every rank its share of every batch;
            others cover every molecule once.
    """

    def __init__(
        self,
        dataset: QM9,
        indices: Indices,
        batch_size: int,
        target: Optional[int] = None,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        rotate: bool = False,
        pairs: Optional[PairTable] = None,
    ) -> None:
        if rotate and pairs is not None:
            raise ValueError("a loader that rotates its molecules takes no pair table")
        self.pairs = pairs
        self.indices = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        self.batch_size = int(batch_size)
        self.target = target
        self.shuffle = shuffle
        self.rotate = rotate
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        base = (
            torch.arange(len(dataset._data.y))
            if dataset._indices is None
            else torch.as_tensor(dataset._indices)
        )
        self._base = base  # dataset position -> storage row
        self._slices = dataset.slices["z"]
        self._z = dataset._data.z
        self._pos = dataset._data.pos
        self._y = dataset._data.y

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> Tensor:
        idx = self.indices
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            idx = idx[torch.randperm(len(idx), generator=gen)]
        if self.world_size > 1 and not self.shuffle:  # evaluation: each molecule once
            idx = idx[self.rank :: self.world_size]
        return idx

    def _batches(self) -> List[Tensor]:
        """This rank's batches of the epoch. Training under data parallelism
        splits every batch of the single-process order across the ranks
        (``batch[rank::world_size]``), so ``batch_size`` stays the molecules per
        optimizer step however many processes share it; a last batch smaller
        than the number of ranks is dropped (every rank needs one)."""
        order = self._order()
        out = [order[s : s + self.batch_size] for s in range(0, len(order), self.batch_size)]
        if self.world_size > 1 and self.shuffle:
            out = [b[self.rank :: self.world_size] for b in out if len(b) >= self.world_size]
        return out

    def __len__(self) -> int:
        return len(self._batches())

    def __iter__(self) -> Iterator[MoleculeBatch]:
        gen = None
        if self.rotate:  # its own stream: the shuffle order does not depend on it
            gen = torch.Generator().manual_seed(
                ((self.seed * 100_003 + self.epoch) * 1_009 + self.rank) * 2 + 1
            )
        for index in self._batches():
            b = self.gather(index)
            if gen is not None:
                b = rotated(b, random_rotations(b.num_graphs, gen))
            yield b

    def gather(self, index: Tensor) -> MoleculeBatch:
        """The batch of dataset positions ``index``."""
        rows = self._base[index]
        starts = self._slices[rows]
        lengths = self._slices[rows + 1] - starts
        batch = torch.repeat_interleave(torch.arange(len(rows)), lengths)
        first = torch.cumsum(lengths, 0) - lengths
        atom = torch.repeat_interleave(starts - first, lengths) + torch.arange(int(lengths.sum()))
        y = self._y[rows]
        if self.target is not None:
            y = y[:, self.target]
        pairs = None if self.pairs is None else self.pairs.gather(rows, first)
        return MoleculeBatch(self._z[atom], self._pos[atom], batch, y, len(rows), index, pairs)


def rotated(b: MoleculeBatch, rotations: Tensor) -> MoleculeBatch:
    """``b`` with molecule ``g`` rotated by ``rotations[g]`` ``[B, 3, 3]``
    (without its pairs: the model searches the rotated molecules' own)."""
    pos = torch.einsum("nij,nj->ni", rotations[b.batch], b.pos)  # [N, 3]
    return b._replace(pos=pos, pairs=None)
