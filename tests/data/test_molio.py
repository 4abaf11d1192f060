"""pyg_schnet.data.molio: molecules from XYZ, SDF and SMILES, and the checks
that refuse what a QM9 model cannot predict."""

import pytest
import torch

from pyg_schnet.data.molio import Molecule, check_molecule, from_smiles, read_inputs, read_xyz
from pyg_schnet.errors import UserError

WATER = "3\nwater\nO 0.0 0.0 0.1173\nH 0.0 0.7572 -0.4692\nH 0.0 -0.7572 -0.4692\n"
METHANE = (  # a methane, two coordinates with exponents written as in QM9's raw files
    "5\nmethane\nC -1.26981359*^-2 1.0858041578 8.0009958*^-3\nH 0.002150416 -0.0060313176 "
    "0.0019761204\nH 1.0117308433 1.4637511618 0.0002765748\nH -0.540815069 1.4475266138 "
    "-0.8766437152\nH -0.6289 -0.6289 0.6289\n"
)


def test_xyz_blocks_are_read_with_their_elements_and_coordinates(tmp_path):
    one = tmp_path / "water.xyz"
    one.write_text(WATER)
    (mol,) = read_xyz(str(one))
    assert mol.name == "water" and mol.source == "xyz"  # named by its comment line
    assert mol.z.tolist() == [8, 1, 1]
    assert torch.allclose(mol.pos[1], torch.tensor([0.0, 0.7572, -0.4692]))
    two = tmp_path / "two.xyz"
    two.write_text(WATER.replace("water", "") + WATER.replace("0.1173", "1.5e-1"))
    mols = read_xyz(str(two))
    assert [m.name for m in mols] == ["two.xyz#1", "water"]
    assert float(mols[1].pos[0, 2]) == pytest.approx(0.15)


@pytest.mark.parametrize(
    "text,message",
    [("2\nx\nO 0 0 0\n", "expected 2 atom lines"), ("two\nx\n", "should hold an atom count")],
)
def test_an_unreadable_xyz_file_is_one_clear_error(tmp_path, text, message):
    p = tmp_path / "bad.xyz"
    p.write_text(text)
    with pytest.raises(UserError, match=message):
        read_xyz(str(p))


@pytest.mark.parametrize(
    "block,message",
    [
        ("1\nx\nO 0 0 zero\n", "non-numeric coordinate"),
        ("2\nx\nO 0 0 0\nXx 0 0 1\n", "unknown element"),
        ("2\nx\nO 0 0 0\nCl 0 0 1.7\n", "not in QM9"),
        ("2\nx\nO 0 0 0\nH 0 0 0.1\n", "on top of each other"),
        ("1\nx\nO 0 0 0\n", "single atom"),
    ],
)
def test_a_bad_molecule_keeps_its_error_and_the_others(tmp_path, block, message):
    """Between two good molecules, a bad one is returned with its error: the
    others are still read."""
    p = tmp_path / "three.xyz"
    p.write_text(WATER + block + METHANE)
    mols = read_xyz(str(p))
    assert [bool(m.error) for m in mols] == [False, True, False]
    assert message in mols[1].error and mols[1].name == "x" and mols[1].z.numel() == 0
    assert mols[0].z.tolist() == [8, 1, 1] and mols[2].z.tolist() == [6, 1, 1, 1, 1]
    assert mols[2].pos.tolist()[4] == pytest.approx([-0.6289, -0.6289, 0.6289])


def test_xyz_names_come_from_the_comment_line(tmp_path):
    p = tmp_path / "qm9.xyz"
    p.write_text(
        WATER.replace("water", "gdb 17\t157.7 1.2")
        + WATER.replace("water", 'Properties=species:S:1:pos:R:3 name="ethanol-1" energy=-1')
        + WATER.replace("water", "Properties=species:S:1:pos:R:3")
    )
    assert [m.name for m in read_xyz(str(p))] == ["gdb_17", "ethanol-1", "qm9.xyz#3"]


def test_a_file_is_checked_in_batches_with_each_molecules_own_message():
    """``molecule_errors`` checks molecules of one size together: each keeps
    the message of its first failing check, with the atoms of its own closest
    pair (the first such pair, row by row, as a single check finds it)."""
    from pyg_schnet.data.molio import molecule_errors

    def mol(name, z, pos):
        return Molecule(name, torch.tensor(z), torch.tensor(pos, dtype=torch.float32), "xyz")

    far = [[0.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]]
    mols = [
        mol("ok", [8, 1, 1], far),
        mol("close", [6, 1, 1], [[0.0, 0, 0], [0, 0, 1.0], [0, 0, 1.1]]),
        mol("chlorine", [17, 1, 1], [[0.0, 0, 0], [0, 0, 0], [0, 1.0, 0]]),  # element first
        mol("nan", [6, 1, 1], [[0.0, 0, 0], [float("nan"), 0, 0], [0, 1.0, 0]]),
        mol("ok2", [6, 1], [[0.0, 0, 0], [0, 0, 1.1]]),
        mol("one", [6], [[0.0, 0, 0]]),
        mol("none", [], torch.zeros(0, 3).tolist()),
    ]
    got = molecule_errors(mols)
    assert got[0] == "" and got[4] == ""
    assert got[1] == "close: atoms 2 and 3 are 0.100 Å apart (on top of each other)"
    assert got[2].startswith("chlorine: element(s) with atomic number [17] are not in QM9")
    assert got[3] == "nan: coordinates contain NaN or infinite values"
    assert "single atom" in got[5] and "no atoms" in got[6]
    for m, error in zip(mols, got, strict=True):  # one at a time: the same message
        if error:
            with pytest.raises(UserError) as exc:
                check_molecule(m)
            assert str(exc.value) == error
        else:
            assert check_molecule(m) is m


def test_check_molecule_refuses_non_finite_coordinates():
    mol = Molecule(
        "m", torch.tensor([6, 1]), torch.tensor([[0.0, 0, 0], [float("nan"), 0, 0]]), "xyz"
    )
    with pytest.raises(UserError, match="NaN"):
        check_molecule(mol)


def test_smiles_gets_a_3d_geometry_with_hydrogens():
    mol = from_smiles("CCO")
    assert sorted(mol.z.tolist()) == sorted([6, 6, 8] + [1] * 6)
    d = torch.cdist(mol.pos, mol.pos)
    d.fill_diagonal_(10.0)
    assert 0.9 < float(d.min()) < 1.2  # an O-H or C-H bond length, in Å
    with pytest.raises(UserError, match="cannot parse SMILES"):
        from_smiles("C(C")


def test_read_inputs_keeps_files_then_smiles_in_order(tmp_path):
    p = tmp_path / "w.xyz"
    p.write_text(WATER)
    mols = read_inputs([str(p)], ["C"])
    assert [m.source for m in mols] == ["xyz", "smiles"]


@pytest.mark.parametrize(
    "smiles,charge,radicals",
    [("CC(=O)[O-]", -1, 0), ("C[NH3+]", 1, 0), ("[CH3]", 0, 1), ("CCO", 0, 0)],
)
def test_smiles_state_their_charge_and_unpaired_electrons(smiles, charge, radicals):
    mol = from_smiles(smiles)
    assert (mol.charge, mol.radicals) == (charge, radicals)


def test_a_smiles_of_several_fragments_is_refused_by_name():
    (mol,) = read_inputs([], ["CCO.O"])
    assert "2 disconnected fragments" in mol.error and "0.1" not in mol.error
