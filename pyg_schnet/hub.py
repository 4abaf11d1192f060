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
from typing import Any, Dict, List, Optional

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


def evaluate_pretrained(name: str, root: Optional[str], split: str = "test",
                        limit: Optional[int] = None, batch_size: int = 250) -> Dict[str, Any]:
    """MAE and RMSE of a shipped model on the split its card names (the data
    set rebuilt or loaded at ``root``); ``limit`` evaluates a seeded random
    subset of that split."""
    import torch

    from .data import QM9, UNITS, nested_split, target_index
    from .loader import MoleculeLoader
    from .train import errors
    card = model_card(name)
    spec = card["split_spec"]
    ds = QM9(root, source=card.get("source", "qm9pack"))
    if len(ds) != spec["num_molecules"]:
        raise UserError(f"{name} was trained on {spec['num_molecules']} molecules; the data set "
                        f"at {root} has {len(ds)}")
    sp = nested_split(len(ds), spec["train"], spec["val"], spec["test"], spec["seed"])
    idx = torch.as_tensor({"test": sp.test_idx, "val": sp.val_idx, "train": sp.train_idx}[split])
    if limit is not None and limit < len(idx):
        idx = idx[torch.randperm(len(idx), generator=torch.Generator().manual_seed(0))[:limit]]
    loader = MoleculeLoader(ds, idx, batch_size, target_index(card["target"]))
    mae, rmse = errors(pretrained(name), loader, torch.device("cpu"))
    return {"split": split, "count": len(idx), "mae": mae, "rmse": rmse,
            "unit": UNITS[card["target"]],
            "card_mae": card["test_mae"] if split == "test" else None}
