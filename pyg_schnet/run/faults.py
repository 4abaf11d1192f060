"""Trainer hooks, and the fault injection of the kill-and-resume tests.

:class:`TrainerHooks` names the points of a run (or of an export) where a
test may inject a fault; the trainer, :func:`~pyg_schnet.run.trainer.train`
and :func:`~pyg_schnet.hub.export_model` call them (:func:`default_hooks`).

``PYG_SCHNET_FAULT=<point>:<n>[,<point>:<n>...]`` makes a ``train`` or
``export`` process kill itself with SIGKILL the n-th time it passes ``point``:

* ``batch``: before a training batch;
* ``checkpoint``: inside a checkpoint write, after the data are flushed and
  before the rename (a complete temporary file, the old checkpoint in place);
* ``evaluate``: before the final test evaluation;
* ``swap``: around the swap that puts a replacement in place
  (:func:`pyg_schnet.io.replace_dir`: ``train --overwrite`` of a run,
  ``export``): ``swap:1`` before it (the new one complete in its staging
  directory, the old one whole), ``swap:2`` after it (the new one in place,
  the old one not yet removed from the staging directory's name);
* ``export``: in ``export``, after the weights are written to the staging
  folder and before the card;

or, for ``enospc:<n>``, makes the n-th checkpoint write fail as if the disk
were full, and for ``skew:<ms>``, makes the clock of every rank but 0 run
``ms`` milliseconds per second ahead (data-parallel runs whose ranks
disagree about time). :func:`default_hooks` installs a :class:`FaultInjector` when the variable is
set.
"""

from __future__ import annotations

import os
import signal
from typing import Dict, List, Tuple


class TrainerHooks:
    """Points in a run where tests inject faults; every method does nothing."""

    def batch(self) -> None:
        """Before each training batch."""

    def checkpoint_write(self) -> None:
        """Inside each checkpoint write: data flushed, not yet renamed."""

    def evaluate(self) -> None:
        """Before the final test evaluation."""

    def swap(self) -> None:
        """Before a replacement is swapped in, and after (the old one not yet removed)."""

    def export(self) -> None:
        """In an export, after the weights are written, before the card."""

    def clock(self, seconds: float) -> float:
        """This process's reading of ``seconds`` since the epoch started."""
        return seconds


class FaultInjector(TrainerHooks):
    """Trainer hooks that fail at the points a spec names."""

    def __init__(self, spec: str) -> None:
        self.points: List[Tuple[str, int]] = []
        for item in spec.split(","):
            point, _, n = item.strip().partition(":")
            if n.isdigit():
                self.points.append((point, int(n)))
        self.counts: Dict[str, int] = {}

    def _pass(self, name: str) -> bool:
        self.counts[name] = self.counts.get(name, 0) + 1
        return (name, self.counts[name]) in self.points

    def batch(self) -> None:
        if self._pass("batch"):
            os.kill(os.getpid(), signal.SIGKILL)

    def checkpoint_write(self) -> None:
        if self._pass("enospc"):
            raise OSError(28, "No space left on device")
        if self._pass("checkpoint"):
            os.kill(os.getpid(), signal.SIGKILL)

    def evaluate(self) -> None:
        if self._pass("evaluate"):
            os.kill(os.getpid(), signal.SIGKILL)

    def swap(self) -> None:
        if self._pass("swap"):
            os.kill(os.getpid(), signal.SIGKILL)

    def export(self) -> None:
        if self._pass("export"):
            os.kill(os.getpid(), signal.SIGKILL)

    def clock(self, seconds: float) -> float:
        skew = dict(self.points).get("skew", 0)
        if skew and os.environ.get("RANK", "0") != "0":
            return seconds * (1.0 + skew / 1000.0)
        return seconds


def default_hooks() -> TrainerHooks:
    """No-op hooks, or the fault injector when ``PYG_SCHNET_FAULT`` is set."""
    spec = os.environ.get("PYG_SCHNET_FAULT")
    if spec:
        return FaultInjector(spec)
    return TrainerHooks()
