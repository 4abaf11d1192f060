"""The ASE calculator (pyg_schnet.calculators): the energy ``predict`` gives,
no forces, the predict path's molecule checks, energy models only."""

import importlib
import re
import sys
import warnings

import pytest

pytest.importorskip("ase")  # the test extra installs it; a bare install may not
from ase import Atoms  # noqa: E402
from ase.calculators.calculator import PropertyNotImplementedError  # noqa: E402

import pyg_schnet  # noqa: E402
from pyg_schnet.analysis.evaluate import predict  # noqa: E402
from pyg_schnet.calculators import SchNetCalculator  # noqa: E402
from pyg_schnet.errors import UserError  # noqa: E402

ETHANOL = 13  # QM9's gdb_14, CCO


@pytest.fixture(scope="module")
def calc():
    return SchNetCalculator("qm9-U0")


def test_energy_equals_predict_and_there_are_no_forces(calc, qm9, tmp_path):
    mol = qm9[ETHANOL]
    assert mol.smiles == "CCO"
    symbols = {1: "H", 6: "C", 8: "O"}
    xyz = tmp_path / "ethanol.xyz"
    lines = [
        f"{symbols[int(z)]} " + " ".join(repr(float(v)) for v in p)
        for z, p in zip(mol.z, mol.pos, strict=True)
    ]
    xyz.write_text(f"{len(lines)}\nethanol\n" + "\n".join(lines) + "\n")
    target, unit, rows = predict(None, [str(xyz)], [], pretrained="qm9-U0")
    assert (target, unit) == ("U0", "eV")
    assert rows[0]["warning"].startswith("3 heavy atom(s)")  # only the card's size warning
    atoms = Atoms(numbers=mol.z.numpy(), positions=mol.pos.double().numpy(), calculator=calc)
    assert atoms.get_potential_energy() == rows[0]["value"]
    assert atoms.get_potential_energy() == pytest.approx(float(mol.y[0, 7]), abs=0.1)
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_forces()
    # a loaded model serves as well as its name
    atoms.calc = SchNetCalculator(pyg_schnet.pretrained("qm9-U0"))
    assert atoms.get_potential_energy() == rows[0]["value"]


@pytest.mark.parametrize(
    "atoms, match",
    [
        (Atoms("CCl4", positions=[[0, 0, 0], [1, 1, 1], [-1, -1, 1], [-1, 1, -1], [1, -1, -1]]),
         "atomic number [17] are not in QM9 (only H, C, N, O, F)"),
        (Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.1]]), "atoms 1 and 2 are 0.100 Å apart"),
        (Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]], cell=[5, 5, 5], pbc=True),
         "periodic boundary conditions are not supported"),
    ],
)  # fmt: skip
def test_molecules_predict_cannot_take_are_refused(calc, atoms, match):
    atoms.calc = calc
    with pytest.raises(UserError, match=re.escape(match)):
        atoms.get_potential_energy()


def test_a_molecule_outside_qm9_is_warned_about_once(calc, qm9):
    """Ethanol with an H atom pulled 0.5 Å away (the same atom and pair counts
    as the test above: no recompilation of the fast model)."""
    mol = qm9[ETHANOL]
    pos = mol.pos.double().numpy().copy()
    h = int((mol.z == 1).nonzero()[0])
    pos[h] += 0.5 * (pos[h] - pos[:h].mean(0)) / ((pos[h] - pos[:h].mean(0)) ** 2).sum() ** 0.5
    atoms = Atoms(numbers=mol.z.numpy(), positions=pos)
    atoms.calc = SchNetCalculator(calc.model)  # its own record of warnings
    with pytest.warns(
        UserWarning, match="C2H6O: outside QM9: an H atom 1.[0-9]+ Å from its nearest"
    ):
        atoms.get_potential_energy()
    atoms.positions[h] += 0.01
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        atoms.get_potential_energy()


def test_models_of_other_targets_are_refused():
    with pytest.raises(UserError, match="model 'qm9-gap' was trained on gap; .* U0 or U0_atom"):
        SchNetCalculator("qm9-gap")
    fresh = pyg_schnet.build_model("gaussian", cutoff=5.0)
    with pytest.raises(UserError, match="records no target"):
        SchNetCalculator(fresh)


def test_without_ase_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ase", None)
    monkeypatch.delitem(sys.modules, "pyg_schnet.calculators")
    with pytest.raises(UserError, match=r"pip install 'pyg_schnet\[ase\]'"):
        importlib.import_module("pyg_schnet.calculators")
