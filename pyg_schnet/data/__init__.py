"""The data layer: QM9 (:mod:`~pyg_schnet.data.qm9`) and what it is without the
data set (:mod:`~pyg_schnet.data.targets`), splits
(:mod:`~pyg_schnet.data.splits`), target statistics
(:mod:`~pyg_schnet.data.statistics`), the batch loader
(:mod:`~pyg_schnet.data.loader`) and molecule files and SMILES
(:mod:`~pyg_schnet.data.molio`). It imports the ground modules and
:mod:`pyg_schnet.nn` only.

:class:`QM9` is imported on first use (:func:`__getattr__`): it is a PyG
dataset, and importing PyG takes seconds that a prediction does not need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyg_schnet.data.splits import (
    Split,
    get_split,
    load_split,
    nested_split,
    nested_split_name,
    random_split,
    split_from_name,
)
from pyg_schnet.data.statistics import Statistics, compute_statistics, readout_for
from pyg_schnet.data.targets import (
    ELEMENTS,
    EXTENSIVE,
    NUM_MOLECULES,
    SOURCES,
    TARGETS,
    UNITS,
    atomref,
    default_root,
    target_index,
)

if TYPE_CHECKING:
    from pyg_schnet.data.qm9 import QM9

__all__ = [
    "ELEMENTS",
    "EXTENSIVE",
    "NUM_MOLECULES",
    "SOURCES",
    "TARGETS",
    "UNITS",
    "QM9",
    "atomref",
    "default_root",
    "target_index",
    "Split",
    "get_split",
    "load_split",
    "nested_split",
    "nested_split_name",
    "split_from_name",
    "random_split",
    "Statistics",
    "compute_statistics",
    "readout_for",
]


def __getattr__(name: str) -> Any:
    """:class:`~pyg_schnet.data.qm9.QM9`, imported on first use."""
    if name == "QM9":
        from pyg_schnet.data.qm9 import QM9

        return QM9
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
