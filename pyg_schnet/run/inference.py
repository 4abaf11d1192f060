"""A model over a loader: predictions, and their MAE and RMSE (summed over
data-parallel processes)."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from pyg_schnet.data.loader import MoleculeLoader
from pyg_schnet.errors import UserError
from pyg_schnet.metrics import ErrorSums
from pyg_schnet.run.distributed import DistInfo, allreduce


def resolve_device(name: str) -> torch.device:
    """The torch device ``cpu`` or ``cuda[:N]``, checked: a name torch does
    not know, or CUDA without a GPU, is one clear error."""
    if not (name == "cpu" or name.startswith("cuda")):
        raise UserError(f"device must be cpu or cuda[:N], got {name!r}")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"device must be cpu or cuda[:N], got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("device cuda asked for, but no CUDA GPU is available")
    return device


@torch.no_grad()
def predict_loader(
    model: nn.Module, loader: MoleculeLoader, device: torch.device
) -> Tuple[Tensor, Tensor, Tensor]:
    """Predictions, targets and dataset positions over a loader."""
    model.eval()
    preds, ys, idx = [], [], []
    for b in loader:
        b = b.to(device)
        preds.append(model(b.z, b.pos, b.batch, num_graphs=b.num_graphs).view(-1).cpu())
        ys.append(b.y.cpu())
        idx.append(b.index)
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
