"""MoleculeLoader: the same batches as PyG's DataLoader, DDP shards, and pairs
found once (PairTable) that give the same predictions."""

import pytest
import torch
from torch_geometric.loader import DataLoader

from pyg_schnet.data.loader import MoleculeLoader, PairTable, apply_model, rotated
from pyg_schnet.nn.filters import FILTERS
from pyg_schnet.nn.radius import radius_edges
from pyg_schnet.nn.schnet import build_model


def test_batches_equal_pyg_collation(sample):
    idx = torch.tensor([5, 17, 100, 380, 42, 277])
    ours = MoleculeLoader(sample, idx, batch_size=4, target=7)
    pyg = DataLoader(sample[idx], batch_size=4, shuffle=False)
    n = 0
    for a, b in zip(ours, pyg, strict=False):
        assert torch.equal(a.z, b.z) and torch.equal(a.pos, b.pos)
        assert torch.equal(a.batch, b.batch) and a.num_graphs == b.num_graphs
        assert torch.equal(a.y, b.y[:, 7])
        n += 1
    assert n == len(ours) == 2


def test_shards_cover_evaluation_and_balance_training(sample):
    idx = torch.arange(101)
    seen = []
    for rank in range(2):
        ev = MoleculeLoader(sample, idx, 10, rank=rank, world_size=2)
        seen += torch.cat([b.index for b in ev]).tolist()
    assert sorted(seen) == list(range(101))  # every molecule exactly once
    # training: every rank gets its share of each single-process batch, so the
    # optimizer steps see the same molecules however many processes share them
    single = [b.index for b in MoleculeLoader(sample, idx, 10, shuffle=True, seed=5)]
    ranks = [
        [
            b.index
            for b in MoleculeLoader(sample, idx, 10, shuffle=True, seed=5, rank=r, world_size=2)
        ]
        for r in range(2)
    ]
    assert len(ranks[0]) == len(ranks[1]) == 10  # 11 batches; the last (1 molecule) dropped
    for k in range(10):
        assert sorted(torch.cat([ranks[0][k], ranks[1][k]]).tolist()) == sorted(single[k].tolist())
        assert len(ranks[0][k]) == len(ranks[1][k]) == 5


def test_shuffle_is_seeded_per_epoch(sample):
    loader = MoleculeLoader(sample, torch.arange(50), 10, shuffle=True, seed=3)
    loader.set_epoch(1)
    first = torch.cat([b.index for b in loader])
    loader.set_epoch(2)
    second = torch.cat([b.index for b in loader])
    loader.set_epoch(1)
    again = torch.cat([b.index for b in loader])
    assert torch.equal(first, again) and not torch.equal(first, second)


def _epoch(loader, epoch):
    loader.set_epoch(epoch)
    return list(loader)


def test_rotation_augmentation_rotates_each_molecule_seeded(sample):
    idx = torch.arange(200, 260)
    plain = MoleculeLoader(sample, idx, 16, shuffle=True, seed=4)
    rot = MoleculeLoader(sample, idx, 16, shuffle=True, seed=4, rotate=True)
    a, b = _epoch(plain, 2), _epoch(rot, 2)
    for p, r in zip(a, b, strict=False):
        # the same molecules in the same order, only the positions change
        assert torch.equal(p.index, r.index) and torch.equal(p.z, r.z)
        assert torch.equal(p.batch, r.batch) and torch.equal(p.y, r.y)
        assert float((p.pos - r.pos).abs().max()) > 0.1
        for g in range(p.num_graphs):  # a rigid rotation: all distances kept
            m = p.batch == g
            torch.testing.assert_close(
                torch.cdist(p.pos[m], p.pos[m]),
                torch.cdist(r.pos[m], r.pos[m]),
                atol=1e-4,
                rtol=1e-5,
            )
    # resume-exact: the same epoch gives the same rotations, another epoch others
    again = _epoch(MoleculeLoader(sample, idx, 16, shuffle=True, seed=4, rotate=True), 2)
    assert all(torch.equal(x.pos, y.pos) for x, y in zip(b, again, strict=False))
    other = _epoch(rot, 3)
    assert not torch.equal(other[0].pos, _epoch(plain, 3)[0].pos)
    assert not torch.equal(torch.cat([x.pos for x in other]), torch.cat([x.pos for x in b]))


def test_rotation_augmentation_keeps_invariant_predictions(sample):
    from pyg_schnet.nn.schnet import build_model

    torch.manual_seed(0)
    model = build_model(
        "gaussian", hidden_channels=16, num_filters=16, num_interactions=2, cutoff=5.0
    ).eval()
    idx = torch.arange(0, 40)
    plain = _epoch(MoleculeLoader(sample, idx, 20, shuffle=True, seed=1), 0)
    rot = _epoch(MoleculeLoader(sample, idx, 20, shuffle=True, seed=1, rotate=True), 0)
    with torch.no_grad():
        for p, r in zip(plain, rot, strict=False):
            a = model(p.z, p.pos, p.batch)
            b = model(r.z, r.pos, r.batch)
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(a.abs().max()))


# -- pairs found once -------------------------------------------------------------------
@pytest.mark.parametrize("cutoff", [2.0, 5.0])
def test_pair_table_gives_each_batch_the_searched_pairs_in_their_order(sample, cutoff):
    idx = torch.tensor([3, 250, 17, 400, 88, 9, 131])
    table = PairTable.build(sample, idx, cutoff, chunk=3)  # searched 3 molecules at a time
    assert table is not None and table.cutoff == cutoff
    for b in MoleculeLoader(sample, idx, 4, pairs=table):
        src, dst = radius_edges(b.pos, b.batch, cutoff).edge_index
        keep = src < dst
        assert torch.equal(b.pairs, torch.stack([src[keep], dst[keep]]))
    assert all(b.pairs is None for b in MoleculeLoader(sample, idx, 4))


def test_pair_table_refuses_what_it_cannot_hold(sample):
    idx = torch.arange(20)
    # a neighbour cap that drops edges leaves no symmetric graph to tabulate
    assert PairTable.build(sample, idx, 5.0, max_num_neighbors=2) is None
    table = PairTable.build(sample, idx, 5.0)
    with pytest.raises(ValueError, match="not in the pair table"):
        MoleculeLoader(sample, torch.tensor([0, 20]), 2, pairs=table).gather(torch.tensor([0, 20]))
    with pytest.raises(ValueError, match="rotates its molecules"):
        MoleculeLoader(sample, idx, 4, rotate=True, pairs=table)
    b = MoleculeLoader(sample, idx, 4, pairs=table).gather(idx[:4])
    assert b.pairs is not None and rotated(b, torch.eye(3).repeat(4, 1, 1)).pairs is None


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("name", sorted(FILTERS))
def test_every_filter_predicts_the_same_from_the_tabulated_pairs(sample, name, fast):
    torch.manual_seed(0)
    model = build_model(
        name, hidden_channels=16, num_filters=16, num_interactions=2, cutoff=5.0, fast=fast
    ).eval()
    idx = torch.arange(100, 130)
    table = PairTable.build(sample, idx, model.cutoff, model.max_num_neighbors)
    with torch.no_grad():
        for a, b in zip(
            MoleculeLoader(sample, idx, 10),
            MoleculeLoader(sample, idx, 10, pairs=table),
            strict=True,
        ):
            searched, tabulated = apply_model(model, a), apply_model(model, b)
            if model.use_pairs and all(blk.conv.sums_pairs for blk in model.blocks):
                assert torch.equal(searched, tabulated)  # the same pairs in the same order
            else:  # directed edges: the same edges, summed in another order
                torch.testing.assert_close(searched, tabulated, rtol=1e-6, atol=1e-5)
    with pytest.raises(ValueError, match="not both"):
        model(b.z, b.pos, b.batch, edge_index=b.pairs, pairs=b.pairs)
