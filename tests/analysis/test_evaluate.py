"""pyg_schnet.analysis.evaluate: a run's model re-measured on its own split,
and predictions with their applicability warnings."""

import json
import os.path as osp

import pytest
import torch

from helpers import train_tiny
from pyg_schnet.analysis.evaluate import applicability, evaluate, load_run, predict, predictions_csv


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run, _ = train_tiny(tmp_path_factory.mktemp("ev"), epochs=2)
    return run


def test_evaluate_reproduces_the_runs_test_mae(run):
    m = json.load(open(run / "metrics.json"))
    res = evaluate(str(run), "test")
    assert res["count"] == m["num_test"]
    assert res["mae"] == pytest.approx(m["test_mae"], rel=1e-6)
    assert res["rmse"] == pytest.approx(m["test_rmse"], rel=1e-6)
    assert (run / "parity_test.png").is_file() and (run / "errors_test.png").is_file()


def test_model_only_weights_serve_when_best_pt_is_gone(run, tmp_path):
    import shutil

    from pyg_schnet.run.checkpoint import export_weights
    from pyg_schnet.run.rundir import RunDir

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    export_weights(RunDir(str(copy)))
    (copy / "best.pt").unlink()
    _, model, ckpt = load_run(str(copy))
    _, best, _ = load_run(str(run))
    assert "optimizer" not in ckpt
    for a, b in zip(model.state_dict().values(), best.state_dict().values(), strict=False):
        assert torch.equal(a, b)


def test_predict_rows_and_csv(run, tmp_path):
    p = tmp_path / "w.xyz"
    p.write_text("3\nwater\nO 0.0 0.0 0.1173\nH 0.0 0.7572 -0.4692\nH 0.0 -0.7572 -0.4692\n")
    target, unit, rows = predict(str(run), [str(p)], ["CCO"])
    assert (target, unit) == ("U0", "eV") and len(rows) == 2
    assert rows[0]["num_atoms"] == 3 and rows[1]["num_atoms"] == 9
    text = predictions_csv(target, unit, rows).splitlines()
    assert text[0] == "name,source,num_atoms,U0_eV,warning" and len(text) == 3


def test_applicability_names_what_lies_outside_qm9():
    z = torch.ones(30, dtype=torch.long)
    pos = torch.arange(90, dtype=torch.float32).view(30, 3)
    assert "30 atoms" in applicability(z, pos)
    assert applicability(torch.tensor([8, 1]), torch.tensor([[0.0, 0, 0], [0, 0, 0.96]])) == ""
    assert "apart" in applicability(torch.tensor([8, 1]), torch.tensor([[0.0, 0, 0], [0, 0, 0.5]]))


@pytest.mark.slow
def test_a_committed_study_run_evaluates_from_outside_the_repository(qm9, tmp_path):
    """A study's committed run keeps config, log, metrics and model-only
    weights, not its split: evaluate rebuilds the split from the split file's
    name and reproduces the run's test MAE, from any directory."""
    import shutil

    from conftest import DATA_ROOT, REPO
    from helpers import cli

    committed = osp.join(
        REPO, "experiments", "studies", "factors", "runs", "U0", "gaussian", "n20000_seed0"
    )
    run = tmp_path / "run"
    shutil.copytree(committed, run)
    assert not (run / "split.npz").exists() and (run / "model.pt").exists()
    proc = cli("evaluate", run, "--root", DATA_ROOT, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    want = json.load(open(run / "metrics.json"))
    got = float(proc.stdout.split("MAE ")[1].split()[0])
    assert "test: 10000 molecules" in proc.stdout
    assert got == pytest.approx(want["test_mae"], rel=1e-4)
