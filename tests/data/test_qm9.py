"""QM9 data set, splits, statistics and radius-graph edges.

Reference values come from the qm9pack CSV files read with the ``csv`` module
and converted with constants written out in ``qm9_sample.py``, independent of
the code under test.
"""

import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch

from pyg_schnet.data import (
    QM9,
    TARGETS,
    compute_statistics,
    get_split,
    load_split,
    random_split,
    target_index,
)
from pyg_schnet.errors import UserError
from pyg_schnet.nn.graph import RadiusGraph, radius_edges
from qm9_sample import csv_rows, expected, write_pyg_raw


def test_full_dataset_count_order_and_values(qm9):
    assert len(qm9) == 130_831
    idx = qm9._data.idx
    assert int(idx[0]) == 0 and int(idx[-1]) == 133_884
    assert bool((idx[1:] > idx[:-1]).all()), "molecules must be in QM9 index order"
    assert qm9._data.y.shape == (130_831, 19)
    assert len(TARGETS) == 19 and TARGETS[7] == "U0" and TARGETS[12] == "U0_atom"
    # several molecules across all three CSV parts, checked against our own parse
    wanted = {1, 2, 5147, 44747, 89009, 133885}
    rows = csv_rows(wanted)
    assert set(rows) == wanted
    pos_of = {int(i): k for k, i in enumerate(idx.tolist())}
    for index, row in rows.items():
        data = qm9[pos_of[index - 1]]
        y, z, pos = expected(row)
        assert data.name == f"gdb_{index}"
        assert data.smiles == row["SMILES"]
        assert data.z.dtype == torch.long and data.pos.dtype == torch.float32
        np.testing.assert_array_equal(data.z.numpy(), z)
        np.testing.assert_allclose(data.pos.numpy(), pos, rtol=1e-6, atol=1e-6)
        assert data.y.shape == (1, 19)
        np.testing.assert_allclose(data.y[0].double().numpy(), y, rtol=2e-7, atol=1e-6)
    # methane: U0_atom from the QM9 paper's atom references, about -17.17 eV
    assert abs(float(qm9[0].y[0, 12]) - (-17.1722)) < 1e-3


def test_targets_by_name():
    assert target_index("U0") == 7 and target_index("gap") == 4 and target_index("u0") == 7
    with pytest.raises(UserError, match="unknown target 'energy'.*U0"):
        target_index("energy")


def test_bad_source_and_root(tmp_path):
    with pytest.raises(UserError, match="unknown QM9 source 'xyz'.*qm9pack, pyg"):
        QM9(str(tmp_path), source="xyz")
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(UserError, match="is a file"):
        QM9(str(f))


def test_max_molecules_is_deterministic(qm9):
    from pyg_schnet.data import QM9 as Q

    a = Q(qm9.root, max_molecules=500)
    b = Q(qm9.root, max_molecules=500)
    assert len(a) == 500 and a._indices == b._indices
    assert a._indices == sorted(a._indices)
    assert int(a.num_atoms().sum()) == sum(a[i].z.numel() for i in range(500))


# -- the PyG source, offline, from a raw folder the test writes ---------------


def test_pyg_source_agrees_with_qm9pack(tmp_path, qm9):
    rows = csv_rows(set(range(1, 9)))
    assert sorted(rows) == list(range(1, 9))
    root = str(tmp_path / "pygqm9")
    write_pyg_raw(osp.join(root, "raw"), rows, skip_index=3)
    ds = QM9(root, source="pyg")
    assert len(ds) == 7  # molecule 3 listed as uncharacterized
    assert ds._data.idx.tolist() == [0, 1, 3, 4, 5, 6, 7]
    for k in range(len(ds)):
        a = ds[k]
        b = qm9[int(a.idx)]  # the first molecules: position == idx
        assert int(b.idx) == int(a.idx) and a.name == b.name
        assert torch.equal(a.z, b.z)
        assert a.pos.dtype == torch.float32
        # the SDF holds 4 decimals
        torch.testing.assert_close(a.pos, b.pos, rtol=0, atol=5.1e-5)
        # float32 precision (PyG multiplies in float32)
        torch.testing.assert_close(a.y, b.y, rtol=3e-7, atol=1e-6)
    # a second load uses the cache; a corrupt cache is rebuilt with a warning
    cache = ds.processed_paths[0]
    with open(cache, "r+b") as f:
        f.truncate(200)
    with pytest.warns(UserWarning, match="unreadable"):
        again = QM9(root, source="pyg")
    assert len(again) == 7 and torch.equal(again._data.y, ds._data.y)


def test_corrupt_cache_garbage_is_rebuilt(tmp_path):
    rows = csv_rows({1, 2, 3})
    root = str(tmp_path / "q")
    write_pyg_raw(osp.join(root, "raw"), rows, skip_index=99)
    ds = QM9(root, source="pyg")
    with open(ds.processed_paths[0], "wb") as f:
        f.write(b"\x00garbage" * 10)
    with pytest.warns(UserWarning):
        ds2 = QM9(root, source="pyg")
    assert len(ds2) == 3


def test_every_truncated_cache_file_is_rebuilt_with_a_warning(tmp_path):
    """Each file of the processed folder (ours and PyG's: pre_filter.pt,
    pre_transform.pt, PyG's own processed QM9) truncated in turn: one warning
    naming it, a rebuild, the same data."""
    import glob
    import warnings

    rows = csv_rows({1, 2, 3})
    root = str(tmp_path / "q")
    write_pyg_raw(osp.join(root, "raw"), rows, skip_index=99)
    want = QM9(root, source="pyg")._data.y.clone()
    files = sorted(p for p in glob.glob(osp.join(root, "processed", "*.pt")))
    assert {osp.basename(p) for p in files} >= {
        "pre_filter.pt",
        "pre_transform.pt",
        "pyg_qm9_data_v3.pt",
        "qm9_pyg_v1.pt",
    }
    for path in files:
        with open(path, "r+b") as f:
            f.truncate(10)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = QM9(root, source="pyg")
        msgs = [str(w.message) for w in caught if "unreadable" in str(w.message)]
        assert len(msgs) == 1 and osp.basename(path) in msgs[0], msgs
        assert torch.equal(ds._data.y, want)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # rebuilt: the next load is silent
            QM9(root, source="pyg")


# -- splits and statistics -------------------------------------------------------


def test_split_counts_fractions_reuse_and_schnetpack(tmp_path):
    s = random_split(100, 80, 10, seed=1)
    assert (len(s.train_idx), len(s.val_idx), len(s.test_idx)) == (80, 10, 10)
    assert len(set(s.train_idx) | set(s.val_idx) | set(s.test_idx)) == 100
    f = random_split(1000, 0.5, 0.25, seed=0)
    assert (len(f.train_idx), len(f.val_idx), len(f.test_idx)) == (500, 250, 250)
    path = str(tmp_path / "split.npz")
    a = get_split(path, 100, 80, 10, None, seed=3)
    b = get_split(path, 100, 50, 5, None, seed=4)  # existing file is reused
    np.testing.assert_array_equal(a.train_idx, b.train_idx)
    # a schnetpack split file (only its three keys) loads
    sp = str(tmp_path / "spk.npz")
    np.savez(sp, train_idx=np.arange(5), val_idx=np.arange(5, 8), test_idx=np.arange(8, 10))
    assert len(load_split(sp, 10).val_idx) == 3


@pytest.mark.parametrize(
    "arrays,match",
    [
        (dict(train_idx=[0, 1], val_idx=[2], test_idx=[10]), "outside"),
        (dict(train_idx=[0, 1], val_idx=[1], test_idx=[3]), "overlap"),
        (dict(train=[0, 1], val_idx=[2], test_idx=[3]), "lacks"),
        (dict(train_idx=[0, 1], val_idx=[2], test_idx=[3], num_molecules=11), "made for 11"),
        (dict(train_idx=[-1, 1], val_idx=[2], test_idx=[3]), "outside"),
    ],
)
def test_bad_split_files(tmp_path, arrays, match):
    path = str(tmp_path / "bad.npz")
    np.savez(path, **{k: np.asarray(v) for k, v in arrays.items()})
    with pytest.raises(UserError, match=match):
        load_split(path, 10)


def test_split_file_not_npz(tmp_path):
    path = tmp_path / "split.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(UserError, match="cannot read split file"):
        load_split(str(path), 10)


def test_statistics_use_training_split_only(qm9):
    from pyg_schnet.data import QM9 as Q, atomref

    ds = Q(qm9.root, max_molecules=2000)
    split = random_split(len(ds), 1000, 500, seed=0)
    st = compute_statistics(ds, split.train_idx, "U0")
    assert st.readout == "add"
    ref = atomref("U0")
    per_atom = []
    for i in split.train_idx:
        d = ds[int(i)]
        per_atom.append((float(d.y[0, 7]) - float(ref[d.z].double().sum())) / d.z.numel())
    assert st.mean == pytest.approx(np.mean(per_atom), rel=1e-6, abs=1e-6)
    assert st.std == pytest.approx(np.std(per_atom, ddof=1), rel=1e-5)
    assert st.atomref is not None and float(st.atomref[6]) == pytest.approx(-1029.8631, abs=1e-3)
    # statistics of a target without atom references: per molecule, mean readout
    gap = compute_statistics(ds, split.train_idx, "gap")
    assert gap.atomref is None and gap.readout == "mean"
    vals = ds.targets()[torch.as_tensor(split.train_idx), 4].double()
    assert gap.mean == pytest.approx(float(vals.mean()), rel=1e-9)
    # other molecules do not enter: the val split gives different numbers
    other = compute_statistics(ds, split.val_idx, "gap")
    assert other.mean != gap.mean


# -- radius graph ------------------------------------------------------------------


def _brute_force(pos, batch, cutoff):
    n = len(pos)
    d = torch.cdist(pos.double(), pos.double())
    same = batch.view(-1, 1) == batch.view(1, -1)
    mask = (d <= cutoff) & same & ~torch.eye(n, dtype=torch.bool)
    a, b = torch.nonzero(mask, as_tuple=True)  # symmetric: (a, b) and (b, a) both present
    return {(int(s), int(t)) for s, t in zip(a, b, strict=False)}, d, mask


def test_radius_graph_matches_brute_force():
    gen = torch.Generator().manual_seed(0)
    pos = torch.rand(60, 3, generator=gen) * 6
    batch = torch.repeat_interleave(torch.arange(3), torch.tensor([25, 20, 15]))
    edges = radius_edges(pos, batch, cutoff=2.5, max_num_neighbors=100)
    want, d, mask = _brute_force(pos, batch, 2.5)
    got = set(zip(edges.edge_index[0].tolist(), edges.edge_index[1].tolist(), strict=False))
    assert got == want and edges.num_dropped == 0
    src, dst = edges.edge_index
    torch.testing.assert_close(edges.edge_vec, pos[src] - pos[dst])
    torch.testing.assert_close(edges.edge_weight.double(), d[src, dst], atol=1e-5, rtol=0)


def test_radius_operator_alone_equals_torch_cluster():
    """The radius operator loaded without torch-cluster's package (which
    imports scipy) gives torch_cluster.radius_graph's edges in its order."""
    code = (
        "import sys, torch; from pyg_schnet.nn.radius import radius_edges; "
        "g = torch.Generator().manual_seed(0); pos = torch.rand(60, 3, generator=g) * 6; "
        "b = torch.repeat_interleave(torch.arange(3), torch.tensor([25, 20, 15])); "
        "e = radius_edges(pos, b, 2.5, 100).edge_index; "
        "alone = {'torch_cluster', 'scipy'} & set(sys.modules); import torch_cluster; "
        "ref = torch_cluster.radius_graph(pos, 2.5, b, max_num_neighbors=100); "
        "print(sorted(alone), e.shape[1] > 50 and torch.equal(e, ref))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "[] True", out.stderr


def test_radius_graph_truncation_is_counted_and_keeps_nearest():
    gen = torch.Generator().manual_seed(1)
    pos = torch.rand(40, 3, generator=gen) * 3
    batch = torch.zeros(40, dtype=torch.long)
    want, d, mask = _brute_force(pos, batch, 2.0)
    cap = 5
    deg = mask.sum(dim=1)  # incoming edges per target (symmetric)
    expected_dropped = int((deg - cap).clamp(min=0).sum())
    assert expected_dropped > 0
    with pytest.warns(UserWarning, match=f"dropped {expected_dropped} of {len(want)} edges"):
        edges = radius_edges(pos, batch, cutoff=2.0, max_num_neighbors=cap)
    assert edges.num_dropped == expected_dropped
    src, dst = edges.edge_index
    assert int(torch.bincount(dst, minlength=40).max()) <= cap
    for t in range(40):
        kept = sorted(d[src[dst == t], t].tolist())
        nearest = sorted(d[t][mask[t]].tolist())[:cap]
        np.testing.assert_allclose(kept, nearest, atol=1e-5)


def test_radius_graph_transform(qm9):
    """On a molecule and on a batch of three (edges within each molecule,
    as PyG's transform), against the brute-force pair list."""
    from torch_geometric.data import Batch

    data = RadiusGraph(cutoff=3.0)(qm9[100].clone())
    want, _, _ = _brute_force(data.pos, torch.zeros(data.z.numel(), dtype=torch.long), 3.0)
    got = set(zip(data.edge_index[0].tolist(), data.edge_index[1].tolist(), strict=False))
    assert got == want and data.num_dropped_edges == 0
    batch = RadiusGraph(cutoff=3.0)(Batch.from_data_list([qm9[i] for i in (100, 5000, 90000)]))
    want, _, _ = _brute_force(batch.pos, batch.batch, 3.0)
    got = set(zip(batch.edge_index[0].tolist(), batch.edge_index[1].tolist(), strict=False))
    assert got == want and batch.num_dropped_edges == 0


def _small(data):
    """A pre_filter: molecules of fewer than 15 atoms."""
    return data.z.numel() < 15


def test_pre_transform_and_pre_filter_as_in_pyg_each_with_its_own_cache(tmp_path):
    """PyG's ``pre_transform`` and ``pre_filter`` on the sample's raw files:
    applied once, cached apart from the plain data set (which stays as it
    was), and never reused for another pre-processing."""
    import shutil
    import warnings

    from conftest import SAMPLE_ROOT

    root = str(tmp_path / "q")
    shutil.copytree(osp.join(SAMPLE_ROOT, "raw"), osp.join(root, "raw"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PyG's "pre_transform differs" warning included
        pre = QM9(root, source="pyg", pre_transform=RadiusGraph(2.0), pre_filter=_small)
        plain = QM9(root, source="pyg")
        kept = [i for i in range(len(plain)) if plain[i].z.numel() < 15]
        assert 0 < len(pre) == len(kept) < len(plain) and "edge_index" not in plain[0]
        for k in (0, len(kept) // 2, len(kept) - 1):
            want = RadiusGraph(2.0)(plain[kept[k]])
            assert torch.equal(pre[k].edge_index, want.edge_index) and pre[k].name == want.name
        wider = QM9(root, source="pyg", pre_transform=RadiusGraph(3.0), pre_filter=_small)
        assert wider._data.edge_index.size(1) > pre._data.edge_index.size(1)
        again = QM9(root, source="pyg", pre_transform=RadiusGraph(2.0), pre_filter=_small)
        assert again.build_seconds is None and torch.equal(again[0].edge_index, pre[0].edge_index)
