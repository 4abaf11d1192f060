"""The model registry: every registered model is tested automatically, for its
interface, its symmetries, one training step, checkpoints and resume."""

import argparse
import csv
import itertools
import os.path as osp

import pytest
import torch
import yaml

from helpers import TINY, TINY_BENCHMARK, cli, run_here
from pyg_schnet.run.config import load_config
from pyg_schnet.errors import UserError
from pyg_schnet.analysis.invariance import invariance_errors
from pyg_schnet.nn.schnet import SchNet
from pyg_schnet.nn.models import MODELS, build
from pyg_schnet.nn.pyg import triplets

SMALL = dict(hidden_channels=16, num_interactions=2, cutoff=4.0)
#: smaller own options where a model's defaults are slow to run
OWN = {
    "dimenet++": dict(
        num_spherical=3, num_radial=3, int_emb_size=16, basis_emb_size=4, out_emb_channels=32
    )
}


@pytest.fixture(params=sorted(MODELS))
def name(request):
    return request.param


def _model(name, **kw):
    """A small model with every parameter non-zero (DimeNet++ starts its output
    layers at zero, which would make every symmetry test pass trivially)."""
    torch.manual_seed(0)
    model = build(name, **{**SMALL, **OWN.get(name, {}), **kw})
    with torch.no_grad():
        for p in model.parameters():
            if not p.abs().sum():
                p.normal_(0.0, 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def batch(sample):
    from torch_geometric.loader import DataLoader

    return next(iter(DataLoader(sample[:24], batch_size=24)))


def test_output_shape_standardisation_and_readouts(name, batch):
    b = batch
    add = _model(name)
    out = add(b.z, b.pos, b.batch)
    assert out.shape == (24, 1) and torch.isfinite(out).all() and out.std() > 0
    # the same standardisation and readout rules for every model
    ref = torch.zeros(100)
    ref[[1, 6, 7, 8, 9]] = torch.tensor([-13.6, -1029.0, -1485.0, -2042.0, -2713.0])
    scaled = _model(name, mean=0.5, std=2.0, atomref=ref)
    atoms = torch.bincount(b.batch).unsqueeze(-1).float()
    refs = torch.zeros(24).index_add_(0, b.batch, ref[b.z]).unsqueeze(-1)
    torch.testing.assert_close(
        scaled(b.z, b.pos, b.batch), 2.0 * out + 0.5 * atoms + refs, rtol=1e-5, atol=1e-3
    )
    mean = _model(name, readout="mean")
    torch.testing.assert_close(mean(b.z, b.pos, b.batch), out / atoms, rtol=1e-5, atol=1e-6)


def test_energy_is_invariant(name, batch):
    b = batch
    errors = invariance_errors(_model(name), b.z, b.pos, b.batch, seed=1)
    assert errors["rotation"] < 1e-4
    assert errors["translation"] < 1e-4
    assert errors["permutation"] < 1e-4


def test_every_parameter_gets_a_gradient(name, batch):
    """DistributedDataParallel (the default on a machine with more than one core)
    stops at its second step if a parameter takes no part in the loss."""
    b = batch
    model = _model(name).train()
    model(b.z, b.pos, b.batch).square().sum().backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused


def test_one_training_step_lowers_the_loss(name, batch):
    b = batch
    torch.manual_seed(0)
    model = build(name, **SMALL, **OWN.get(name, {})).train()  # as built (DimeNet++: 0)
    target = torch.randn(24, 1, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    losses = []
    for _ in range(2):
        loss = torch.mean((model(b.z, b.pos, b.batch) - target) ** 2)
        losses.append(float(loss))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[1] < losses[0]


def test_checkpoint_round_trip(name, batch, tmp_path):
    b = batch
    model = _model(name, mean=0.3, std=1.7)
    path = tmp_path / "m.pt"
    torch.save({"hparams": model.hparams(), "model": model.state_dict()}, path)
    ckpt = torch.load(path, weights_only=True)
    again = build(**ckpt["hparams"])
    again.load_state_dict(ckpt["model"])
    again.eval()
    assert ckpt["hparams"]["model"] == name
    torch.testing.assert_close(again(b.z, b.pos, b.batch), model(b.z, b.pos, b.batch))


def test_ours_equals_pyg_schnet(batch):
    """``pyg_schnet_ref`` is PyG's SchNet; this project's, given its weights,
    predicts the same (a study row "ours equals PyG")."""
    b = batch
    ref = _model("pyg_schnet_ref", num_filters=16, num_gaussians=20, mean=0.2, std=3.0)
    ours = SchNet.from_pyg(ref.net)
    ours.set_standardization(0.2, 3.0)
    torch.testing.assert_close(
        ours.eval()(b.z, b.pos, b.batch), ref(b.z, b.pos, b.batch), rtol=1e-5, atol=1e-4
    )


@pytest.mark.parametrize("reduce", ["add", "sum", "mean"])
@pytest.mark.parametrize("features", [0, 1, 16])
def test_graph_pool_is_pygs_scatter_bit_for_bit(reduce, features):
    """The readout without PyG (:func:`~pyg_schnet.nn.atomistic.graph_pool`)
    equals :func:`torch_geometric.utils.scatter` bit for bit: per-atom
    outputs ``[N, 1]``, features ``[N, F]`` and counts ``[N]``, over graphs
    of many sizes and an empty last graph."""
    from torch_geometric.utils import scatter

    from pyg_schnet.nn.atomistic import graph_pool

    gen = torch.Generator().manual_seed(0)
    sizes = torch.randint(1, 30, (300,), generator=gen)
    batch = torch.repeat_interleave(torch.arange(300), sizes)
    shape = (batch.numel(), features) if features else (batch.numel(),)
    src = torch.randn(shape, generator=gen) * 1e3
    want = scatter(src, batch, dim=0, dim_size=301, reduce=reduce)
    got = graph_pool(src, batch, 301, reduce)
    assert got.shape == want.shape and torch.equal(got, want)


def _pyg_dimenet():
    """PyG's own ``DimeNetPlusPlus`` with the settings of :func:`_model`."""
    from torch_geometric.nn.models import DimeNetPlusPlus

    o = dict(SMALL, **OWN["dimenet++"])
    return DimeNetPlusPlus(
        o["hidden_channels"],
        1,
        o["num_interactions"],
        o["int_emb_size"],
        o["basis_emb_size"],
        o["out_emb_channels"],
        o["num_spherical"],
        o["num_radial"],
        cutoff=o["cutoff"],
    )


def test_dimenet_blocks_are_pygs_with_a_closed_form_basis():
    """DimeNet++ is PyG's blocks under PyG's names: a seed gives PyG's own
    initial weights, the state dicts load into each other, and the spherical
    basis (closed form here, sympy in PyG) gives PyG's values, and float64's."""
    from scipy.special import spherical_jn
    from pyg_schnet.nn.pyg import SphericalBasis

    torch.manual_seed(3)
    ours = build("dimenet++", **SMALL, **OWN["dimenet++"]).net
    pyg = _pyg_dimenet()
    torch.manual_seed(3)
    pyg.reset_parameters()
    theirs = pyg.state_dict()
    assert ours.state_dict().keys() == theirs.keys()
    assert all(torch.equal(v, theirs[k]) for k, v in ours.state_dict().items())
    torch.manual_seed(4)
    other = build("dimenet++", **SMALL, **OWN["dimenet++"]).net.state_dict()
    assert not torch.equal(other["emb.emb.weight"], theirs["emb.emb.weight"])
    gen = torch.Generator().manual_seed(0)
    dist = 0.7 + 3.3 * torch.rand(300, generator=gen)  # Å, within the cutoff of 4
    angle = torch.pi * torch.rand(500, generator=gen)
    idx_kj = torch.randint(0, 300, (500,), generator=gen)
    expected = pyg.sbf(dist, angle, idx_kj)  # [T, 3 * 3]
    torch.testing.assert_close(
        ours.sbf(dist, angle, idx_kj), expected, rtol=0, atol=1e-5 * float(expected.abs().max())
    )
    # the default 7 x 6 (PyG's takes 20 s to build) against float64 Bessel functions
    basis = SphericalBasis(7, 6, cutoff=4.0)
    d = (dist / 4.0).double()
    truth = torch.stack(
        [
            torch.stack(
                [
                    basis.norm[deg, n]
                    * torch.from_numpy(spherical_jn(deg, (basis.roots[deg, n] * d).numpy()))
                    for n in range(6)
                ],
                1,
            )
            for deg in range(7)
        ],
        1,
    ) * basis.envelope(d).view(-1, 1, 1)  # [E, 7, 6]
    torch.testing.assert_close(
        basis.bessel(dist).double(), truth, rtol=0, atol=1e-6 * float(truth.abs().max())
    )


def test_dimenet_equals_pygs_own_forward(batch, monkeypatch):
    """The DimeNet++ adapter runs PyG's blocks in a forward written here (on
    ``radius_edges`` and :func:`triplets`); PyG's own model with the same
    weights, its ``forward`` on the same radius graph, gives the same
    energies. PyG's forward needs ``torch-sparse`` for its triplets, which
    this project does not require."""
    pytest.importorskip(
        "torch_sparse",
        reason="PyG's own DimeNet++ forward needs torch-sparse "
        "(MAX_JOBS=2 pip install --no-build-isolation torch-sparse)",
    )
    from torch_geometric.nn.models import dimenet
    from pyg_schnet.nn.graph import radius_edges

    def graph(pos, r, batch=None, max_num_neighbors=32):  # PyG's radius_graph needs pyg-lib
        return radius_edges(pos, batch, r, max_num_neighbors).edge_index

    monkeypatch.setattr(dimenet, "radius_graph", graph)
    b = batch
    model = _model("dimenet++")
    pyg = _pyg_dimenet()
    pyg.load_state_dict(model.net.state_dict())
    with torch.no_grad():
        atoms = model.atom_outputs(b.z, b.pos, b.batch)  # [N, 1], before the readout
        ours = torch.zeros(b.num_graphs, 1).index_add_(0, b.batch, atoms)
        theirs = pyg(b.z, b.pos, b.batch)  # [num_graphs, 1]
    assert theirs.abs().max() > 1e-3  # not the trivially equal zeros of an untrained output
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_triplets_against_brute_force():
    gen = torch.Generator().manual_seed(0)
    edges = [
        (j, i) for i, j in itertools.permutations(range(6), 2) if torch.rand(1, generator=gen) < 0.6
    ]
    edge_index = torch.tensor(edges).t()
    idx_i, idx_j, idx_k, idx_kj, idx_ji = triplets(edge_index, 6)
    found = sorted(zip(idx_kj.tolist(), idx_ji.tolist(), strict=False))
    expected = sorted(
        (a, b)
        for a, (k, j) in enumerate(edges)
        for b, (j2, i) in enumerate(edges)
        if j2 == j and k != i
    )
    assert found == expected and len(found) > 10
    src, dst = edge_index
    assert torch.equal(src[idx_kj], idx_k) and torch.equal(dst[idx_kj], idx_j)
    assert torch.equal(src[idx_ji], idx_j) and torch.equal(dst[idx_ji], idx_i)


# -- the config boundary ------------------------------------------------------------------


def _tiny(name, **kw):
    """The tests' tiny settings for model ``name`` (the Gaussian filter's
    resolution is a SchNet setting), with its small own options."""
    base = dict(TINY, model=dict(name=name, **OWN.get(name, {})), **kw)
    if name not in ("schnet", "pyg_schnet_ref"):
        base.pop("num_gaussians")
    return base


def test_every_model_is_a_config_value(name):
    cfg = load_config(None, _tiny(name))
    assert cfg.model_name == name and cfg.model_hparams()["model"] == name
    model = build(**cfg.model_hparams())
    assert type(model) is MODELS.cls(name) and model.name == name  # as registered
    assert set(cfg.model_hparams()) - {"model"} <= set(MODELS.arguments(name))


def test_model_settings_are_checked():
    with pytest.raises(
        UserError,
        match=r"unknown model 'schnett'; choose one of: schnet, "
        r"pyg_schnet_ref, visnet, dimenet\+\+, painn",
    ):
        load_config(None, {"model": "schnett"})
    with pytest.raises(UserError, match="fast applies to model schnet and painn only"):
        load_config(None, {"model": "visnet", "fast": True})
    assert load_config(None, {"model": "painn", "fast": True}).model_hparams()["fast"] is True
    with pytest.raises(UserError, match="filter settings apply to model schnet only"):
        load_config(None, {"model": "visnet", "filter": "conv1d"})
    with pytest.raises(UserError, match="filter settings apply to model schnet only"):
        load_config(None, {"model": "painn", "num_gaussians": 25})
    with pytest.raises(UserError, match="model 'painn' takes no argument 'lmax'"):
        build("painn", lmax=2)
    with pytest.raises(
        UserError,
        match=r"model 'painn' has no option 'lmax'; its options: "
        r"num_rbf",
    ):
        load_config(None, {"model": {"name": "painn", "lmax": 2}})
    with pytest.raises(UserError, match="model.num_rbf must be a number, got .many."):
        load_config(None, {"model": "painn", "model.num_rbf": "many"})


def test_model_options_from_a_file_flags_and_a_sweep_agent(tmp_path):
    """Model options nest under the model, as filter options do: in a file,
    as --model.OPTION flags, and in a W&B agent's nested form; defaults are
    filled in and saved."""
    from pyg_schnet.cli.config_flags import parse_overrides

    path = tmp_path / "c.yaml"
    path.write_text("model: {name: visnet, lmax: 2}\nhidden_channels: 16\n")
    cfg = load_config(str(path))
    assert cfg.model == {"name": "visnet", "num_rbf": 32, "lmax": 2, "num_heads": 8}
    assert cfg.model_hparams()["lmax"] == 2 and build(**cfg.model_hparams()).settings["lmax"] == 2
    flags = parse_overrides(["--model", "dimenet++", "--model.num_spherical", "3"])
    cfg = load_config(None, flags)
    assert cfg.model["num_spherical"] == 3 and cfg.model["num_radial"] == 6
    agent = parse_overrides(["--model={'name': 'painn', 'num_rbf': 12}"])
    assert load_config(None, agent).model == {"name": "painn", "num_rbf": 12}
    with pytest.raises(UserError, match="no registered model has the option 'colour'"):
        parse_overrides(["--model.colour", "red"])
    assert (
        load_config(None, {"model": "pyg_schnet_ref", "num_gaussians": 25}).model_hparams()[
            "num_gaussians"
        ]
        == 25
    )
    with pytest.raises(UserError, match="filter settings apply to model schnet only"):
        load_config(None, {"model": "pyg_schnet_ref", "filter.rbf_width": 0.5})


def _write(path, settings):
    with open(path, "w") as f:
        yaml.safe_dump(settings, f)
    return str(path)


def _val_maes(run):
    with open(osp.join(run, "log.csv")) as f:
        return [row["val_mae"] for row in csv.DictReader(f)]


def test_train_kill_and_resume(name, tmp_path, capsys):
    """Every model trains through the CLI, and a run killed mid-epoch resumes
    to the same validation curve as an uninterrupted one (only the killed run
    needs its own process; the rest run in this one)."""
    from pyg_schnet import cli as pyg_cli

    settings = _tiny(name, epochs=2, max_molecules=250, train_size=150)
    ref = _write(tmp_path / "ref.yaml", dict(settings, out=str(tmp_path / "ref")))
    assert pyg_cli.main(["train", "--config", ref, "--quiet"]) == 0
    label = "gaussian" if name == "schnet" else name
    assert capsys.readouterr().out.startswith(f"{label} U0: test MAE")
    killed = _write(tmp_path / "k.yaml", dict(settings, out=str(tmp_path / "k")))
    proc = cli("train", "--config", killed, "--quiet", extra_env={"PYG_SCHNET_FAULT": "batch:9"})
    assert proc.returncode == -9
    assert pyg_cli.main(["train", "--resume", str(tmp_path / "k"), "--quiet"]) == 0
    assert _val_maes(tmp_path / "k") == _val_maes(tmp_path / "ref")
    saved = yaml.safe_load(open(tmp_path / "k" / "config.yaml"))
    assert saved["model"]["name"] == name
    assert pyg_cli.main(["evaluate", str(tmp_path / "k")]) == 0
    assert "test: 50 molecules" in capsys.readouterr().out


def test_benchmark_times_registered_models_on_the_same_batches():
    from conftest import SAMPLE_ROOT, SAMPLE_SOURCE

    proc = cli(
        "benchmark",
        "--root",
        SAMPLE_ROOT,
        "--source",
        SAMPLE_SOURCE,
        "--skip-build",
        "--models",
        "painn,pyg_schnet_ref",
        *TINY_BENCHMARK,
        "--threads",
        "1",
        check=True,
    )
    tables = proc.stdout.split("\ndense layers of a training step")[0]
    rows = {
        line.split()[0]: line.split()
        for line in tables.splitlines()
        if line.startswith(("painn ", "pyg_schnet_ref "))
    }
    assert set(rows) == {"painn", "pyg_schnet_ref"}
    assert rows["painn"][-2:] == ["1.00x", "1.00x"]  # ratios to the first model named
    assert all(float(r[-3]) >= 0 for r in rows.values())  # peak MiB, from a fresh interpreter
    params = {name: int(r[1].replace(",", "")) for name, r in rows.items()}
    assert params["painn"] == sum(
        p.numel()
        for p in build("painn", hidden_channels=16, num_interactions=1, cutoff=10.0).parameters()
    )


@pytest.mark.slow
def test_models_study_quick(tmp_path):
    """The models study spec runs (quick: tiny models, U0, one seed) and its
    report lists every model with its parameters and molecules/s."""
    from conftest import REPO, SAMPLE_ARGS

    spec = osp.join(REPO, "experiments", "studies", "models.yaml")
    out = tmp_path / "models_quick"
    proc = run_here(
        "study", "run", spec, "--quick", "--jobs", "1", "--out", out, *SAMPLE_ARGS, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "5 runs (0 finished, 5 to train)" in proc.stdout
    with open(out / "cells.csv") as f:
        cells = {row["variant"]: row for row in csv.DictReader(f)}
    assert set(cells) == set(MODELS)
    for name, row in cells.items():
        assert int(row["num_params"]) > 0 and float(row["molecules_per_second"]) > 0, name
    runs = yaml.safe_load(open(out / "runs" / "U0" / "painn" / "n100_seed0" / "config.yaml"))
    assert runs["model"] == {"name": "painn", "num_rbf": 20}


def test_benchmark_fast_times_each_fast_mode_beside_its_model():
    """``benchmark --models painn,visnet --fast``: PaiNN's fast mode with
    PaiNN's weights beside it; a model without a fast mode alone."""
    from pyg_schnet.analysis.benchmark import _registered_models

    args = dict(hidden_channels=8, num_interactions=1, cutoff=5.0, num_filters=8, num_gaussians=5)
    models = _registered_models(
        argparse.Namespace(models="painn,visnet", fast=True, filter=None, **args),
        torch.device("cpu"),
    )
    assert list(models) == ["painn", "painn fast", "visnet"] and models["painn fast"].fast
    for key, value in models["painn"].state_dict().items():
        assert torch.equal(models["painn fast"].state_dict()[key], value)


@pytest.mark.parametrize("name", ["coords", "coords_basis"])
def test_benchmark_filter_chooses_schnets_filter(name):
    """``benchmark --models schnet --fast --filter coords``: the coordinate
    filter's exact and fast paths side by side (--num-gaussians only where the
    filter takes it)."""
    from pyg_schnet.analysis.benchmark import _registered_models
    from pyg_schnet.nn.fast import CompiledCoordsAggregation

    args = dict(hidden_channels=8, num_interactions=1, cutoff=5.0, num_filters=8, num_gaussians=5)
    models = _registered_models(
        argparse.Namespace(models="schnet", fast=True, filter=name, **args), torch.device("cpu")
    )
    assert list(models) == ["schnet", "schnet fast"]
    assert [m.filter_name for m in models.values()] == [name, name]
    assert isinstance(
        models["schnet fast"].blocks[0].conv.coords_aggregation, CompiledCoordsAggregation
    )
    if name == "coords_basis":
        assert models["schnet"].filter_hparams["num_gaussians"] == 5
