"""Fault injection for the kill-and-resume tests.

``PYG_SCHNET_FAULT=<point>:<n>[,<point>:<n>...]`` makes a training process
kill itself with SIGKILL the n-th time it passes ``point``:

* ``batch``: before a training batch;
* ``checkpoint``: inside a checkpoint write, after the data are flushed and
  before the rename (a complete temporary file, the old checkpoint in place);
* ``evaluate``: before the final test evaluation;

or, for ``enospc:<n>``, makes the n-th checkpoint write fail as if the disk
were full. :func:`pyg_schnet.train.default_hooks` installs a
:class:`FaultInjector` when the variable is set.
"""
from __future__ import annotations

import os
import signal
from typing import Dict, List, Tuple

from ..train import TrainerHooks


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
