"""The fast mode (radial filters by table lookup, compiled pair sums): within
its stated tolerance of the exact model for every radial filter, exact for
stepped ones, a component of the model (deep copies and pickled copies follow
their own weights), and rebuilt from hparams."""

import copy
import io
import pickle
import warnings

import pytest
import torch

from pyg_schnet.nn import aggregation, fast
from pyg_schnet.nn.fast import FAST_TOLERANCE, CompiledCoordsAggregation, FilterTable
from pyg_schnet.nn.filters import FILTERS, RadialFilter
from pyg_schnet.nn.schnet import build_model

SMALL = dict(hidden_channels=32, num_filters=32, num_interactions=3, cutoff=5.0)
PYG_SIZE = dict(
    hidden_channels=128, num_filters=128, num_interactions=6, num_gaussians=50, cutoff=10.0
)
RADIAL = sorted(n for n in FILTERS if issubclass(FILTERS.cls(n), RadialFilter))
#: every radial filter, plain and quantised, plus resolutions from coarse to fine
CASES = (
    [(n, {}) for n in RADIAL]
    + [(n, {"distance_bin_width": 0.1}) for n in RADIAL]
    + [
        ("gaussian", {"num_gaussians": 10}),
        ("gaussian", {"num_gaussians": 200}),
        ("conv1d", {"num_bins": 200}),
    ]
    + [
        ("gaussian", {"distance_bin_width": 0.1, "rounding": r})
        for r in ("shifted", "noise", "dither")
    ]
    + [("gaussian", {"distance_bin_width": 0.1, "discrete_envelope": True})]
)


def _ids(case):
    name, kw = case
    return name + "".join(f"-{k}={v}" for k, v in kw.items())


def _pair(name="gaussian", **kw):
    torch.manual_seed(0)
    exact = build_model(name, **kw)
    fast = build_model(name, **kw, fast=True)
    fast.load_state_dict(exact.state_dict())
    return exact.eval(), fast.eval()


def _spread_error(a, b):
    return float((a - b).abs().max()) / float(a.std())


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_fast_within_tolerance_of_exact(case, qm9_batch):
    name, kw = case
    b = qm9_batch
    exact, fast = _pair(name, **SMALL, **kw, mean=-4.0, std=0.2)
    with torch.no_grad():
        torch.manual_seed(1)  # the same draws for a noisy filter
        a = exact(b.z, b.pos, b.batch)
        torch.manual_seed(1)
        f = fast(b.z, b.pos, b.batch)
    err = _spread_error(a, f)
    assert err <= FAST_TOLERANCE, err
    if fast.filters[0].step_width > 0:  # a stepped filter is exactly a table
        assert err < 1e-5, err


def test_fast_predictions_at_pyg_size(qm9_batch):
    b = qm9_batch
    exact, fast = _pair(**PYG_SIZE, mean=-4.0, std=0.2)
    with torch.no_grad():
        err = _spread_error(exact(b.z, b.pos, b.batch), fast(b.z, b.pos, b.batch))
    assert 0 < err <= FAST_TOLERANCE, err  # an approximation, not the same code path


def test_grid_follows_the_narrowest_feature():
    table = FilterTable()
    coarse = build_model("gaussian", cutoff=5.0, num_gaussians=25).filters[0]
    fine = build_model("gaussian", cutoff=5.0, num_gaussians=201).filters[0]
    binned = build_model("conv1d", cutoff=5.0, num_bins=50).filters[0]
    assert table.grid_spacing(coarse) == pytest.approx(5.0 / 24 / 20)  # 0.2 Å Gaussians: 0.01 Å
    assert table.grid_spacing(fine) == pytest.approx(0.025 / 20)
    assert table.grid_spacing(binned) == pytest.approx(0.1)  # one row per bin


@pytest.mark.parametrize("name", RADIAL)
def test_fast_gradients_close(name, qm9_batch):
    b = qm9_batch
    exact, fast = _pair(name, **SMALL)
    grads = []
    for m in (exact, fast):
        m.zero_grad()
        (m(b.z, b.pos, b.batch) ** 2).mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters()]))
    rel = float((grads[0] - grads[1]).norm() / grads[0].norm())
    assert rel < 1e-2, rel


def test_fast_flag_survives_rebuild():
    _, fast = _pair(hidden_channels=16, num_filters=16, num_interactions=2, cutoff=4.0)
    again = build_model(**fast.hparams())
    assert again.fast and fast.hparams()["fast"] is True
    assert isinstance(again.interactions[0].conv.filter_table, FilterTable)


@pytest.mark.parametrize("name", ["coords", "coords_basis"])
def test_coords_fast_within_tolerance_of_exact(name, qm9_batch):
    """The coordinate filters' fast path (both directions of each pair in one
    compiled function; coords_basis's first layer from per-component tables):
    predictions within the tolerance, gradients of the weights and positions
    close, and at a neighbour cap (directed edges) the exact path."""
    b = qm9_batch
    exact, fast = _pair(name, **SMALL, mean=-4.0, std=0.2)
    assert isinstance(fast.blocks[0].conv.coords_aggregation, CompiledCoordsAggregation)
    assert exact.blocks[0].conv.coords_aggregation is None
    with torch.no_grad():
        err = _spread_error(exact(b.z, b.pos, b.batch), fast(b.z, b.pos, b.batch))
    assert err <= FAST_TOLERANCE, err
    if name == "coords_basis":  # the tables ran: not the exact numbers (coords can be)
        assert err > 0
    grads = []
    for m in (exact, fast):
        pos = b.pos.clone().requires_grad_(True)
        (m.train()(b.z, pos, b.batch) ** 2).mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters()] + [pos.grad.flatten()]))
    rel = float((grads[0] - grads[1]).norm() / grads[0].norm())
    assert rel < 1e-2, rel
    capped_exact, capped_fast = _pair(name, **SMALL, max_num_neighbors=4)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the cap's dropped edges
        torch.testing.assert_close(
            capped_exact(b.z, b.pos, b.batch), capped_fast(b.z, b.pos, b.batch)
        )


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_copies_of_a_fast_model_use_their_own_weights(how, qm9_batch):
    """What EMA/SWA's AveragedModel does (a deep copy), and a pickled model:
    changing the copy's filter weights changes the copy's predictions and not
    the original's, and vice versa."""
    b = qm9_batch
    _, fast = _pair(**SMALL)
    if how == "deepcopy":
        twin = copy.deepcopy(fast)
    else:
        buf = io.BytesIO()
        torch.save(fast, buf)  # pickles the whole module
        buf.seek(0)
        twin = torch.load(buf, weights_only=False)
        assert pickle.loads(pickle.dumps(fast)).fast
    with torch.no_grad():
        before = fast(b.z, b.pos, b.batch)
        torch.testing.assert_close(twin(b.z, b.pos, b.batch), before)
        for f in twin.filters:
            f.mlp[2].bias.add_(1.0)
        changed = twin(b.z, b.pos, b.batch)
        assert float((changed - before).abs().max()) > 1e-3
        torch.testing.assert_close(fast(b.z, b.pos, b.batch), before)
        for f in fast.filters:
            f.mlp[2].bias.add_(1.0)
        torch.testing.assert_close(fast(b.z, b.pos, b.batch), changed)


def test_averaged_model_of_a_fast_model(qm9_batch):
    b = qm9_batch
    _, fast = _pair(**SMALL)
    ema = torch.optim.swa_utils.AveragedModel(fast)
    with torch.no_grad():
        for f in fast.filters:
            f.mlp[2].bias.add_(1.0)
        assert float((ema(b.z, b.pos, b.batch) - fast(b.z, b.pos, b.batch)).abs().max()) > 1e-3
        ema.update_parameters(fast)  # first update copies the weights
        torch.testing.assert_close(ema(b.z, b.pos, b.batch), fast(b.z, b.pos, b.batch))


def _painn_pair(**kw):
    from pyg_schnet.nn.models import build

    torch.manual_seed(0)
    exact = build("painn", hidden_channels=16, num_interactions=2, cutoff=5.0, **kw)
    fast = build("painn", hidden_channels=16, num_interactions=2, cutoff=5.0, fast=True, **kw)
    fast.load_state_dict(exact.state_dict())
    return exact, fast


@pytest.mark.parametrize("cap", [32, 4], ids=["pairs", "capped-directed"])
def test_painn_fast_within_tolerance_of_exact(cap, qm9_batch):
    """PaiNN's fast mode: the tabulated filter and, on a symmetric graph, the
    compiled pair sum (a neighbour cap leaves directed edges: table only)."""
    from pyg_schnet.nn.graph import radius_edges

    b = qm9_batch
    assert (radius_edges(b.pos, b.batch, 5.0, cap, warn=False).num_dropped > 0) == (cap == 4)
    exact, fast = _painn_pair(max_num_neighbors=cap, mean=-4.0, std=0.2)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the cap's dropped edges
        err = _spread_error(exact(b.z, b.pos, b.batch), fast(b.z, b.pos, b.batch))
    assert 0 < err <= FAST_TOLERANCE, err
    grads = []
    for m in (exact, fast):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (m(b.z, b.pos, b.batch) ** 2).mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters()]))
    assert float((grads[0] - grads[1]).norm() / grads[0].norm()) < 1e-2


def test_painn_fast_flag_survives_rebuild():
    from pyg_schnet.nn.models import build

    _, fast = _painn_pair()
    assert fast.hparams()["fast"] is True and build(**fast.hparams()).fast
    assert isinstance(fast.messages[0].filter_table, FilterTable)


@pytest.mark.parametrize("name", sorted(fast._IN_PLACE))
def test_in_place_kernels_give_the_same_bits(name, monkeypatch):
    """The eager in-place form of a kernel (for the pair sum, the exact
    mode's :class:`SymmetricAggregate`) equals its unblocked autograd form
    bit for bit, over blocks of 7 pairs (the last one short) with pairs in
    random order, and eager kernels without gradients use it."""
    monkeypatch.setattr(aggregation, "CHUNK_BYTES", 7 * 16 * 4)  # 7 rows of 16 floats
    g = torch.Generator().manual_seed(0)
    table, h = torch.randn(40, 16, generator=g), torch.randn(30, 16, generator=g)
    pi, pj = torch.randint(0, 30, (2, 200), generator=g)
    args = {
        "interpolate": (table, torch.randint(0, 39, (200,), generator=g), torch.rand(200, 1)),
        "aggregate": (h, torch.randn(200, 16, generator=g), pi, pj),
    }[name]
    reference = {"interpolate": fast._interpolate, "aggregate": fast._aggregate}[name]
    assert torch.equal(fast._IN_PLACE[name](*args), reference(*args))
    with fast.eager_kernels():
        with torch.no_grad():
            assert fast._kernel(name, reference) is fast._IN_PLACE[name]
        assert fast._kernel(name, reference) is reference
