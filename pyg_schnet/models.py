"""The model registry: every model called as ``model(z, pos, batch) ->
[num_graphs, 1]`` with the same standardisation and readout
(:class:`~pyg_schnet.atomistic.AtomisticModel`), chosen by name at the config
boundary (``model: painn``), so train, evaluate, predict, the benchmark and
the study runner work for each unchanged.

* ``schnet``: this project's SchNet with a swappable filter
  (:func:`pyg_schnet.model.build_model`);
* ``pyg_schnet_ref``: PyG's own SchNet (:class:`~pyg_schnet.pyg_models.PyGSchNetRef`);
* ``visnet``: PyG's ViSNet;
* ``dimenet++``: PyG's DimeNet++;
* ``painn``: PaiNN, written here (:class:`~pyg_schnet.painn.PaiNN`).
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, List, Tuple

from .atomistic import AtomisticModel
from .errors import UserError
from .model import SchNet, build_model
from .options import constructor_option_help, constructor_option_types, constructor_options
from .painn import PaiNN
from .pyg_models import DimeNetPlusPlusModel, PyGSchNetRef, ViSNetModel

#: Name -> model class. ``schnet`` is built through :func:`build_model`
#: (its filter is a component chosen by name too).
MODELS: Dict[str, type] = {
    "schnet": SchNet,
    "pyg_schnet_ref": PyGSchNetRef,
    "visnet": ViSNetModel,
    "dimenet++": DimeNetPlusPlusModel,
    "painn": PaiNN,
}

#: What every model takes from the config: the shared architecture settings.
SHARED_KEYS = ("hidden_channels", "num_interactions", "cutoff", "max_num_neighbors",
               "readout", "mean", "std", "atomref", "max_z")


def _from_config(name: str) -> Tuple[str, ...]:
    """The arguments the config gives model ``name`` through its own keys (the
    rest are the model's options, ``model: {name: ..., OPTION: VALUE}``)."""
    return SHARED_KEYS + (("num_filters", "num_gaussians") if name == "pyg_schnet_ref" else ())


def model_options(name: str) -> Dict[str, inspect.Parameter]:
    """The options of model ``name`` (``schnet`` has none: its settings are the
    config's own keys and its filter's)."""
    if name == "schnet":
        return {}
    return constructor_options(model_class(name), _from_config(name))


def model_option_types(name: str) -> Dict[str, Any]:
    return {} if name == "schnet" else constructor_option_types(model_class(name),
                                                                _from_config(name))


def model_option_help(name: str) -> Dict[str, str]:
    return {} if name == "schnet" else constructor_option_help(model_class(name),
                                                               _from_config(name))


def check_model_options(name: str, options: Dict[str, Any]) -> None:
    """A :class:`UserError` listing the valid options when ``options`` holds a
    key model ``name`` does not take."""
    valid = model_options(name)
    unknown = [k for k in options if k not in valid]
    if unknown:
        raise UserError(f"model {name!r} has no option {unknown[0]!r}; its options: "
                        f"{', '.join(valid) or 'none'}")


def model_class(name: str) -> type:
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name]


def model_arguments(name: str) -> List[str]:
    """The constructor arguments of a registered model (``schnet``: those of
    :func:`build_model` and :class:`SchNet`)."""
    if name == "schnet":
        from .model import MODEL_KEYS
        return ["filter", "num_filters", "cutoff", "fast", *MODEL_KEYS]
    return [p for p in inspect.signature(model_class(name)).parameters]


def build(model: str = "schnet", **kwargs: Any) -> AtomisticModel:
    """Build a registered model by name from its hyperparameters
    (``build(**m.hparams())`` rebuilds ``m``); an argument the model does not
    take is an error naming the ones it does."""
    cls = model_class(model)
    if model == "schnet":
        return build_model(**kwargs)
    taken = model_arguments(model)
    unknown = [k for k in kwargs if k not in taken]
    if unknown:
        raise UserError(f"model {model!r} takes no argument {unknown[0]!r}; it takes: "
                        f"{', '.join(taken)}")
    make: Callable[..., AtomisticModel] = cls
    return make(**kwargs)
