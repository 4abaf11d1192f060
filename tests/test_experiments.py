"""The filter comparison (``pyg-schnet compare --quick``) and the exploration
notebook: outputs exist and agree with the runs, re-runs skip finished runs,
an interrupted run resumes, bad names fail with one line, the notebook runs
top to bottom (tiny models in place, and on the comparison's runs)."""
import csv
import json
import math
import os
import os.path as osp
import time

import pytest

from conftest import DATA_ROOT, REPO
from helpers import assert_one_line_error, cli

FILTERS = ("gaussian", "coords", "conv1d")
TARGETS = ("U0", "gap")
NOTEBOOK = osp.join(REPO, "experiments", "notebooks", "explore_filters.ipynb")
RUN_FILES = ("config.yaml", "split.npz", "log.csv", "best.pt", "last.pt", "metrics.json",
             "symmetry.json")


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _json(path):
    with open(path) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "quick"
    t0 = time.perf_counter()
    proc = cli("compare", "--quick", "--out", out, "--root", DATA_ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, proc, time.perf_counter() - t0


def test_quick_writes_consistent_tables(quick):
    out, proc, seconds = quick
    # about 30 s on an idle 2-core machine; the bound leaves room for a busy one
    assert seconds < 240, f"--quick took {seconds:.0f} s"
    for name in ("results.csv", "results.md", "runs.csv", "learning_curves_U0.png",
                 "learning_curves_gap.png"):
        assert osp.isfile(osp.join(out, name)), name
    for t in TARGETS:
        with open(osp.join(out, f"learning_curves_{t}.png"), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"

    results = _csv(osp.join(out, "results.csv"))
    assert [(r["target"], r["filter"]) for r in results] == \
        [(t, f) for t in TARGETS for f in FILTERS]
    runs = _csv(osp.join(out, "runs.csv"))
    assert len(runs) == len(FILTERS) * len(TARGETS) * 2
    md = open(osp.join(out, "results.md")).read()
    for r in results:
        dirs = r["run_dirs"].split(";")
        assert len(dirs) == 2 and r["seeds"] == "0 1"
        metrics = []
        for d in dirs:
            run = osp.join(out, d)
            for name in RUN_FILES:
                assert osp.isfile(osp.join(run, name)), (run, name)
            m = _json(osp.join(run, "metrics.json"))
            assert m["filter"] == r["filter"] and m["target"] == r["target"]
            assert m["epochs"] == 4  # matched budget: no early stop, no time limit
            metrics.append(m)
            log = _csv(osp.join(run, "log.csv"))
            assert len(log) == 4
        # the table is the mean (and sample std) of the runs' own metrics.json, in meV
        assert r["unit"] == "meV"
        maes = [m["test_mae_meV"] for m in metrics]
        mean = sum(maes) / 2
        std = math.sqrt(sum((x - mean) ** 2 for x in maes))
        assert float(r["test_mae_mean"]) == pytest.approx(mean, rel=1e-9)
        assert float(r["test_mae_std"]) == pytest.approx(std, rel=1e-9)
        assert int(r["num_params"]) == metrics[0]["num_params"] == metrics[1]["num_params"]
        assert float(r["train_seconds_mean"]) == pytest.approx(
            sum(m["train_seconds"] for m in metrics) / 2, rel=1e-9)
        cell = f"| {r['target']} | {r['filter']} | "
        line = next(x for x in md.splitlines() if x.startswith(cell))
        assert f"{int(r['num_params']):,}" in line
        for d in dirs:
            assert f"]({d}/log.csv)" in md
    # rotation: the radial filters are invariant, the coordinate filter is not
    by = {(r["target"], r["filter"]): r for r in results}
    for t in TARGETS:
        for f in ("gaussian", "conv1d"):
            assert float(by[(t, f)]["rot_rel_mean"]) < 1e-3, (t, f)
        assert float(by[(t, "coords")]["rot_change_mean"]) > 1.0  # meV
    assert "12 runs (0 finished, 12 to train)" in proc.stdout


def test_rerun_skips_finished_runs(quick):
    out, _, _ = quick
    runs = _csv(osp.join(out, "runs.csv"))
    watched = [osp.join(out, r["run_dir"], f) for r in runs
               for f in ("metrics.json", "best.pt", "log.csv")]
    before = {p: os.stat(p).st_mtime_ns for p in watched}
    table = open(osp.join(out, "results.csv")).read()
    proc = cli("compare", "--quick", "--out", out, "--root", DATA_ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "(12 finished, 0 to train)" in proc.stdout
    assert proc.stdout.count("finished before, skipped") == 12
    assert "training" not in proc.stdout
    assert {p: os.stat(p).st_mtime_ns for p in watched} == before
    assert open(osp.join(out, "results.csv")).read() == table


def test_other_settings_in_the_same_folder_are_refused(quick):
    out, _, _ = quick
    proc = cli("compare", "--quick", "--epochs", "2", "--out", out, "--root", DATA_ROOT)
    assert_one_line_error(proc, "other settings (epochs, patience)")


def test_interrupted_run_resumes_from_last_checkpoint(tmp_path):
    out = tmp_path / "cmp"
    args = ("compare", "--quick", "--filters", "gaussian", "--targets", "gap", "--seeds", "1",
            "--out", out, "--root", DATA_ROOT)
    # 10 batches per epoch: killed (SIGKILL) in the middle of epoch 2
    killed = cli(*args, extra_env={"PYG_SCHNET_FAULT": "batch:15"})
    assert killed.returncode != 0
    run = out / "runs" / "gap" / "gaussian_seed0"
    assert osp.isfile(run / "last.pt") and not osp.exists(run / "metrics.json")
    assert len(_csv(run / "log.csv")) == 1
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert "resuming from last.pt" in proc.stdout
    assert [int(r["epoch"]) for r in _csv(run / "log.csv")] == [1, 2, 3, 4]
    assert _json(run / "metrics.json")["epochs"] == 4
    assert len(_csv(out / "results.csv")) == 1


@pytest.mark.parametrize("args, match", [
    (("--filters", "gaussian,radial"), "unknown filter 'radial'; choose from: gaussian, coords, "
                                       "conv1d"),
    (("--targets", "U0,energy"), "unknown target 'energy'; choose from: mu, alpha"),
    (("--seeds", "two"), "--seeds takes a count"),
    (("--epochs", "0"), "--epochs must be at least 1"),
])
def test_bad_input_raises_user_error(tmp_path, args, match):
    import sys
    sys.path.insert(0, REPO)
    from experiments.compare import main
    from pyg_schnet.errors import UserError
    with pytest.raises(UserError, match=match.replace("(", r"\(")):
        main(["--quick", "--out", str(tmp_path / "x"), "--root", DATA_ROOT, *args])
    assert not osp.exists(tmp_path / "x")


def test_bad_name_on_the_command_line_is_one_error_line(tmp_path):
    proc = cli("compare", "--quick", "--out", tmp_path / "x", "--root", DATA_ROOT,
               "--filters", "gaussian,radial")
    assert_one_line_error(proc, "unknown filter 'radial'; choose from: gaussian, coords, conv1d")
    assert not osp.exists(tmp_path / "x")


# -- the notebook ----------------------------------------------------------------------

def test_notebook_is_stored_without_outputs():
    import nbformat
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def _execute(monkeypatch, env):
    import nbformat
    from nbclient import NotebookClient
    for key in ("PYG_SCHNET_RUN_DIR", "PYG_SCHNET_TARGET", "PYG_SCHNET_SEED",
                "PYG_SCHNET_DATA_ROOT", "PYG_SCHNET_TINY_EPOCHS"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    t0 = time.perf_counter()
    # raises CellExecutionError (with the cell and traceback) if any cell fails
    NotebookClient(nb, timeout=240, kernel_name="python3",
                   resources={"metadata": {"path": osp.dirname(NOTEBOOK)}}).execute()
    seconds = time.perf_counter() - t0
    images = sum("image/png" in out.get("data", {}) for cell in nb.cells
                 if cell.cell_type == "code" for out in cell.outputs)
    errors = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
              if out.output_type == "error"]
    text = "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                   for out in cell.outputs if out.output_type == "stream")
    return seconds, images, errors, text


def test_notebook_trains_tiny_models_in_place(monkeypatch):
    seconds, images, errors, text = _execute(monkeypatch, {"PYG_SCHNET_DATA_ROOT": DATA_ROOT})
    assert not errors
    assert images >= 6, images
    # about 30 s on an idle 2-core machine; the bound leaves room for a busy one
    assert seconds < 240, f"notebook took {seconds:.0f} s"
    for f in FILTERS:
        assert f"trained tiny {f}" in text
    assert "coords    block 1 anisotropy" in text


def test_notebook_loads_the_comparison_runs(monkeypatch, quick):
    out, _, _ = quick
    seconds, images, errors, text = _execute(monkeypatch, {
        "PYG_SCHNET_RUN_DIR": out, "PYG_SCHNET_TARGET": "gap", "PYG_SCHNET_DATA_ROOT": DATA_ROOT})
    assert not errors
    assert images >= 6, images
    assert "trained tiny" not in text
    for f in FILTERS:
        assert osp.join("runs", "gap", f"{f}_seed0") in text
