"""A model over a loader: predictions, and their MAE and RMSE (summed over
data-parallel processes)."""

from __future__ import annotations

import re
from typing import Any, Optional, Tuple

import torch
from torch import Tensor, nn

from pyg_schnet.data.loader import MoleculeLoader, apply_model
from pyg_schnet.errors import UserError
from pyg_schnet.metrics import ErrorSums
from pyg_schnet.nn.fast import eager_kernels
from pyg_schnet.run.distributed import DistInfo, allreduce


#: The device names a command takes: ``cpu`` and ``cuda[:N]``.
DEVICE_PATTERN = re.compile(r"cpu(:0)?|cuda(:[0-9]+)?")


def check_device_name(name: Any) -> str:
    """``name`` if it is ``cpu`` or ``cuda[:N]``, else one clear error (a
    setting's check: whether this machine has the GPU is :func:`resolve_device`'s,
    so a run trained on a GPU still loads on a CPU-only machine)."""
    if not isinstance(name, str) or not DEVICE_PATTERN.fullmatch(name):
        raise UserError(f"device must be cpu or cuda[:N], got {name!r}")
    return name


def resolve_device(name: str) -> torch.device:
    """The torch device ``cpu`` or ``cuda[:N]``, checked: any other name, or a
    GPU this machine does not have, is one clear error."""
    device = torch.device(check_device_name(name))
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError("device cuda asked for, but no CUDA GPU is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(
                f"device {name} asked for, but this machine has "
                f"{torch.cuda.device_count()} CUDA GPU(s)"
            )
    return device


@torch.no_grad()
def predict_loader(
    model: nn.Module, loader: MoleculeLoader, device: torch.device
) -> Tuple[Tensor, Tensor, Tensor]:
    """Predictions, targets and dataset positions over a loader. A fast-mode
    model runs its kernels uncompiled (:func:`~pyg_schnet.nn.fast.eager_kernels`):
    the same numbers, and on 10,000 QM9 molecules as fast as compiled kernels
    without their compile step (docs/speed.md)."""
    model.eval()
    preds, ys, idx = [], [], []
    with eager_kernels():
        for b in loader:
            b = b.to(device)
            preds.append(apply_model(model, b).view(-1).cpu())
            ys.append(b.y.cpu())
            idx.append(b.index.cpu())
    if not preds:
        return torch.zeros(0), torch.zeros(0), torch.zeros(0, dtype=torch.long)
    return torch.cat(preds), torch.cat(ys), torch.cat(idx)


def errors(
    model: nn.Module, loader: MoleculeLoader, device: torch.device, info: Optional[DistInfo] = None
) -> Tuple[float, float]:
    """MAE and RMSE over the loader (summed over ranks under data parallelism)."""
    info = info or DistInfo()
    pred, y, _ = predict_loader(model, loader, device)
    sums = ErrorSums.from_list(allreduce(ErrorSums().add(pred, y).as_list(), info))
    return sums.mae, sums.rmse
