"""Symmetry checks of a model on a batch: translation, rotation, permutation."""

from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import Tensor

from pyg_schnet.data import QM9
from pyg_schnet.data.loader import MoleculeLoader
from pyg_schnet.nn.atomistic import AtomisticModel
from pyg_schnet.nn.filters import FILTERS
from pyg_schnet.nn.rotations import random_rotation
from pyg_schnet.nn.schnet import build_model


@torch.no_grad()
def invariance_errors(
    model: AtomisticModel, z: Tensor, pos: Tensor, batch: Tensor, seed: int = 0
) -> Dict[str, float]:
    """Largest change of any prediction under a per-molecule random rotation,
    a translation, and a random permutation of atoms within each molecule,
    relative to the spread (std) of the predictions over the batch.

    The spread of a trained total-energy model (U0) is tens of eV, so there
    a large absolute change can look small; compare absolute changes too."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    num_graphs = int(batch.max()) + 1
    ref = model(z, pos, batch, num_graphs=num_graphs)
    scale = float(ref.std()) if num_graphs > 1 else float(ref.abs().max())
    scale = scale if scale > 0 else 1.0
    rots = torch.stack([random_rotation(gen) for _ in range(num_graphs)])  # [B, 3, 3]
    rotated = torch.einsum("nij,nj->ni", rots[batch], pos)
    shift = torch.randn(num_graphs, 3, generator=gen) * 5.0
    translated = pos + shift[batch]
    perm = torch.cat(
        [
            torch.nonzero(batch == g).view(-1)[
                torch.randperm(int((batch == g).sum()), generator=gen)
            ]
            for g in range(num_graphs)
        ]
    )
    out = {
        "rotation": model(z, rotated, batch, num_graphs=num_graphs),
        "translation": model(z, translated, batch, num_graphs=num_graphs),
        "permutation": model(z[perm], pos[perm], batch[perm], num_graphs=num_graphs),
    }
    return {k: float((v - ref).abs().max()) / scale for k, v in out.items()}


def report(root: Optional[str], batch_size: int = 32, seed: int = 0) -> Dict[str, Dict[str, float]]:
    """Per registered filter: parameters and invariance errors on a QM9 batch
    (default model sizes, random initialisation); ``"_batch"`` holds the
    batch's molecule and atom counts."""
    ds = QM9(root)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(ds), generator=gen)[:batch_size]
    b = MoleculeLoader(ds, idx, batch_size).gather(idx)
    rows: Dict[str, Dict[str, float]] = {
        "_batch": {"molecules": b.num_graphs, "atoms": b.z.numel()}
    }
    for name in FILTERS:
        torch.manual_seed(seed)
        model = build_model(name)
        errs = invariance_errors(model, b.z, b.pos, b.batch, seed)
        rows[name] = dict(errs, parameters=sum(p.numel() for p in model.parameters()))
    return rows
