"""The training recipe's components: learning-rate schedules and a moving
average of the weights.

A schedule is chosen by name in the config (``schedule: cosine``) and built
here, at the config boundary; the trainer only calls its methods:

* :class:`PlateauSchedule` (``plateau``): multiply the learning rate by
  ``lr_factor`` after ``lr_patience`` epochs without a better validation MAE
  (PyTorch's ``ReduceLROnPlateau``); the run may stop at the
  ``max_lr_decays``-th decay. It has no horizon: where it ends depends on the
  run.
* :class:`CosineSchedule` (``cosine``): a linear warmup from 0 over the first
  ``warmup`` fraction of a fixed horizon, then a half cosine from ``lr`` down
  to ``min_lr``, set before every optimizer step. The horizon is the run's own
  budget (``horizon: epochs``, ``steps`` or ``seconds``: the epoch cap,
  ``max_steps`` or ``time_budget``), so a run that uses its budget ends at the
  floor, annealed, instead of being cut off at a high learning rate.

Both are functions of the run's progress (:class:`Progress`: epochs, steps and
seconds done), which every checkpoint holds, so a resumed run sets the same
learning rates as an uninterrupted one. (Under a ``seconds`` horizon the rates
follow the clock, as the time budget itself does.)

:class:`ExponentialMovingAverage` keeps ``w_avg <- d * w_avg + (1 - d) * w``
after every step; validation, ``best.pt``, the exported model and everything
that loads it use the averaged weights.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Type

import torch
from torch import Tensor, nn

from pyg_schnet.errors import UserError

#: What a horizon is counted in, and the config key that sets its length.
HORIZONS = {"epochs": "epochs", "steps": "max_steps", "seconds": "time_budget"}


@dataclass
class Progress:
    """How far a run is: finished epochs, optimizer steps and seconds of
    training (what a checkpoint's state holds)."""

    epochs: float = 0.0
    steps: int = 0
    seconds: float = 0.0


class LRSchedule:
    """A learning-rate schedule over a run (see the module docstring).

    Args:
        optimizer (torch.optim.Optimizer): The optimizer whose learning rate is set.
        lr (float): The peak (initial) learning rate.
        min_lr (float): The floor.
    """

    name = ""
    #: Does the run end when the schedule has run its course (a horizon)?
    has_horizon = False
    #: Does :meth:`before_step` read ``progress.seconds`` (the clock)?
    uses_clock = False

    def __init__(self, optimizer: torch.optim.Optimizer, lr: float, min_lr: float) -> None:
        self.optimizer, self.lr, self.min_lr = optimizer, lr, min_lr

    @property
    def current(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def _set(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def before_step(self, progress: Progress) -> None:
        """Called before every optimizer step."""

    def after_epoch(self, val_mae: float) -> bool:
        """Called after every epoch's validation; whether the rate decayed."""
        return False

    def fraction(self, progress: Progress) -> float:
        """How much of the horizon is done (0 at the start, 1 at its end)."""
        return 0.0

    def completed(self, progress: Progress, decays: int) -> bool:
        """Did the schedule run its course?"""
        return False

    def describe(self) -> str:
        return self.name

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass


class PlateauSchedule(LRSchedule):
    """Decay on a validation plateau (``ReduceLROnPlateau``).

    Args:
        optimizer (torch.optim.Optimizer): The optimizer.
        lr (float): The initial learning rate.
        min_lr (float): The floor.
        factor (float): The decay factor.
        patience (int): Epochs without improvement before a decay.
        max_decays (int, optional): The decay after which the schedule is
            complete (the trainer then stops). (default: :obj:`None`)
    """

    name = "plateau"

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        lr: float,
        min_lr: float,
        factor: float,
        patience: int,
        max_decays: Optional[int] = None,
    ) -> None:
        super().__init__(optimizer, lr, min_lr)
        self.max_decays = max_decays
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=factor, patience=patience, min_lr=min_lr
        )
        self.factor, self.patience = factor, patience

    def after_epoch(self, val_mae: float) -> bool:
        before = self.current
        self.scheduler.step(val_mae)
        return self.current < before

    def completed(self, progress: Progress, decays: int) -> bool:
        return (
            self.max_decays is not None and decays >= self.max_decays
        ) or self.current <= self.min_lr

    def describe(self) -> str:
        stop = f", stop at decay {self.max_decays}" if self.max_decays else ""
        return (
            f"plateau (x{self.factor:g} after {self.patience} flat epochs, floor "
            f"{self.min_lr:g}{stop})"
        )

    def state_dict(self) -> Dict[str, Any]:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state)


class CosineSchedule(LRSchedule):
    """Linear warmup, then cosine decay to the floor over a fixed horizon.

    Args:
        optimizer (torch.optim.Optimizer): The optimizer.
        lr (float): The peak learning rate (reached at the end of the warmup).
        min_lr (float): The floor, reached at the end of the horizon.
        horizon (str): ``epochs``, ``steps`` or ``seconds``.
        length (float): The horizon's length in its unit.
        steps_per_epoch (int): Optimizer steps per epoch (an ``epochs``
            horizon is counted in steps, so the rate changes every step).
        warmup (float): Fraction of the horizon spent warming up. (default: :obj:`0.02`)
    """

    name = "cosine"
    has_horizon = True

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        lr: float,
        min_lr: float,
        horizon: str,
        length: float,
        steps_per_epoch: int,
        warmup: float = 0.02,
    ) -> None:
        super().__init__(optimizer, lr, min_lr)
        if horizon not in HORIZONS:
            raise UserError(f"unknown horizon {horizon!r}; choose one of: {', '.join(HORIZONS)}")
        self.horizon, self.length, self.warmup = horizon, float(length), warmup
        self.uses_clock = horizon == "seconds"
        self.steps_per_epoch = max(1, steps_per_epoch)
        self._set(self.lr_at(0.0))

    def fraction(self, progress: Progress) -> float:
        if self.horizon == "seconds":
            done = progress.seconds
        elif self.horizon == "steps":
            done = progress.steps
        else:
            done = progress.steps / self.steps_per_epoch
        return min(1.0, max(0.0, done / self.length))

    def lr_at(self, fraction: float) -> float:
        """The learning rate ``fraction`` of the way through the horizon."""
        if fraction < self.warmup:
            # the first step already moves: warmup starts at lr / (warmup steps)
            return self.lr * max(fraction / self.warmup, 1e-3)
        t = (fraction - self.warmup) / max(1.0 - self.warmup, 1e-12)
        return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))

    def before_step(self, progress: Progress) -> None:
        self._set(self.lr_at(self.fraction(progress)))

    def completed(self, progress: Progress, decays: int) -> bool:
        return self.fraction(progress) >= 1.0

    def finish(self, progress: Progress) -> None:
        """Set the rate the schedule has reached (the floor once complete)."""
        self._set(self.lr_at(self.fraction(progress)))

    def describe(self) -> str:
        unit = {"epochs": "epochs", "steps": "steps", "seconds": "s"}[self.horizon]
        return (
            f"cosine over {self.length:g} {unit} (warmup {self.warmup:.0%}), "
            f"{self.lr:g} -> {self.min_lr:g}"
        )


SCHEDULES: Dict[str, Type[LRSchedule]] = {
    PlateauSchedule.name: PlateauSchedule,
    CosineSchedule.name: CosineSchedule,
}


def make_schedule(cfg: Any, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> LRSchedule:
    """The schedule a :class:`~pyg_schnet.run.config.Config` names, on ``optimizer``."""
    if cfg.schedule == "plateau":
        return PlateauSchedule(
            optimizer, cfg.lr, cfg.min_lr, cfg.lr_factor, cfg.lr_patience, cfg.max_lr_decays
        )
    if cfg.schedule == "cosine":
        length = getattr(cfg, HORIZONS[cfg.horizon])
        return CosineSchedule(
            optimizer, cfg.lr, cfg.min_lr, cfg.horizon, length, steps_per_epoch, cfg.warmup
        )
    raise UserError(f"unknown schedule {cfg.schedule!r}; choose one of: {', '.join(SCHEDULES)}")


class ExponentialMovingAverage:
    """An exponential moving average of a model's weights.

    After optimizer step ``t`` the average moves towards the weights with the
    decay ``min(decay, (1 + t) / (10 + t))``, so the first steps' random
    initialisation does not linger (TensorFlow's ``num_updates`` rule).
    Buffers are copied, not averaged.

    Args:
        model (torch.nn.Module): The trained model; the average starts as a copy.
        decay (float): The decay per step (0.999: about the last 1,000 steps).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.updates = 0
        # the tensors each update reads and writes, listed once (walking the modules
        # takes longer than the update itself at the shipped size)
        self._averaged: List[Tensor] = list(self.module.parameters())
        self._copied: List[Tensor] = list(self.module.buffers())
        self._source: Optional[Tuple[nn.Module, List[Tensor], List[Tensor]]] = None

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        if self._source is None or self._source[0] is not model:
            self._source = (model, list(model.parameters()), list(model.buffers()))
        _, weights, buffers = self._source
        # one call over all parameters, not a loop of small kernels (0.14 ms against
        # 0.70 an update at the shipped size; experiments/results/optimizer/ema.py)
        torch._foreach_lerp_(self._averaged, weights, 1.0 - d)
        if buffers:
            torch._foreach_copy_(self._copied, buffers)

    def state_dict(self) -> Dict[str, Any]:
        return {"model": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.module.load_state_dict(state["model"])
        self.updates = int(state["updates"])

    def describe(self) -> str:
        return f"EMA of the weights, decay {self.decay:g}"
