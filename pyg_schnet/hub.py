"""Pretrained models shipped with the package (``pyg_schnet/weights/NAME``):
model-only weights (``model.pt``) and a model card (``card.json``: data,
split, settings, test MAE, training time, limits).

    >>> import pyg_schnet
    >>> model = pyg_schnet.pretrained("qm9-U0")      # a SchNet, eval mode
    >>> pyg_schnet.model_card("qm9-U0")["test_mae"]  # eV

``pyg-schnet predict --model qm9-U0 --smiles CCO`` uses them from the command line.
"""
from __future__ import annotations

import json
import os
import os.path as osp
from typing import Any, Dict, List

from .errors import UserError

WEIGHTS_DIR = osp.join(osp.dirname(osp.abspath(__file__)), "weights")


def available() -> List[str]:
    """Names of the shipped models."""
    if not osp.isdir(WEIGHTS_DIR):
        return []
    return sorted(d for d in os.listdir(WEIGHTS_DIR)
                  if osp.isfile(osp.join(WEIGHTS_DIR, d, "model.pt")))


def _folder(name: str) -> str:
    if name not in available():
        raise UserError(f"unknown pretrained model {name!r}; available: "
                        f"{', '.join(available()) or 'none'}")
    return osp.join(WEIGHTS_DIR, name)


def model_card(name: str) -> Dict[str, Any]:
    """The model card of a shipped model."""
    with open(osp.join(_folder(name), "card.json")) as f:
        return dict(json.load(f))


def pretrained(name: str) -> Any:
    """A shipped model, in eval mode (``model(z, pos, batch) -> [num_graphs, 1]``,
    in the card's unit)."""
    from .train import load_checkpoint, model_from_checkpoint
    model = model_from_checkpoint(load_checkpoint(osp.join(_folder(name), "model.pt")))
    model.eval()
    return model
