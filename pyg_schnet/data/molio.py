"""Reading molecules for prediction: XYZ and SDF files, SMILES strings."""

from __future__ import annotations

import math
import os.path as osp
from typing import List, NamedTuple

import torch
from torch import Tensor

from pyg_schnet.data.qm9 import ELEMENTS
from pyg_schnet.errors import UserError, read_text

QM9_Z = set(ELEMENTS.values())
SYMBOL = {v: k for k, v in ELEMENTS.items()}
MIN_DISTANCE = 0.3  # Å; closer atoms are taken as a broken geometry


class Molecule(NamedTuple):
    name: str
    z: Tensor  # [N] long
    pos: Tensor  # [N, 3] float32
    source: str  # "xyz" | "sdf" | "smiles"


def check_molecule(mol: Molecule) -> Molecule:
    """Reject molecules a QM9 model cannot predict, with one clear message."""
    n = mol.z.numel()
    if n == 0:
        raise UserError(f"{mol.name}: the molecule has no atoms")
    if n == 1:
        raise UserError(f"{mol.name}: a single atom is not a molecule QM9 models can predict")
    bad = sorted({int(z) for z in mol.z.tolist() if int(z) not in QM9_Z})
    if bad:
        raise UserError(
            f"{mol.name}: element(s) with atomic number {bad} are not in QM9 (only H, C, N, O, F)"
        )
    if not torch.isfinite(mol.pos).all():
        raise UserError(f"{mol.name}: coordinates contain NaN or infinite values")
    d = torch.cdist(mol.pos.double(), mol.pos.double())
    d.fill_diagonal_(math.inf)
    if float(d.min()) < MIN_DISTANCE:
        i, j = divmod(int(d.argmin()), n)
        raise UserError(
            f"{mol.name}: atoms {i + 1} and {j + 1} are {float(d.min()):.3f} Å apart "
            f"(on top of each other)"
        )
    return mol


def _read_text(path: str) -> str:
    text = read_text(path, "input file")
    if not text.strip():
        raise UserError(f"input file {path} is empty")
    return text


def _element(symbol: str, where: str) -> int:
    from rdkit import Chem

    s = symbol.strip()
    if s.isdigit():
        return int(s)
    try:
        z = Chem.GetPeriodicTable().GetAtomicNumber(s.capitalize())
    except Exception:
        z = 0
    if z <= 0:
        raise UserError(f"{where}: unknown element {symbol!r}")
    return z


def read_xyz(path: str) -> List[Molecule]:
    """One or more concatenated XYZ blocks (count line, comment, atoms)."""
    lines = _read_text(path).splitlines()
    mols: List[Molecule] = []
    i, k = 0, 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        try:
            n = int(lines[i].split()[0])
        except (ValueError, IndexError):
            raise UserError(f"{path}: line {i + 1} should hold an atom count") from None
        if n < 0 or i + 2 + n > len(lines):
            raise UserError(f"{path}: expected {n} atom lines after line {i + 2}")
        z, pos = [], []
        for j in range(i + 2, i + 2 + n):
            parts = lines[j].replace(",", " ").split()
            if len(parts) < 4:
                raise UserError(f"{path}: line {j + 1} should be 'element x y z'")
            z.append(_element(parts[0], f"{path} line {j + 1}"))
            try:
                pos.append([float(v.replace("*^", "e")) for v in parts[1:4]])
            except ValueError:
                raise UserError(f"{path}: line {j + 1} has a non-numeric coordinate") from None
        k += 1
        mols.append(
            check_molecule(
                Molecule(
                    f"{osp.basename(path)}#{k}",
                    torch.tensor(z, dtype=torch.long),
                    torch.tensor(pos, dtype=torch.float32).view(-1, 3),
                    "xyz",
                )
            )
        )
        i += 2 + n
    if not mols:
        raise UserError(f"input file {path} holds no molecule")
    if len(mols) == 1:  # a single molecule is named after its file
        mols[0] = mols[0]._replace(name=osp.basename(path))
    return mols


def read_sdf(path: str) -> List[Molecule]:
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    _read_text(path)
    suppl = Chem.SDMolSupplier(path, removeHs=False, sanitize=False)
    mols: List[Molecule] = []
    for k, mol in enumerate(suppl):
        if mol is None:
            raise UserError(f"{path}: record {k + 1} is not a valid SDF molecule")
        name = (
            mol.GetProp("_Name")
            if mol.HasProp("_Name") and mol.GetProp("_Name")
            else f"{osp.basename(path)}#{k + 1}"
        )
        if mol.GetNumConformers() == 0:
            raise UserError(f"{path}: record {k + 1} has no coordinates")
        z = torch.tensor([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=torch.long)
        if (z == 0).any():
            raise UserError(f"{path}: record {k + 1} has an unknown element")
        pos = torch.tensor(mol.GetConformer().GetPositions(), dtype=torch.float32).view(-1, 3)
        mols.append(check_molecule(Molecule(name, z, pos, "sdf")))
    if not mols:
        raise UserError(f"input file {path} holds no molecule")
    return mols


def from_smiles(smiles: str, seed: int = 0) -> Molecule:
    """Embed a 3D conformer with rdkit (ETKDG) and relax it with MMFF.
    QM9 models expect DFT (B3LYP) geometries: these are only approximations."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem import AllChem

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise UserError(f"cannot parse SMILES {smiles!r}")
    mol = Chem.AddHs(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    if AllChem.EmbedMolecule(mol, params) != 0:
        raise UserError(f"rdkit could not embed a 3D conformer for {smiles!r}")
    if AllChem.MMFFHasAllMoleculeParams(mol):
        AllChem.MMFFOptimizeMolecule(mol, maxIters=2000)
    else:
        AllChem.UFFOptimizeMolecule(mol, maxIters=2000)
    z = torch.tensor([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=torch.long)
    pos = torch.tensor(mol.GetConformer().GetPositions(), dtype=torch.float32)
    return check_molecule(Molecule(smiles, z, pos, "smiles"))


def read_inputs(paths: List[str], smiles: List[str]) -> List[Molecule]:
    mols: List[Molecule] = []
    for path in paths:
        ext = osp.splitext(path)[1].lower()
        if ext == ".xyz":
            mols += read_xyz(path)
        elif ext in (".sdf", ".mol"):
            mols += read_sdf(path)
        else:
            raise UserError(
                f"{path}: unknown molecule file type {ext or '(none)'!r}; "
                f"use .xyz or .sdf, or --smiles"
            )
    mols += [from_smiles(s) for s in smiles]
    if not mols:
        raise UserError("no molecules given: pass .xyz/.sdf files or --smiles")
    return mols
