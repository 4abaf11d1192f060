"""Reading molecules for prediction: XYZ and SDF files, SMILES strings.

A file that cannot be read at all (missing, empty, no atom count where one
belongs) is an error; a molecule in it that cannot be predicted (an element
QM9 lacks, a broken geometry, a SMILES of several fragments) is returned with
its :attr:`Molecule.error` set, so the others are still predicted."""

from __future__ import annotations

import math
import os.path as osp
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor

from pyg_schnet.data.targets import ELEMENTS
from pyg_schnet.errors import UserError, read_text
from pyg_schnet.resources import check_memory

QM9_Z = set(ELEMENTS.values())
SYMBOL = {v: k for k, v in ELEMENTS.items()}
MIN_DISTANCE = 0.3  # Å; closer atoms are taken as a broken geometry
#: Bytes per atom pair of the geometry checks (here and in
#: :func:`pyg_schnet.analysis.evaluate.applicability`): float64 distances and
#: the masks and copies made of them.
PAIR_BYTES = 32


class Molecule(NamedTuple):
    name: str
    z: Tensor  # [N] long
    pos: Tensor  # [N, 3] float32
    source: str  # "xyz" | "sdf" | "smiles" | "ase" (pyg_schnet.calculators)
    #: Why the molecule cannot be predicted ("" when it can).
    error: str = ""
    #: Formal charge and unpaired electrons, where the input states them
    #: (SMILES, SDF); ``None`` for XYZ.
    charge: Optional[int] = None
    radicals: Optional[int] = None


def _or_error(name: str, source: str, read: Callable[..., Molecule], *args: Any) -> Molecule:
    """``read(*args)``, or a molecule that records why it failed."""
    try:
        return read(*args)
    except UserError as exc:
        return _failed(name, source, str(exc))


def _failed(name: str, source: str, error: str) -> Molecule:
    """A molecule that cannot be predicted, and why."""
    empty = Molecule(name, torch.zeros(0, dtype=torch.long), torch.zeros(0, 3), source)
    return empty._replace(error=error)


def check_molecule(mol: Molecule) -> Molecule:
    """Reject molecules a QM9 model cannot predict, with one clear message."""
    error = molecule_errors([mol])[0]
    if error:
        raise UserError(error)
    return mol


def molecule_errors(mols: Sequence[Molecule]) -> List[str]:
    """Why each molecule cannot be predicted ("" when it can): no atoms, a
    single atom, an element QM9 lacks, coordinates that are not finite, or two
    atoms closer than :data:`MIN_DISTANCE` (a broken geometry). Molecules of
    one size share one distance computation, so a file of thousands of
    molecules is checked in a few batched operations."""
    errors = [""] * len(mols)
    by_size: Dict[int, List[int]] = {}
    for k, mol in enumerate(mols):
        n = mol.z.numel()
        if n == 0:
            errors[k] = f"{mol.name}: the molecule has no atoms"
        elif n == 1:
            errors[k] = f"{mol.name}: a single atom is not a molecule QM9 models can predict"
        else:
            by_size.setdefault(n, []).append(k)
    for n, group in sorted(by_size.items()):
        z = torch.stack([mols[k].z for k in group])  # [M, n]
        pos = torch.stack([mols[k].pos for k in group]).double()  # [M, n, 3]
        foreign = (~torch.isin(z, torch.tensor(sorted(QM9_Z)))).any(dim=1)  # [M]
        finite = torch.isfinite(pos).flatten(1).all(dim=1)  # [M]
        for k, bad_z, ok in zip(group, foreign.tolist(), finite.tolist(), strict=True):
            if bad_z:
                bad = sorted({int(x) for x in mols[k].z.tolist() if int(x) not in QM9_Z})
                errors[k] = (
                    f"{mols[k].name}: element(s) with atomic number {bad} are not in QM9 "
                    "(only H, C, N, O, F)"
                )
            elif not ok:
                errors[k] = f"{mols[k].name}: coordinates contain NaN or infinite values"
        if n > 1000:  # 32 MB of pair checks: below that, not worth a look at the free memory
            for k in group:
                try:
                    check_memory(
                        PAIR_BYTES * n * n,
                        f"{mols[k].name}: the distance checks of a molecule of {n:,} atoms",
                    )
                except UserError as exc:
                    errors[k] = errors[k] or str(exc)
        left = [i for i, k in enumerate(group) if not errors[k]]
        # in chunks of about 4 MB of distances
        chunk = max(1, (1 << 19) // (n * n))
        for c in range(0, len(left), chunk):
            rows = left[c : c + chunk]
            d = torch.cdist(pos[rows], pos[rows])  # [m, n, n]
            d.diagonal(dim1=1, dim2=2).fill_(math.inf)
            closest, where = d.flatten(1).min(dim=1)  # first minimum, row by row
            for i, dmin, at in zip(rows, closest.tolist(), where.tolist(), strict=True):
                if dmin < MIN_DISTANCE:
                    a, b = divmod(int(at), n)
                    errors[group[i]] = (
                        f"{mols[group[i]].name}: atoms {a + 1} and {b + 1} are {dmin:.3f} Å "
                        "apart (on top of each other)"
                    )
    return errors


def _read_text(path: str) -> str:
    text = read_text(path, "input file")
    if not text.strip():
        raise UserError(f"input file {path} is empty")
    return text


#: Element symbols by atomic number (index 0 unused): XYZ files are read
#: without rdkit, whose periodic table prints a C++ stack trace on an
#: unknown symbol.
PERIODIC_TABLE = (
    "X H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga "
    "Ge As Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd "
    "Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac "
    "Th Pa U Np Pu Am Cm Bk Cf Es Fm Md No Lr Rf Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og"
).split()
ATOMIC_NUMBER = {s.lower(): z for z, s in enumerate(PERIODIC_TABLE) if z > 0}


def _element(symbol: str, where: str) -> int:
    """The atomic number of a symbol (any case) or of a number 1..118."""
    s = symbol.strip()
    z = int(s) if s.isdigit() else ATOMIC_NUMBER.get(s.lower(), 0)
    if not 0 < z < len(PERIODIC_TABLE):
        raise UserError(f"{where}: unknown element {symbol!r}")
    return z


def read_xyz(path: str) -> List[Molecule]:
    """One or more concatenated XYZ blocks (count line, comment, atoms). A
    molecule is named by its comment line (QM9's ``gdb 17`` becomes
    ``gdb_17``), else by the file and its place in it. The atoms of all
    molecules go into one tensor of numbers and one of positions, each
    molecule's a view of its rows."""
    lines = _read_text(path).splitlines()
    mols: List[Molecule] = []
    atoms: Dict[int, int] = {}  # place in mols -> atom count, for molecules read
    numbers: List[int] = []
    coords: List[float] = []  # x, y, z of every atom read
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
        k += 1
        name = _xyz_name(lines[i + 1]) or f"{osp.basename(path)}#{k}"
        try:
            z, xyz = _xyz_atoms(path, lines, range(i + 2, i + 2 + n))
        except UserError as exc:
            mols.append(_failed(name, "xyz", str(exc)))
        else:
            atoms[len(mols)] = n
            numbers += z
            coords += xyz
            mols.append(Molecule(name, _NO_ATOMS, _NO_ATOMS, "xyz"))  # atoms below
        i += 2 + n
    if not mols:
        raise UserError(f"input file {path} holds no molecule")
    counts = list(atoms.values())
    z_rows = torch.tensor(numbers, dtype=torch.long).split(counts)
    pos_rows = torch.tensor(coords, dtype=torch.float32).view(-1, 3).split(counts)
    for k, z_k, pos_k in zip(atoms, z_rows, pos_rows, strict=True):
        mols[k] = mols[k]._replace(z=z_k, pos=pos_k)
    read = list(atoms)
    for k, error in zip(read, molecule_errors([mols[k] for k in read]), strict=True):
        if error:
            mols[k] = _failed(mols[k].name, "xyz", error)
    if len(mols) == 1 and mols[0].name == f"{osp.basename(path)}#1":
        mols[0] = mols[0]._replace(name=osp.basename(path))  # a lone molecule: its file
    return mols


def _xyz_name(comment: str) -> str:
    """A name from an XYZ comment line: its text up to the first tab (QM9
    puts the properties there), spaces as underscores; "" for none or for an
    extended-XYZ ``key=value`` line without a ``name=``."""
    text = comment.strip()
    if "=" in text:
        for part in text.split():
            if part.lower().startswith("name="):
                return part.split("=", 1)[1].strip("\"'")[:80]
        return ""
    return "_".join(text.split("\t")[0].split())[:80]


def _xyz_atoms(path: str, lines: List[str], block: range) -> Tuple[List[int], List[float]]:
    """The atomic numbers and the flat x, y, z of a block's atom lines."""
    z: List[int] = []
    xyz: List[float] = []
    for j in block:
        parts = lines[j].replace(",", " ").split()
        if len(parts) < 4:
            raise UserError(f"{path}: line {j + 1} should be 'element x y z'")
        number = _NUMBER.get(parts[0])
        if number is None:
            number = _NUMBER[parts[0]] = _element(parts[0], f"{path} line {j + 1}")
        z.append(number)
        try:
            xyz += (float(parts[1]), float(parts[2]), float(parts[3]))
        except ValueError:  # Mathematica's exponent (QM9's raw files: 1.2*^-6), or not a number
            try:
                xyz += [float(v.replace("*^", "e")) for v in parts[1:4]]
            except ValueError:
                raise UserError(f"{path}: line {j + 1} has a non-numeric coordinate") from None
    # checked with the file's other molecules (read_xyz: molecule_errors)
    return z, xyz


#: Atomic numbers of the element fields met so far, as written (``C``, ``c``, ``6``).
_NUMBER: Dict[str, int] = {}
#: A placeholder for a molecule's atoms until they are filled in.
_NO_ATOMS = torch.zeros(0)


def read_sdf(path: str) -> List[Molecule]:
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    _read_text(path)
    suppl = Chem.SDMolSupplier(path, removeHs=False, sanitize=False)
    mols: List[Molecule] = []
    for k, mol in enumerate(suppl):
        fallback = f"{osp.basename(path)}#{k + 1}"
        name = mol.GetProp("_Name") if mol is not None and mol.HasProp("_Name") else ""
        mols.append(_or_error(name or fallback, "sdf", _sdf_record, path, k, mol, name))
    if not mols:
        raise UserError(f"input file {path} holds no molecule")
    return mols


def _sdf_record(path: str, k: int, mol, name: str) -> Molecule:
    if mol is None:
        raise UserError(f"{path}: record {k + 1} is not a valid SDF molecule")
    if mol.GetNumConformers() == 0:
        raise UserError(f"{path}: record {k + 1} has no coordinates")
    z = torch.tensor([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=torch.long)
    if (z == 0).any():
        raise UserError(f"{path}: record {k + 1} has an unknown element")
    pos = torch.tensor(mol.GetConformer().GetPositions(), dtype=torch.float32).view(-1, 3)
    charge = sum(a.GetFormalCharge() for a in mol.GetAtoms())
    radicals = sum(a.GetNumRadicalElectrons() for a in mol.GetAtoms())
    return check_molecule(
        Molecule(name or f"{osp.basename(path)}#{k + 1}", z, pos, "sdf", "", charge, radicals)
    )


def from_smiles(smiles: str, seed: int = 0) -> Molecule:
    """Embed a 3D conformer with rdkit (ETKDG) and relax it with MMFF.
    QM9 models expect DFT (B3LYP) geometries: these are only approximations."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem import AllChem

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise UserError(f"cannot parse SMILES {smiles!r}")
    fragments = len(Chem.GetMolFrags(mol))
    if fragments > 1:
        raise UserError(
            f"SMILES {smiles!r} holds {fragments} disconnected fragments; a QM9 model "
            f"predicts one molecule: give each as its own --smiles"
        )
    charge = Chem.GetFormalCharge(mol)
    radicals = sum(a.GetNumRadicalElectrons() for a in mol.GetAtoms())
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
    return check_molecule(Molecule(smiles, z, pos, "smiles", "", charge, radicals))


def read_inputs(paths: List[str], smiles: List[str]) -> List[Molecule]:
    """Every molecule of the files, then of the SMILES, in order (those that
    cannot be predicted with their :attr:`Molecule.error`)."""
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
    mols += [_or_error(s, "smiles", from_smiles, s) for s in smiles]
    if not mols:
        raise UserError("no molecules given: pass .xyz/.sdf files or --smiles")
    return mols
