"""Fast mini-batches straight from the dataset's flat storage.

PyG's ``DataLoader`` builds one ``Data`` per molecule and collates them; for
QM9's small molecules that Python work costs as much as a SchNet step on two
cores. :class:`MoleculeLoader` gathers ``z``, ``pos``, ``batch`` and ``y`` of a
batch with a few vectorised index operations instead. The batches equal PyG's
``Batch`` fields for the same molecules (tested).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, List, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from pyg_schnet.nn.rotations import random_rotations

if TYPE_CHECKING:
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

    def to(self, device: torch.device) -> "MoleculeBatch":
        return MoleculeBatch(
            self.z.to(device),
            self.pos.to(device),
            self.batch.to(device),
            self.y.to(device),
            self.num_graphs,
            self.index,
        )


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
    ) -> None:
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
        return MoleculeBatch(self._z[atom], self._pos[atom], batch, y, len(rows), index)


def rotated(b: MoleculeBatch, rotations: Tensor) -> MoleculeBatch:
    """``b`` with molecule ``g`` rotated by ``rotations[g]`` ``[B, 3, 3]``."""
    pos = torch.einsum("nij,nj->ni", rotations[b.batch], b.pos)  # [N, 3]
    return b._replace(pos=pos)
