"""Symmetry checks of a model on a batch: translation, rotation, permutation."""
from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import Tensor

from .filters import FILTERS
from .atomistic import AtomisticModel
from .model import build_model


def random_rotations(num: int, generator: Optional[torch.Generator] = None,
                     dtype=torch.float32) -> Tensor:
    """``num`` uniformly random proper rotation matrices ``[num, 3, 3]`` (QR
    of Gaussian matrices, signs fixed so the distribution is Haar)."""
    a = torch.randn(num, 3, 3, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    flip = torch.det(q) < 0  # reflections: turn them into rotations
    q[flip, :, 0] = -q[flip, :, 0]
    return q.to(dtype)


def random_rotation(generator: Optional[torch.Generator] = None, dtype=torch.float32) -> Tensor:
    """A uniformly random proper rotation matrix ``[3, 3]``."""
    return random_rotations(1, generator, dtype)[0]


@torch.no_grad()
def invariance_errors(model: AtomisticModel, z: Tensor, pos: Tensor, batch: Tensor,
                      seed: int = 0) -> Dict[str, float]:
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
    perm = torch.cat([torch.nonzero(batch == g).view(-1)[torch.randperm(
        int((batch == g).sum()), generator=gen)] for g in range(num_graphs)])
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
    from .data import QM9
    from .loader import MoleculeLoader
    ds = QM9(root)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(ds), generator=gen)[:batch_size]
    b = MoleculeLoader(ds, idx, batch_size).gather(idx)
    rows: Dict[str, Dict[str, float]] = {
        "_batch": {"molecules": b.num_graphs, "atoms": b.z.numel()}}
    for name in FILTERS:
        torch.manual_seed(seed)
        model = build_model(name)
        errs = invariance_errors(model, b.z, b.pos, b.batch, seed)
        rows[name] = dict(errs, parameters=sum(p.numel() for p in model.parameters()))
    return rows
