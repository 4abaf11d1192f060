"""MoleculeLoader: the same batches as PyG's DataLoader, and DDP shards."""
import torch
from torch_geometric.loader import DataLoader

from pyg_schnet.loader import MoleculeLoader


def test_batches_equal_pyg_collation(qm9):
    idx = torch.tensor([5, 17, 1000, 130_000, 42, 77_777])
    ours = MoleculeLoader(qm9, idx, batch_size=4, target=7)
    pyg = DataLoader(qm9[idx], batch_size=4, shuffle=False)
    n = 0
    for a, b in zip(ours, pyg):
        assert torch.equal(a.z, b.z) and torch.equal(a.pos, b.pos)
        assert torch.equal(a.batch, b.batch) and a.num_graphs == b.num_graphs
        assert torch.equal(a.y, b.y[:, 7])
        n += 1
    assert n == len(ours) == 2


def test_shards_cover_evaluation_and_balance_training(qm9):
    idx = torch.arange(101)
    seen = []
    for rank in range(2):
        ev = MoleculeLoader(qm9, idx, 10, rank=rank, world_size=2)
        seen += torch.cat([b.index for b in ev]).tolist()
    assert sorted(seen) == list(range(101))  # every molecule exactly once
    sizes = [sum(b.num_graphs for b in MoleculeLoader(qm9, idx, 10, shuffle=True, rank=r,
                                                     world_size=2)) for r in range(2)]
    assert sizes == [50, 50]  # equal batches per rank for DDP's gradient sync


def test_shuffle_is_seeded_per_epoch(qm9):
    loader = MoleculeLoader(qm9, torch.arange(50), 10, shuffle=True, seed=3)
    loader.set_epoch(1)
    first = torch.cat([b.index for b in loader])
    loader.set_epoch(2)
    second = torch.cat([b.index for b in loader])
    loader.set_epoch(1)
    again = torch.cat([b.index for b in loader])
    assert torch.equal(first, again) and not torch.equal(first, second)
