"""SchNet and its edge filters; every registered filter is tested automatically."""

import pytest
import torch

from pyg_schnet.errors import UserError
from pyg_schnet.nn.filters import FILTERS, GaussianFilter, RadialFilter, make_filter
from pyg_schnet.analysis.invariance import invariance_errors
from pyg_schnet.nn.rotations import random_rotation
from pyg_schnet.nn.schnet import SchNet, build_model

SMALL = dict(hidden_channels=32, num_filters=32, num_interactions=2, cutoff=5.0)


def _random_molecules(seed=0, sizes=(7, 5, 9)):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randint(1, 10, (sum(sizes),), generator=gen)
    pos = torch.randn(sum(sizes), 3, generator=gen) * 1.5
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    return z, pos, batch


#: Every registered filter, and every radial one again with its distances
#: quantised to 0.1 Å bins (the ``distance_bin_width`` option): "gaussian@q".
CASES = sorted(FILTERS) + [
    f"{n}@q" for n in sorted(FILTERS) if issubclass(FILTERS.cls(n), RadialFilter)
]


def _options(case):
    name, _, opt = case.partition("@")
    return name, ({"distance_bin_width": 0.1} if opt == "q" else {})


@pytest.fixture(params=CASES)
def name(request):
    return request.param


def _model(case, **kw):
    name, opts = _options(case)
    torch.manual_seed(0)
    return build_model(name, **{**SMALL, **opts, **kw}).eval()


def test_filter_interface(name):
    name, opts = _options(name)
    f = make_filter(name, num_filters=16, cutoff=4.0, **opts)
    vec = torch.randn(11, 3)
    w = f(vec, vec.norm(dim=-1))
    assert w.shape == (11, 16) and f.cutoff == 4.0


def test_output_shape_and_finite_gradients(name):
    model = _model(name)
    z, pos, batch = _random_molecules()
    pos.requires_grad_(True)
    out = model(z, pos, batch)
    assert out.shape == (3, 1)
    out.sum().backward()
    assert torch.isfinite(pos.grad).all()
    for p in model.parameters():
        assert p.grad is None or torch.isfinite(p.grad).all()
    assert sum(p.grad.abs().sum() for p in model.parameters() if p.grad is not None) > 0


def test_translation_and_permutation_invariance(name, qm9_batch):
    model = _model(name)
    errs = invariance_errors(model, qm9_batch.z, qm9_batch.pos, qm9_batch.batch)
    assert errs["translation"] < 1e-4
    assert errs["permutation"] < 1e-4


def test_rotation(name, qm9_batch):
    model = _model(name)
    errs = invariance_errors(model, qm9_batch.z, qm9_batch.pos, qm9_batch.batch)
    if FILTERS.cls(_options(name)[0]).radial:
        assert errs["rotation"] < 1e-4
    else:  # coords: rotating a molecule changes its prediction, by design
        assert errs["rotation"] > 1e-2


def test_coords_is_not_rotation_invariant():
    assert not FILTERS.cls("coords").radial
    model = _model("coords")
    z, pos, batch = _random_molecules(3, sizes=(8,))
    rot = random_rotation(torch.Generator().manual_seed(5))
    a, b = model(z, pos), model(z, pos @ rot.T)
    assert (a - b).abs().max() > 1e-3 * a.abs().max()


def test_molecule_alone_equals_molecule_in_batch(name):
    model = _model(name)
    z, pos, batch = _random_molecules(2)
    together = model(z, pos, batch)
    for g in range(3):
        m = batch == g
        alone = model(z[m], pos[m])
        torch.testing.assert_close(alone[0], together[g], rtol=1e-5, atol=1e-5)


def test_gaussian_filter_vanishes_at_cutoff():
    f = GaussianFilter(num_filters=8, cutoff=5.0)
    d = torch.tensor([4.0, 4.9, 4.99, 5.0, 5.5])
    with torch.no_grad():
        w = f(torch.zeros(5, 3), d).abs().max(dim=-1).values
    assert float(w[3]) == 0.0 and float(w[4]) == 0.0
    assert w[0] > w[1] > w[2] > w[3]  # smoothly to zero
    assert float(w[2]) < 1e-3 * float(w[0]) + 1e-6


def test_cutoff_is_one_source_of_truth():
    model = build_model("gaussian", cutoff=4.2, num_gaussians=10)
    assert model.cutoff == 4.2
    f = model.interactions[0].conv.filter
    assert f.cutoff == 4.2 and f.envelope.cutoff == 4.2
    assert float(f.basis.offset[-1]) == pytest.approx(4.2)


def test_blocks_have_independent_filters():
    model = build_model("gaussian", **SMALL)
    a, b = model.filters[0].mlp[0].weight, model.filters[1].mlp[0].weight
    assert a.data_ptr() != b.data_ptr() and not torch.equal(a, b)


@pytest.mark.parametrize(
    "fname", [n for n in sorted(FILTERS) if issubclass(FILTERS.cls(n), RadialFilter)]
)
def test_quantised_filter_equals_filter_at_bin_centre(fname):
    """With distance_bin_width w the filter's network sees the bin centre;
    the envelope still takes the true distance."""
    torch.manual_seed(0)
    plain = make_filter(fname, num_filters=8, cutoff=5.0)
    quant = make_filter(fname, num_filters=8, cutoff=5.0, distance_bin_width=0.25)
    quant.load_state_dict(plain.state_dict())
    d = torch.tensor([0.01, 0.24, 0.26, 1.0, 1.1, 2.37, 4.99])
    centre = torch.tensor([0.125, 0.125, 0.375, 1.125, 1.125, 2.375, 4.875])
    vec = torch.zeros(len(d), 3)
    with torch.no_grad():
        got = quant(vec, d)
        want = plain.network(centre) * plain.envelope(d).unsqueeze(-1)
        torch.testing.assert_close(got, want)
        # constant within a bin (before the envelope), different across bins
        net = got / quant.envelope(d).unsqueeze(-1)
        torch.testing.assert_close(net[0], net[1])
        assert not torch.allclose(net[1], net[2])
        # and the plain filter is not: it changes within the bin
        assert not torch.allclose(plain.network(d[:1]), plain.network(d[1:2]))


def test_distance_filter_has_no_basis():
    f = make_filter("distance", num_filters=8, cutoff=5.0)
    assert f.mlp[0].in_features == 1 and not hasattr(f, "basis")
    d = torch.linspace(0.5, 4.5, 50)
    with torch.no_grad():
        w = f.network(d)
    assert float((w[1:] - w[:-1]).abs().max()) < 0.05 * float(w.abs().max())  # continuous


@pytest.mark.parametrize("width", [-0.1, 5.0, float("nan")])
def test_bad_bin_width_is_refused(width):
    with pytest.raises(UserError, match="distance_bin_width"):
        build_model("gaussian", cutoff=5.0, distance_bin_width=width)


def test_unknown_filter_lists_choices():
    with pytest.raises(UserError, match="unknown filter 'sinc'; choose one of: .*gaussian"):
        build_model("sinc")


def test_rebuild_from_hparams(name):
    model = _model(name, mean=0.3, std=2.0, atomref=torch.arange(100.0) / 100)
    again = build_model(**model.hparams())
    again.load_state_dict(model.state_dict())
    z, pos, batch = _random_molecules(4)
    torch.testing.assert_close(model(z, pos, batch), again.eval()(z, pos, batch))


def test_standardization_and_atomref():
    model = _model("gaussian")
    z, pos, batch = _random_molecules(1)
    base = model(z, pos, batch)
    model.set_standardization(1.0, 3.0, torch.ones(100))
    counts = torch.bincount(batch).view(-1, 1).float()
    model_out = model(z, pos, batch)
    torch.testing.assert_close(model_out, base * 3.0 + counts * 2.0, rtol=1e-5, atol=1e-4)


# -- equivalence with PyG's SchNet ----------------------------------------------


def _pyg_schnet(readout, mean, std, atomref, cutoff=10.0):
    from torch_geometric.nn.models import SchNet as PyGSchNet
    from pyg_schnet.nn.graph import radius_edges

    class Graph(torch.nn.Module):  # torch-cluster based: PyG's own needs pyg-lib
        def forward(self, pos, batch):
            e = radius_edges(pos, batch, cutoff, 32)
            return e.edge_index, e.edge_weight

    torch.manual_seed(7)
    m = PyGSchNet(
        hidden_channels=64,
        num_filters=64,
        num_interactions=3,
        num_gaussians=50,
        cutoff=cutoff,
        interaction_graph=Graph(),
        readout=readout,
        mean=mean,
        std=std,
        atomref=atomref,
    )
    # random (not zero) biases so that every mapped tensor matters
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return m.eval()


@pytest.mark.parametrize("readout", ["add", "mean"])
@pytest.mark.parametrize("standardize", [False, True])
def test_from_pyg_matches_pyg(sample, readout, standardize):
    from pyg_schnet.data.loader import MoleculeLoader

    atomref = torch.randn(100, 1) if standardize else None
    mean, std = (0.7, 2.5) if standardize else (None, None)
    pyg = _pyg_schnet(readout, mean, std, atomref)
    ours = SchNet.from_pyg(pyg).eval()
    idx = torch.arange(0, len(sample), 3)
    loader = MoleculeLoader(sample, idx, 50)
    with torch.no_grad():
        for b in loader:
            want = pyg(b.z, b.pos, b.batch)
            got = ours(b.z, b.pos, b.batch)
            scale = float(want.abs().max())
            assert float((got - want).abs().max()) <= 1e-5 * scale


@pytest.mark.parametrize("name", [n for n in CASES if FILTERS.cls(_options(n)[0]).radial])
def test_pair_path_matches_edge_path_with_gradients(name, qm9_batch):
    """The symmetric per-pair path (default for radial filters) gives the
    directed per-edge sum's results: outputs and gradients (weights and positions)."""
    b = qm9_batch
    model = _model(name)
    results = []
    for use_pairs in (True, False):
        model.use_pairs = use_pairs
        model.zero_grad()
        pos = b.pos.clone().requires_grad_(True)
        out = model(b.z, pos, b.batch)
        (out**2).sum().backward()
        grads = [p.grad.clone() for p in model.parameters()]
        results.append((out.detach(), pos.grad, grads))
    (o1, p1, g1), (o2, p2, g2) = results
    torch.testing.assert_close(o1, o2, rtol=1e-5, atol=1e-5 * float(o2.abs().max()))
    torch.testing.assert_close(p1, p2, rtol=1e-4, atol=1e-4 * float(p2.abs().max()))
    for a, c in zip(g1, g2, strict=False):
        torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-4 * float(c.abs().max()) + 1e-8)


@pytest.mark.parametrize("name", ["gaussian", "coords"])
def test_precomputed_edges_take_the_same_path(name, qm9_batch):
    """Edges from the RadiusGraph transform (symmetric) give the same result
    as edges built in the model, and radial filters keep the pair path
    (the filter sees each unordered pair once)."""
    from pyg_schnet.nn.graph import radius_edges

    b = qm9_batch
    model = _model(name)
    seen = []
    hook = model.filters[0].register_forward_hook(lambda m, i, o: seen.append(i[1].numel()))
    with torch.no_grad():
        built = model(b.z, b.pos, b.batch)
        e = radius_edges(b.pos, b.batch, model.cutoff, model.max_num_neighbors)
        given = model(b.z, b.pos, b.batch, edge_index=e.edge_index)
        shuffled = e.edge_index[:, torch.randperm(e.edge_index.size(1))]
        again = model(b.z, b.pos, b.batch, edge_index=shuffled)
        one_way = e.edge_index[:, e.edge_index[0] < e.edge_index[1]]  # not symmetric
        half = model(b.z, b.pos, b.batch, edge_index=one_way)
    hook.remove()
    torch.testing.assert_close(given, built)
    torch.testing.assert_close(again, built, rtol=1e-5, atol=1e-5 * float(built.abs().max()))
    assert not torch.allclose(half, built)
    num_edges = e.edge_index.size(1)
    if FILTERS.cls(name).radial:
        assert seen == [num_edges // 2] * 3 + [num_edges // 2]  # pairs, also when given
    else:
        assert seen == [num_edges] * 3 + [num_edges // 2]


def test_symmetry_check():
    from pyg_schnet.nn.aggregation import is_symmetric

    assert is_symmetric(torch.tensor([[0, 1, 2, 1], [1, 0, 1, 2]]), 3)
    assert not is_symmetric(torch.tensor([[0, 1, 2], [1, 0, 1]]), 3)
    assert not is_symmetric(torch.tensor([[0, 1, 1], [1, 0, 1]]), 3)  # a self-loop
