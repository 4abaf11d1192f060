"""What QM9 is, without the data set: its 19 targets (PyG's order and units),
which are extensive, its elements, atom reference energies and size, and
where its cache lives. :mod:`pyg_schnet.data.qm9` (the data set, a PyG
``InMemoryDataset``) builds on these; code that only needs them (a
prediction, a config check) does not import PyG.
"""

from __future__ import annotations

import os
import os.path as osp
from typing import Dict, Tuple, Union

import torch
from torch import Tensor

from pyg_schnet.errors import UserError

#: PyG's 19 QM9 targets, in PyG's order.
TARGETS: Tuple[str, ...] = (
    "mu",
    "alpha",
    "homo",
    "lumo",
    "gap",
    "r2",
    "zpve",
    "U0",
    "U",
    "H",
    "G",
    "cv",
    "U0_atom",
    "U_atom",
    "H_atom",
    "G_atom",
    "A",
    "B",
    "C",
)
#: Units of each target (PyG's QM9 docstring table).
UNITS: Dict[str, str] = {
    "mu": "D",
    "alpha": "a0^3",
    "homo": "eV",
    "lumo": "eV",
    "gap": "eV",
    "r2": "a0^2",
    "zpve": "eV",
    "U0": "eV",
    "U": "eV",
    "H": "eV",
    "G": "eV",
    "cv": "cal/(mol K)",
    "U0_atom": "eV",
    "U_atom": "eV",
    "H_atom": "eV",
    "G_atom": "eV",
    "A": "GHz",
    "B": "GHz",
    "C": "GHz",
}
#: Targets that scale with molecule size: summed over atoms; the others are
#: averaged (schnetpack's choice for orbital energies and the dipole moment).
EXTENSIVE = frozenset(
    {"alpha", "r2", "zpve", "U0", "U", "H", "G", "cv", "U0_atom", "U_atom", "H_atom", "G_atom"}
)

HAR2EV = 27.211386246  # PyG's constant
NUM_MOLECULES = 130_831
#: QM9 atom reference energies in Hartree (Ramakrishnan et al. 2014,
#: atomref.txt): element -> (U0, U, H, G).
ATOM_REF_HARTREE: Dict[int, Tuple[float, float, float, float]] = {
    1: (-0.500273, -0.498857, -0.497912, -0.510927),
    6: (-37.846772, -37.845355, -37.844411, -37.861317),
    7: (-54.583861, -54.582445, -54.581501, -54.598897),
    8: (-75.064579, -75.063163, -75.062219, -75.079532),
    9: (-99.718730, -99.717314, -99.716370, -99.733544),
}
ELEMENTS: Dict[str, int] = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
#: The most heavy atoms (C, N, O, F) of a QM9 molecule, measured on all 130,831.
QM9_MAX_HEAVY_ATOMS = 9
SOURCES = ("qm9pack", "pyg")


def target_index(name: Union[str, int]) -> int:
    """Position of a target given by name (``"U0"``) or index; case-insensitive
    for names."""
    if isinstance(name, int) and not isinstance(name, bool):
        if 0 <= name < len(TARGETS):
            return name
        raise UserError(f"target index {name} out of range 0..{len(TARGETS) - 1}")
    key = str(name).strip().lower()
    if key.isdigit():  # "7" from a flag or a YAML string
        return target_index(int(key))
    lower = {t.lower(): i for i, t in enumerate(TARGETS)}
    if key not in lower:
        raise UserError(f"unknown target {name!r}; choose one of: {', '.join(TARGETS)}")
    return lower[key]


def atomref(target: Union[str, int]) -> Tensor:
    """Atom reference energies ``[100]`` in eV for U0/U/H/G; zeros otherwise."""
    t = target_index(target)
    out = torch.zeros(100, dtype=torch.float64)
    name = TARGETS[t]
    if name in ("U0", "U", "H", "G"):
        col = ("U0", "U", "H", "G").index(name)
        for z, refs in ATOM_REF_HARTREE.items():
            out[z] = refs[col] * HAR2EV
    return out.float()


def default_root() -> str:
    """The QM9 root used when none is given: ``$PYG_SCHNET_DATA``, else
    ``$XDG_CACHE_HOME/pyg_schnet/qm9`` (``~/.cache/pyg_schnet/qm9``), so every
    command finds the same cache from any directory."""
    env = os.environ.get("PYG_SCHNET_DATA")
    if env:
        return osp.abspath(osp.expanduser(env))
    cache = os.environ.get("XDG_CACHE_HOME") or osp.join(osp.expanduser("~"), ".cache")
    return osp.join(cache, "pyg_schnet", "qm9")
