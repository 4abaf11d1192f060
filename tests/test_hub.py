"""The pretrained models shipped with the package."""

import csv
import io
import json
import os
import os.path as osp
import shutil

import numpy as np
import pytest
import pyg_schnet
from conftest import DATA_ROOT, REPO, SAMPLE_ARGS
from helpers import assert_one_line_error, run_here
from pyg_schnet.hub import available
from pyg_schnet.version import code_version


def test_shipped_models_and_their_cards():
    assert available() == ["qm9-U0", "qm9-gap"]
    for name in available():
        card = pyg_schnet.model_card(name)
        for key in (
            "target",
            "unit",
            "test_mae",
            "split",
            "settings",
            "training_seconds",
            "num_params",
            "limits",
        ):
            assert key in card, (name, key)
        model = pyg_schnet.pretrained(name)
        assert not model.training
        assert sum(p.numel() for p in model.parameters()) == card["num_params"]


def test_card_test_mae_holds_on_its_test_split(tmp_path):
    """``pyg-schnet evaluate --model`` on 2,000 random molecules of the test
    split the U0 card names (measured in full for the closing note)."""
    proc = run_here(
        "evaluate", "--model", "qm9-U0", "--root", DATA_ROOT, "--limit", "2000", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.split()
    mae = float(out[out.index("MAE") + 1])
    assert mae == pytest.approx(pyg_schnet.model_card("qm9-U0")["test_mae"], rel=0.15)
    assert "qm9-U0 test: 2000 molecules" in proc.stdout
    # its plots and per-molecule CSV, in ./evaluate-qm9-U0 (were not written with --model)
    folder = tmp_path / "evaluate-qm9-U0"
    assert (folder / "parity_test.png").is_file() and (folder / "errors_test.png").is_file()
    rows = list(csv.DictReader(open(folder / "predictions_test.csv")))
    assert len(rows) == 2000
    errors = [abs(float(r["prediction"]) - float(r["target"])) for r in rows]
    assert sum(errors) / len(errors) == pytest.approx(mae, rel=1e-3)


def test_predict_with_a_shipped_model_from_anywhere(tmp_path):
    proc = run_here(
        "predict", "--model", "qm9-U0", "--smiles", "CCO", "--smiles", "c1ccccc1", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [r["name"] for r in rows] == ["CCO", "c1ccccc1"]
    # QM9's ethanol: U0 = -4217.02 eV; an MMFF conformer, a 20k-molecule model: within 1 eV
    assert float(rows[0]["U0_eV"]) == pytest.approx(-4217.02, abs=1.0)
    assert_one_line_error(
        run_here("predict", "--model", "qm9-H", "--smiles", "C", cwd=tmp_path),
        "unknown pretrained model 'qm9-H'; available: qm9-U0, qm9-gap",
    )
    assert_one_line_error(
        run_here("predict", "--smiles", "C", cwd=tmp_path), "needs a run directory or --model"
    )


PRETRAINED_SPEC = osp.join(REPO, "experiments", "studies", "pretrained.yaml")


@pytest.fixture(scope="module")
def quick_pretrained(tmp_path_factory):
    """The pretrained models' spec in quick mode, run from outside the repository."""
    where = tmp_path_factory.mktemp("pretrained")
    proc = run_here(
        "study",
        "run",
        PRETRAINED_SPEC,
        "--quick",
        "--out",
        where / "study",
        *SAMPLE_ARGS,
        cwd=where,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return where, where / "study" / "runs" / "U0" / "gaussian_128" / "n200_seed0"


@pytest.mark.slow
def test_export_writes_a_model_that_evaluate_reproduces(quick_pretrained):
    """``export`` ships a finished run: its own weights, a card from its files,
    and ``evaluate --model`` on the split the card names gives the card's MAE."""
    where, run = quick_pretrained
    proc = run_here("export", run, "--name", "qm9-U0", "--to", where / "models", cwd=where)
    assert proc.returncode == 0, proc.stderr
    folder = where / "models" / "qm9-U0"
    with open(folder / "model.pt", "rb") as a, open(run / "model.pt", "rb") as b:
        assert a.read() == b.read()
    card = json.loads((folder / "card.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert card["test_mae"] == metrics["test_mae"] and card["target"] == "U0"
    sizes = card["test_mae_by_heavy_atoms"]  # the test set by heavy atoms, 1 to 9
    assert list(sizes) == [str(n) for n in range(1, 10)]
    assert sum(b["count"] for b in sizes.values()) == metrics["num_test"]
    assert card["split_spec"] == {
        "kind": "nested",
        "num_molecules": card["split_spec"]["num_molecules"],
        "max_molecules": None,
        "train": 200,
        "val": 50,
        "test": 100,
        "seed": 0,
    }
    assert card["settings"]["hidden_channels"] == 16 and "root" not in card["settings"]
    assert card["test_mae_rotated"] is not None
    # the run's schedule and the code that trained it
    assert card["schedule"] == metrics["schedule"] and card["schedule"].startswith("plateau")
    assert card["code"] == metrics["code"] == code_version()
    model = pyg_schnet.pretrained(str(folder))
    assert sum(p.numel() for p in model.parameters()) == card["num_params"]

    proc = run_here("evaluate", "--model", folder, *SAMPLE_ARGS[:2], cwd=where)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.split()
    assert float(out[out.index("MAE") + 1]) == pytest.approx(card["test_mae"], rel=1e-4)
    assert "test: 100 molecules" in proc.stdout

    assert_one_line_error(
        run_here("export", run, "--name", "qm9-U0", "--to", where / "models"),
        "exists (--overwrite replaces it)",
    )
    from pyg_schnet.errors import UserError
    from pyg_schnet.hub import export_model

    assert export_model(str(run), "qm9-U0", str(where / "models"), overwrite=True) == str(folder)
    with pytest.raises(UserError, match="must be a plain folder name"):
        export_model(str(run), "a/b", str(where / "models"))
    # --if-better replaces a model only with a lower test MAE on the same test molecules
    models = str(where / "models")
    with pytest.raises(UserError, match=r"qm9-U0 kept: its test MAE .* on the same 100 test"):
        export_model(str(run), "qm9-U0", models, if_better=True)  # equal is not better
    worse = dict(card, test_mae=card["test_mae"] + 0.1)
    (folder / "card.json").write_text(json.dumps(worse))
    assert export_model(str(run), "qm9-U0", models, if_better=True) == str(folder)
    assert json.loads((folder / "card.json").read_text())["test_mae"] == card["test_mae"]
    other = dict(worse, split_spec=dict(card["split_spec"], seed=1))
    (folder / "card.json").write_text(json.dumps(other))
    with pytest.raises(UserError, match="tested on different molecules"):
        export_model(str(run), "qm9-U0", models, if_better=True)
    assert json.loads((folder / "card.json").read_text()) == other  # nothing written


def test_export_names_any_split_so_evaluate_rebuilds_it(quick_pretrained, tmp_path):
    """A card names the run's split: the seeded nested or random split that equals
    it index by index, else the split file itself, shipped beside the weights;
    evaluate rebuilds it. An unfinished run is refused (in process: the command
    line is tested above)."""
    from conftest import SAMPLE_ROOT
    from pyg_schnet.data import random_split
    from pyg_schnet.errors import UserError
    from pyg_schnet.hub import evaluate_pretrained, export_model

    _, run = quick_pretrained
    other, models = tmp_path / "other", str(tmp_path / "models")
    shutil.copytree(run, other)
    with np.load(other / "split.npz") as f:
        arrays = {k: f[k] for k in f.files}
    n = int(arrays["num_molecules"])
    # one molecule swapped between train and val: no seeded split, the test set unchanged
    train, val = arrays["train_idx"].copy(), arrays["val_idx"].copy()
    train[0], val[0] = val[0], train[0]
    np.savez(other / "split.npz", **dict(arrays, train_idx=np.sort(train), val_idx=np.sort(val)))
    folder = export_model(str(other), "m", models)
    card = json.loads(open(osp.join(folder, "card.json")).read())
    assert card["split_spec"]["kind"] == "file" and osp.isfile(osp.join(folder, "split.npz"))
    res = evaluate_pretrained(folder, SAMPLE_ROOT)
    assert res["count"] == 100 and res["mae"] == pytest.approx(card["test_mae"], rel=1e-4)

    # a seeded random split (what ``train`` makes): named, not shipped
    random_split(n, 200, 50, 100, seed=0).save(str(other / "split.npz"), n)
    folder = export_model(str(other), "m", models, overwrite=True)
    card = json.loads(open(osp.join(folder, "card.json")).read())
    assert card["split_spec"] == {
        "kind": "random",
        "num_molecules": n,
        "max_molecules": None,
        "train": 200,
        "val": 50,
        "test": 100,
        "seed": 0,
    }
    assert "pyg_schnet.data.random_split(" in card["split"]
    assert not osp.exists(osp.join(folder, "split.npz"))
    assert evaluate_pretrained(folder, SAMPLE_ROOT)["count"] == 100

    os.remove(other / "metrics.json")
    with pytest.raises(UserError, match="is not a finished run"):
        export_model(str(other), "x", models)
    assert not osp.exists(osp.join(models, "x"))


def _qm9_xyz(path, molecules):
    """QM9 molecules (at their DFT geometries) as one XYZ file."""
    from pyg_schnet.data.molio import SYMBOL

    blocks = []
    for d in molecules:
        atoms = "".join(
            f"{SYMBOL[int(z)]} {x:.6f} {y:.6f} {w:.6f}\n"
            for z, (x, y, w) in zip(d.z, d.pos.tolist(), strict=True)
        )
        blocks.append(f"{d.z.numel()}\n{d.smiles}\n{atoms}")
    path.write_text("".join(blocks))
    return str(path)


def test_molecules_of_sizes_the_card_measured_poorly_get_a_size_warning(qm9, tmp_path):
    """qm9-U0's card: methane, water (1 heavy atom) and ethanol (3) at their QM9
    geometries get the size warning (their test set held too few such
    molecules); a 9-heavy-atom molecule gets none."""
    card = pyg_schnet.model_card("qm9-U0")
    assert {k: v["count"] for k, v in card["test_mae_by_heavy_atoms"].items()}["1"] < 10
    smiles = ["C", "O", "CCO"]
    found = {d.smiles: d for d in (qm9[i] for i in range(40)) if d.smiles in smiles}
    big = qm9[len(qm9) - 1]  # QM9 ends with 9-heavy-atom molecules
    assert int((big.z > 1).sum()) == 9
    path = _qm9_xyz(tmp_path / "m.xyz", [found[s] for s in smiles] + [big])
    _, _, rows = pyg_schnet.predict(None, [path], [], pretrained="qm9-U0")
    for row in rows[:3]:
        assert "too few to state its error" in row["warning"], row
    assert rows[3]["warning"] == ""


def test_a_card_without_size_errors_still_loads_without_a_size_warning(qm9, tmp_path):
    from pyg_schnet.hub import SIZE_ERRORS, WEIGHTS_DIR

    folder = tmp_path / "old-U0"
    shutil.copytree(osp.join(WEIGHTS_DIR, "qm9-U0"), folder)
    card = json.loads((folder / "card.json").read_text())
    del card[SIZE_ERRORS]
    (folder / "card.json").write_text(json.dumps(card))
    path = _qm9_xyz(tmp_path / "m.xyz", [qm9[0]])  # methane
    _, _, (row,) = pyg_schnet.predict(None, [path], [], pretrained=str(folder))
    assert row["warning"] == "" and row["value"] == row["value"]


def test_the_smiles_geometry_note_comes_with_smiles_only(tmp_path, qm9):
    path = _qm9_xyz(tmp_path / "m.xyz", [qm9[0]])
    from_file = run_here("predict", "--model", "qm9-U0", path, cwd=tmp_path)
    from_smiles = run_here("predict", "--model", "qm9-U0", "--smiles", "C", cwd=tmp_path)
    assert from_file.returncode == 0 == from_smiles.returncode, from_file.stderr
    assert "ETKDG" not in from_file.stderr and "ETKDG" in from_smiles.stderr
