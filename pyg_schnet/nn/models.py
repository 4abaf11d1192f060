"""The model registry: every model called as ``model(z, pos, batch) ->
[num_graphs, 1]`` with the same standardisation and readout
(:class:`~pyg_schnet.nn.atomistic.AtomisticModel`), chosen by name at the config
boundary (``model: painn``), so train, evaluate, predict, the benchmark and
the study runner work for each unchanged.

* ``schnet``: this project's SchNet with a swappable filter
  (:func:`pyg_schnet.nn.schnet.build_model`);
* ``pyg_schnet_ref``: PyG's own SchNet (:class:`~pyg_schnet.nn.pyg.PyGSchNetRef`);
* ``visnet``: PyG's ViSNet;
* ``dimenet++``: PyG's DimeNet++;
* ``painn``: PaiNN, written here (:class:`~pyg_schnet.nn.painn.PaiNN`).

The models built on PyG (all but ``schnet``) are registered by
``"module:Class"`` and imported when first used: loading and running a
SchNet (``predict --model qm9-U0``) does not import PyG, which takes seconds
(it imports ``torch._dynamo``).
"""

from __future__ import annotations

from typing import Any

from pyg_schnet.nn.atomistic import AtomisticModel
from pyg_schnet.nn.schnet import SchNet, build_model
from pyg_schnet.registry import Registry

#: What every model takes from the config: the shared architecture settings.
SHARED_KEYS = (
    "hidden_channels",
    "num_interactions",
    "cutoff",
    "max_num_neighbors",
    "readout",
    "mean",
    "std",
    "atomref",
    "max_z",
)

#: Name -> model. Each entry declares the config keys it takes beyond the
#: shared ones; its other constructor arguments are its options
#: (``model: {name: ..., OPTION: ...}``). ``schnet`` is built by
#: :func:`~pyg_schnet.nn.schnet.build_model` (its filter is a registered
#: component too) and has no options of its own.
MODELS = Registry("model", given=SHARED_KEYS)
MODELS.register(
    SchNet.name,
    SchNet,
    builder=build_model,
    has_options=False,
    config_keys={
        "filter": "filter",
        "num_filters": "num_filters",
        "shared_filters": "shared_filters",
        "fast": "fast",
    },
)
MODELS.register(
    "pyg_schnet_ref",
    "pyg_schnet.nn.pyg:PyGSchNetRef",
    given=("num_filters", "num_gaussians"),
    config_keys={"num_filters": "num_filters", "filter.num_gaussians": "num_gaussians"},
)
MODELS.register("visnet", "pyg_schnet.nn.pyg:ViSNetModel")
MODELS.register("dimenet++", "pyg_schnet.nn.pyg:DimeNetPlusPlusModel")
MODELS.register("painn", "pyg_schnet.nn.painn:PaiNN", given=("fast",), config_keys={"fast": "fast"})


def build(model: str = SchNet.name, **kwargs: Any) -> AtomisticModel:
    """Build a registered model by name from its hyperparameters
    (``build(**m.hparams())`` rebuilds ``m``); an argument the model does not
    take is an error naming the ones it does."""
    out: AtomisticModel = MODELS.build(model, **kwargs)
    return out
