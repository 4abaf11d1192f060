"""The pretrained models shipped with the package."""
import csv
import io

import pytest
import pyg_schnet
from conftest import DATA_ROOT
from helpers import assert_one_line_error, cli
from pyg_schnet.hub import available


def test_shipped_models_and_their_cards():
    assert available() == ["qm9-U0", "qm9-gap"]
    for name in available():
        card = pyg_schnet.model_card(name)
        for key in ("target", "unit", "test_mae", "split", "settings", "training_seconds",
                    "num_params", "limits"):
            assert key in card, (name, key)
        model = pyg_schnet.pretrained(name)
        assert not model.training
        assert sum(p.numel() for p in model.parameters()) == card["num_params"]


def test_card_test_mae_holds_on_its_test_split(tmp_path):
    """``pyg-schnet evaluate --model`` on 2,000 random molecules of the test
    split the U0 card names (measured in full for the closing note)."""
    proc = cli("evaluate", "--model", "qm9-U0", "--root", DATA_ROOT, "--limit", "2000",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.split()
    mae = float(out[out.index("MAE") + 1])
    assert mae == pytest.approx(pyg_schnet.model_card("qm9-U0")["test_mae"], rel=0.15)
    assert "qm9-U0 test: 2000 molecules" in proc.stdout


def test_predict_with_a_shipped_model_from_anywhere(tmp_path):
    proc = cli("predict", "--model", "qm9-U0", "--smiles", "CCO", "--smiles", "c1ccccc1",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [r["name"] for r in rows] == ["CCO", "c1ccccc1"]
    # QM9's ethanol: U0 = -4217.02 eV; an MMFF conformer, a 20k-molecule model: within 1 eV
    assert float(rows[0]["U0_eV"]) == pytest.approx(-4217.02, abs=1.0)
    assert_one_line_error(cli("predict", "--model", "qm9-H", "--smiles", "C", cwd=tmp_path),
                          "unknown pretrained model 'qm9-H'; available: qm9-U0, qm9-gap")
    assert_one_line_error(cli("predict", "--smiles", "C", cwd=tmp_path),
                          "needs a run directory or --model")
