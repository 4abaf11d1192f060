"""Standardisation of a target from the training split only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from pyg_schnet.data.targets import EXTENSIVE, TARGETS, atomref, target_index

if TYPE_CHECKING:
    from pyg_schnet.data.qm9 import QM9


def readout_for(target: Union[str, int]) -> str:
    """How a target is pooled over atoms: summed for an extensive one (energies,
    polarisability, heat capacity, ...), averaged otherwise."""
    return "add" if TARGETS[target_index(target)] in EXTENSIVE else "mean"


@dataclass
class Statistics:
    """Standardisation of one target, from the training split only.

    For extensive targets (summed over atoms) ``mean``/``std`` are per atom,
    after subtracting the atom references; otherwise per molecule."""

    target: str
    mean: float
    std: float
    atomref: Optional[Tensor]  # [100] or None
    readout: str  # "add" or "mean"


def compute_statistics(
    dataset: QM9, train_idx: Union[Sequence[int], np.ndarray], target: Union[str, int]
) -> Statistics:
    """Standardisation of ``target`` from the molecules ``train_idx`` only."""
    t = target_index(target)
    name = TARGETS[t]
    idx = torch.as_tensor(np.asarray(train_idx), dtype=torch.long)
    y = dataset.targets()[idx, t].double()
    readout = readout_for(name)
    ref = atomref(name)
    has_ref = bool(ref.abs().sum() > 0)
    if readout == "add":
        counts = dataset.num_atoms()[idx].double()
        if has_ref:
            y = y - _atom_sum(dataset, idx, ref.double())
        per_atom = y / counts
        mean, std = float(per_atom.mean()), float(per_atom.std())
    else:
        mean, std = float(y.mean()), float(y.std())
    if not np.isfinite(std) or std <= 0:
        std = 1.0
    return Statistics(name, mean, std, ref if has_ref else None, readout)


def _atom_sum(dataset: QM9, idx: Tensor, per_element: Tensor) -> Tensor:
    """Sum of ``per_element[z]`` over the atoms of molecules ``idx`` ``[len(idx)]``."""
    base = idx if dataset._indices is None else torch.as_tensor(dataset._indices)[idx]
    slices = dataset.slices["z"]
    starts, lengths = slices[base], slices[base + 1] - slices[base]
    mol = torch.repeat_interleave(torch.arange(len(idx)), lengths)
    first = torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
    atom_ids = torch.repeat_interleave(starts, lengths) + torch.arange(int(lengths.sum())) - first
    out = torch.zeros(len(idx), dtype=per_element.dtype)
    return out.index_add_(0, mol, per_element[dataset._data.z[atom_ids]])
