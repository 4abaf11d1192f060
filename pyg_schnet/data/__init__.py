"""The data layer: QM9 (:mod:`~pyg_schnet.data.qm9`), splits
(:mod:`~pyg_schnet.data.splits`), target statistics
(:mod:`~pyg_schnet.data.statistics`), the batch loader
(:mod:`~pyg_schnet.data.loader`) and molecule files and SMILES
(:mod:`~pyg_schnet.data.molio`). It imports the ground modules and
:mod:`pyg_schnet.nn` only."""

from pyg_schnet.data.qm9 import (
    ELEMENTS,
    EXTENSIVE,
    NUM_MOLECULES,
    QM9,
    SOURCES,
    TARGETS,
    UNITS,
    atomref,
    default_root,
    target_index,
)
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
