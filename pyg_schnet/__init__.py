"""SchNet with swappable edge filters on PyTorch Geometric, trained on QM9.

The public API, each name described in ``docs/api.md``::

    import pyg_schnet

    ds = pyg_schnet.QM9()                               # the data set
    model = pyg_schnet.build_model("conv1d", cutoff=5.0)  # a SchNet by filter name
    u0 = pyg_schnet.pretrained("qm9-U0")                # a shipped model
    cfg = pyg_schnet.load_config("quickstart", {"epochs": 1})
    metrics = pyg_schnet.train(cfg)                     # a run directory

The names are imported from their modules on first use (:data:`_EXPORTS`), so
``import pyg_schnet`` (and with it every ``pyg-schnet`` command's start) does
not load torch.
"""

from importlib import import_module as _import_module
from typing import Any as _Any

from pyg_schnet.version import __version__

#: Each public name and the module that defines it, lowest layer first.
_EXPORTS: dict[str, str] = {
    "UserError": "pyg_schnet.errors",
    "SchNet": "pyg_schnet.nn.schnet",
    "build_model": "pyg_schnet.nn.schnet",
    "FILTERS": "pyg_schnet.nn.filters",
    "RadiusGraph": "pyg_schnet.nn.graph",
    "MODELS": "pyg_schnet.nn.models",
    "QM9": "pyg_schnet.data",
    "TARGETS": "pyg_schnet.data",
    "UNITS": "pyg_schnet.data",
    "Split": "pyg_schnet.data",
    "random_split": "pyg_schnet.data",
    "nested_split": "pyg_schnet.data",
    "Config": "pyg_schnet.run.config",
    "load_config": "pyg_schnet.run.config",
    "train": "pyg_schnet.run.trainer",
    "pretrained": "pyg_schnet.hub",
    "model_card": "pyg_schnet.hub",
    "export_model": "pyg_schnet.hub",
    "evaluate": "pyg_schnet.analysis.evaluate",
    "predict": "pyg_schnet.analysis.evaluate",
    "SchNetCalculator": "pyg_schnet.calculators",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> _Any:
    """A public name, imported from its module (:data:`_EXPORTS`) on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pyg_schnet' has no attribute {name!r}")
    return getattr(_import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
