"""Uniformly random rotations (Haar measure on SO(3)): rotation augmentation
in training and the symmetry checks."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


def random_rotations(
    num: int, generator: Optional[torch.Generator] = None, dtype=torch.float32
) -> Tensor:
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
