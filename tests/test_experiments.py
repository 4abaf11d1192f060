"""The exploration notebook: it runs top to bottom, training tiny models in
place, and on a study's runs that keep only their model-only weights (what a
fresh clone has)."""

import glob
import os
import os.path as osp
import time

import pyg_schnet
import pytest
import yaml

from conftest import DATA_ROOT, REPO, SAMPLE_ARGS, SAMPLE_ROOT, SAMPLE_SOURCE
from helpers import run_here

FILTERS = ("gaussian", "coords", "conv1d")
NOTEBOOK = osp.join(REPO, "experiments", "notebooks", "explore_filters.ipynb")


@pytest.fixture(scope="module")
def study_runs(tmp_path_factory):
    """A tiny study whose seed-0 runs keep model.pt; checkpoints removed."""
    d = tmp_path_factory.mktemp("study")
    spec = dict(
        name="tiny",
        base=dict(
            hidden_channels=16,
            num_filters=16,
            num_interactions=2,
            cutoff=4.0,
            num_gaussians=12,
            num_bins=12,
            batch_size=25,
            epochs=3,
            patience=3,
            lr=2e-3,
            fast=False,  # no compile step in each training process
        ),
        variants={f: {"filter": f} for f in FILTERS},
        targets=["gap"],
        seeds=[0],
        train_sizes=[200],
        val_size=50,
        test_size=100,
        keep_weights=[0],
    )
    with open(d / "s.yaml", "w") as f:
        yaml.safe_dump(spec, f)
    proc = run_here("study", "run", d / "s.yaml", "--out", d / "out", *SAMPLE_ARGS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for ckpt in glob.glob(str(d / "out" / "runs" / "*" / "*" / "*" / "*.pt")):
        if not ckpt.endswith("model.pt"):
            os.remove(ckpt)
    return d / "out"


# -- the notebook ----------------------------------------------------------------------


def test_notebook_is_stored_executed_on_the_study_models():
    """Committed with its outputs (GitHub renders them): every code cell ran, in
    order, without errors, on the factor study's seed-0 models."""
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 8
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "trained tiny" not in text
    card = pyg_schnet.model_card("qm9-U0")  # the shipped model's section shows today's card
    assert f"qm9-U0: {card['model']}; {card['num_params']:,} parameters" in text
    assert f"test MAE {card['test_mae'] * 1000:.4g} meV" in text
    for variant in ("gaussian", "distance", "gaussian_q0.1", "conv1d", "coords", "coords_rot"):
        assert osp.join("factors", "runs", "U0", variant, "n20000_seed0") in text, variant


def _execute(monkeypatch, env):
    import nbformat
    from nbclient import NotebookClient

    for key in (
        "PYG_SCHNET_RUN_DIR",
        "PYG_SCHNET_TARGET",
        "PYG_SCHNET_SEED",
        "PYG_SCHNET_DATA_ROOT",
        "PYG_SCHNET_DATA_SOURCE",
        "PYG_SCHNET_TINY_EPOCHS",
    ):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    t0 = time.perf_counter()
    # raises CellExecutionError (with the cell and traceback) if any cell fails
    NotebookClient(
        nb,
        timeout=240,
        kernel_name="python3",
        resources={"metadata": {"path": osp.dirname(NOTEBOOK)}},
    ).execute()
    seconds = time.perf_counter() - t0
    images = sum(
        "image/png" in out.get("data", {})
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
    )
    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.output_type == "error"
    ]
    text = "".join(
        out.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.output_type == "stream"
    )
    return seconds, images, errors, text


@pytest.mark.slow
def test_notebook_trains_tiny_models_in_place(monkeypatch, tmp_path):
    # the tiny runs go to a temporary folder (tempfile's): pytest's, not the machine's /tmp
    seconds, images, errors, text = _execute(
        monkeypatch,
        {
            "PYG_SCHNET_DATA_ROOT": DATA_ROOT,
            "PYG_SCHNET_RUN_DIR": "tiny",
            "PYG_SCHNET_TINY_EPOCHS": 1,
            "TMPDIR": tmp_path,
        },
    )
    assert not errors
    assert images >= 7, images
    assert "qm9-U0: SchNet" in text  # the shipped model's filters beside the tiny ones
    # 1 epoch per filter: the notebook runs end to end; the bound leaves room for a busy machine
    assert seconds < 240, f"notebook took {seconds:.0f} s"
    for f in FILTERS:
        assert f"trained tiny {f}" in text
    assert [p.name.startswith("explore_filters_") for p in tmp_path.iterdir()] == [True]
    assert "coords    block 1 anisotropy" in text


def test_notebook_loads_a_studys_model_only_weights(monkeypatch, study_runs):
    seconds, images, errors, text = _execute(
        monkeypatch,
        {
            "PYG_SCHNET_RUN_DIR": study_runs,
            "PYG_SCHNET_TARGET": "gap",
            "PYG_SCHNET_DATA_ROOT": SAMPLE_ROOT,
            "PYG_SCHNET_DATA_SOURCE": SAMPLE_SOURCE,
        },
    )
    assert not errors
    assert images >= 7, images
    assert "trained tiny" not in text
    assert "qm9-gap: SchNet" in text
    for f in FILTERS:
        assert osp.join("runs", "gap", f, "n200_seed0") in text
