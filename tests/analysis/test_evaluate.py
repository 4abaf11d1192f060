"""pyg_schnet.analysis.evaluate: a run's model re-measured on its own split,
and predictions with their applicability warnings."""

import csv
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
    rows = list(csv.DictReader(open(res["predictions"])))
    assert len(rows) == m["num_test"] and set(rows[0]) == {
        "index",
        "num_atoms",
        "target",
        "prediction",
    }
    err = sum(abs(float(r["prediction"]) - float(r["target"])) for r in rows) / len(rows)
    assert err == pytest.approx(m["test_mae"], rel=1e-4)


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
    assert text[0] == "name,source,num_atoms,U0_eV,warning,error" and len(text) == 3


def test_predict_in_batches_equals_one_at_a_time(run, tmp_path, qm9):
    """Molecules of several sizes, more than one batch: each value equals the
    model's prediction for that molecule alone; names from the comment lines."""
    from pyg_schnet.analysis.evaluate import PREDICT_BATCH

    count = PREDICT_BATCH + 20
    p = _write_xyz(tmp_path / "many.xyz", [qm9[i] for i in range(count)])
    _, _, rows = predict(str(run), [str(p)], [])
    _, model, _ = load_run(str(run))
    assert [r["name"] for r in rows[:2]] == ["gdb_1", "gdb_2"] and len(rows) == count
    from pyg_schnet.data.molio import read_xyz

    with torch.no_grad():
        alone = torch.tensor([float(model(m.z, m.pos).view(-1)[0]) for m in read_xyz(str(p))])
    got = torch.tensor([r["value"] for r in rows])
    torch.testing.assert_close(got, alone, rtol=1e-5, atol=1e-5)


def _write_xyz(path, molecules):
    """QM9 molecules as one XYZ file (comment lines ``gdb N``); returns ``path``."""
    from pyg_schnet.data.qm9 import ELEMENTS

    symbol = {v: k for k, v in ELEMENTS.items()}
    blocks = []
    for i, d in enumerate(molecules):
        atoms = "".join(
            f"{symbol[int(z)]} {x:.6f} {y:.6f} {w:.6f}\n"
            for z, (x, y, w) in zip(d.z, d.pos.tolist(), strict=True)
        )
        blocks.append(f"{d.z.numel()}\ngdb {i + 1}\n{atoms}")
    path.write_text("".join(blocks))
    return path


def test_shipped_fast_model_predicts_the_compiled_numbers_bit_for_bit(tmp_path, qm9):
    """predict runs qm9-U0 (fast mode) with uncompiled kernels, 50 molecules
    in one batch: every value equals, bit for bit, what the model with its
    compiled kernels gives each molecule alone."""
    from pyg_schnet.data.molio import read_xyz
    from pyg_schnet.hub import pretrained

    p = _write_xyz(tmp_path / "fifty.xyz", [qm9[i] for i in range(50)])
    _, _, rows = predict(None, [str(p)], [], pretrained="qm9-U0")
    model = pretrained("qm9-U0")
    assert model.fast
    with torch.no_grad():
        alone = [float(model(m.z, m.pos).view(-1)[0]) for m in read_xyz(str(p))]
    assert [r["value"] for r in rows] == alone


@pytest.mark.parametrize(
    "inputs,smiles,warning",
    [
        ([], ["CC(=O)[O-]"], "formal charge -1"),
        ([], ["C[NH3+]"], "formal charge +1"),
        ([], ["[CH3]"], "1 unpaired electron"),
        (["bohr"], [], "coordinates in bohr?"),
        (["odd"], [], "odd number of electrons"),
        (["apart"], [], "2 disconnected fragments"),
    ],
)
def test_chemistry_outside_qm9_gets_a_warning(run, tmp_path, inputs, smiles, warning):
    files = {
        # water in bohr: O-H 1.81 bohr read as Å
        "bohr": "3\nw\nO 0 0 0.2217\nH 0 1.4309 -0.8867\nH 0 -1.4309 -0.8867\n",
        "odd": "2\noh\nO 0 0 0\nH 0 0 0.97\n",  # the OH radical, no charge stated
        "apart": WATER_PAIR,
    }
    paths = []
    for key in inputs:
        path = tmp_path / f"{key}.xyz"
        path.write_text(files[key])
        paths.append(str(path))
    _, _, (row,) = predict(str(run), paths, smiles)
    assert warning in row["warning"], row["warning"]
    assert not row["error"] and row["value"] == row["value"]  # still predicted


#: two water molecules 4 Å apart as one molecule
WATER_PAIR = (
    "6\npair\nO 0 0 0.1173\nH 0 0.7572 -0.4692\nH 0 -0.7572 -0.4692\n"
    "O 4 0 0.1173\nH 4 0.7572 -0.4692\nH 4 -0.7572 -0.4692\n"
)


def test_plain_molecules_get_no_warning(run, tmp_path):
    p = tmp_path / "w.xyz"
    p.write_text("3\nwater\nO 0.0 0.0 0.1173\nH 0.0 0.7572 -0.4692\nH 0.0 -0.7572 -0.4692\n")
    _, _, rows = predict(str(run), [str(p)], ["CCO", "CC(=O)O"])
    assert [r["warning"] for r in rows] == ["", "", ""]


def test_applicability_names_what_lies_outside_qm9():
    z = torch.ones(30, dtype=torch.long)
    pos = torch.arange(90, dtype=torch.float32).view(30, 3)
    assert "30 atoms" in applicability(z, pos)
    water = torch.tensor([[0.0, 0, 0.1173], [0, 0.7572, -0.4692], [0, -0.7572, -0.4692]])
    assert applicability(torch.tensor([8, 1, 1]), water) == ""
    squeezed = water * torch.tensor([1.0, 0.5, 1.0])
    assert "apart" in applicability(torch.tensor([8, 1, 1]), squeezed)
    assert "odd number of electrons" in applicability(torch.tensor([8, 1]), water[:2])
    assert applicability(torch.tensor([8, 1]), water[:2], charge=-1, radicals=0).startswith(
        "formal charge -1"
    )


@pytest.mark.parametrize("pairs", [1, 1 << 22])
def test_applicabilities_of_a_batch_are_each_molecules_own(monkeypatch, pairs):
    """Molecules of several sizes checked together (by size, in parts of at
    most ``pairs`` atom pairs) get the warnings each gets alone."""
    from pyg_schnet.analysis import evaluate as ev
    from pyg_schnet.data.molio import Molecule

    water = torch.tensor([[0.0, 0, 0.1173], [0, 0.7572, -0.4692], [0, -0.7572, -0.4692]])
    ch4 = torch.tensor([[0.0, 0, 0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63]])
    mols = [
        Molecule("w", torch.tensor([8, 1, 1]), water, "xyz"),
        Molecule("bohr", torch.tensor([8, 1, 1]), water * 1.89, "xyz"),
        Molecule("oh", torch.tensor([8, 1]), water[:2], "xyz"),
        Molecule("ion", torch.tensor([8, 1]), water[:2], "sdf", "", -1, 0),
        Molecule("pair", torch.tensor([8, 1, 1] * 2), torch.cat([water, water + 4]), "xyz"),
        Molecule("ch", torch.tensor([6, 1, 1]), ch4, "xyz"),
        Molecule("squeezed", torch.tensor([8, 1, 1]), water * 0.5, "xyz"),
    ]
    alone = [ev.applicability(m.z, m.pos, m.charge, m.radicals) for m in mols]
    monkeypatch.setattr(ev, "GEOMETRY_PAIRS", pairs)
    assert ev.applicabilities(mols) == alone
    assert alone[0] == "" and all(alone[1:4]) and "2 disconnected" in alone[4]
    assert "apart" in alone[6] and "apart" not in alone[1]


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
