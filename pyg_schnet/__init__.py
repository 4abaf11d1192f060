"""SchNet with swappable edge filters on PyTorch Geometric, trained on QM9."""

from typing import Any, Dict

__version__ = "0.1.0"


def pretrained(name: str) -> Any:
    """A pretrained model shipped with the package, e.g. ``"qm9-U0"``
    (:mod:`pyg_schnet.hub`; imports torch on first use)."""
    from pyg_schnet.hub import pretrained as load

    return load(name)


def model_card(name: str) -> Dict[str, Any]:
    """The model card of a shipped pretrained model."""
    from pyg_schnet.hub import model_card as card

    return card(name)
