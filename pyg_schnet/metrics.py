"""Error metrics, in one place: mean absolute error and root-mean-square
error, accumulated batch by batch in float64 (and summable over processes)."""

from __future__ import annotations

import math
from typing import List, Tuple

from torch import Tensor


class ErrorSums:
    """Running sums of ``|pred - y|`` and ``(pred - y)^2`` and their count."""

    def __init__(self) -> None:
        self.abs, self.sq, self.n = 0.0, 0.0, 0

    def add(self, pred: Tensor, y: Tensor) -> "ErrorSums":
        diff = pred.detach().double().view(-1) - y.detach().double().view(-1)
        self.abs += float(diff.abs().sum())
        self.sq += float((diff**2).sum())
        self.n += diff.numel()
        return self

    def as_list(self) -> List[float]:
        """``[abs, sq, n]``, for summing over processes."""
        return [self.abs, self.sq, float(self.n)]

    @classmethod
    def from_list(cls, values: List[float]) -> "ErrorSums":
        out = cls()
        out.abs, out.sq, out.n = values[0], values[1], int(values[2])
        return out

    @property
    def mae(self) -> float:
        """The mean absolute error (NaN when nothing was added)."""
        return self.abs / self.n if self.n else float("nan")

    @property
    def rmse(self) -> float:
        return math.sqrt(self.sq / self.n) if self.n else float("nan")


def mae_rmse(pred: Tensor, y: Tensor) -> Tuple[float, float]:
    """MAE and RMSE of ``pred`` against ``y`` (float64)."""
    sums = ErrorSums().add(pred, y)
    return sums.mae, sums.rmse


def display_unit(unit: str) -> Tuple[str, float]:
    """The unit errors are shown in and the factor from ``unit``: meV for
    energies in eV (QM9's errors are tens of meV), else the unit itself."""
    return ("meV", 1000.0) if unit == "eV" else (unit, 1.0)
