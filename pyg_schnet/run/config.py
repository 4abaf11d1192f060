"""Training configuration: one typed dataclass, read from YAML and flags.

Every field is a flag ``--key value`` or ``--key=value``, with dashes or
underscores (W&B sweep agents pass ``--batch_size=100``), generated from the
dataclass with its type, default and help. The filter's own settings nest
under it: ``filter: {name: conv1d, num_bins: 50}`` in a file,
``--filter conv1d --filter.num_bins 50`` as flags, or a sweep agent's
``--filter="{'name': 'conv1d', 'num_bins': 50}"``; the options come from the
registered filter's constructor (:func:`pyg_schnet.nn.filters.filter_options`).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import os.path as osp
import string
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional, Tuple, Union, get_type_hints

import torch
import yaml

from pyg_schnet.data import SOURCES, TARGETS, default_root, readout_for, target_index
from pyg_schnet.errors import UserError, check_text, read_text
from pyg_schnet.io import write_text
from pyg_schnet.nn.filters import (
    FILTERS,
)
from pyg_schnet.nn.models import (
    MODELS,
    build,
)
from pyg_schnet.nn.schnet import CFConv
from pyg_schnet.registry import Entry, Registry
from pyg_schnet.resources import check_memory
from pyg_schnet.run.distributed import default_processes
from pyg_schnet.run.inference import check_device_name
from pyg_schnet.run.recipe import HORIZONS, SCHEDULES


#: The largest seed numpy's and torch's generators take (2**32 - 1).
MAX_SEED = 2**32 - 1


def _field(default: Any, help: str) -> Any:
    """A config field with its help text (shown by ``pyg-schnet train --help``)."""
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata={"help": help})
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class Config:
    """Resolved settings of one training run (saved as ``config.yaml``)."""

    # model
    model: Dict[str, Any] = _field(
        {"name": "schnet"},
        "model: a registered name (schnet: this project's, with --filter; "
        "pyg_schnet_ref: PyG's SchNet; visnet; dimenet++; painn), or a mapping {name: NAME, "
        "OPTION: VALUE, ...} with the model's own options (see --model.OPTION)",
    )
    filter: Dict[str, Any] = _field(
        {"name": "gaussian"},
        "edge filter: a registered name, or a mapping {name: NAME, "
        "OPTION: VALUE, ...} with the filter's own options (see --filter.OPTION)",
    )
    hidden_channels: int = _field(128, "atom feature size")
    num_filters: int = _field(128, "filter width")
    num_interactions: int = _field(6, "interaction blocks")
    cutoff: float = _field(10.0, "cutoff in Å: the radius graph, the filter's basis and envelope")
    max_num_neighbors: int = _field(32, "neighbour cap of the radius graph")
    shared_filters: bool = _field(False, "one filter network shared by all blocks")
    fast: Optional[bool] = _field(
        None,
        "radial filters by table lookup and compiled pair sums "
        "(pyg_schnet.nn.fast; within 1e-3 of the exact model); none = on for the "
        "models that have it (schnet, painn), false = the exact reference",
    )
    # data
    target: str = _field("U0", "QM9 target (name or index of PyG's 19)")
    root: Optional[str] = _field(
        None,
        "data root, built there on first use (none = "
        "$PYG_SCHNET_DATA, else ~/.cache/pyg_schnet/qm9); "
        "relative in a config file = relative to that file",
    )
    source: str = _field("qm9pack", "where QM9 comes from: qm9pack (offline) or pyg (download)")
    max_molecules: Optional[int] = _field(
        None, "use a seeded random subset of N molecules (the same N, the same molecules)"
    )
    train_size: float = _field(0.8, "training molecules: a count (>= 1) or a fraction (< 1)")
    val_size: float = _field(0.1, "validation molecules: a count or a fraction")
    test_size: Optional[float] = _field(
        None, "test molecules: a count or a fraction; none = the rest"
    )
    split_file: Optional[str] = _field(
        None,
        "reuse a split file (ours or schnetpack's); "
        "relative in a config file = relative to that "
        "file",
    )
    # optimisation
    batch_size: int = _field(100, "molecules per optimizer step, shared by the processes")
    lr: float = _field(5e-4, "Adam learning rate")
    epochs: int = _field(100, "epoch cap")
    time_budget: Optional[float] = _field(None, "seconds of training, wall clock")
    patience: Optional[int] = _field(
        None,
        "stop after this many epochs without validation improvement (none: no early "
        "stop; a cosine run stopped early ends above its floor)",
    )
    lr_patience: int = _field(5, "epochs without improvement before the learning rate decays")
    lr_factor: float = _field(0.5, "learning-rate decay factor")
    min_lr: float = _field(1e-6, "floor of the learning rate")
    max_lr_decays: Optional[int] = _field(
        None, "stop once the learning rate has been decayed this often"
    )
    schedule: str = _field(
        "cosine",
        "learning-rate schedule: plateau (decay by lr_factor after "
        "lr_patience flat epochs) or cosine (linear warmup, then "
        "cosine decay to min_lr over the horizon)",
    )
    horizon: str = _field(
        "epochs",
        "what the cosine schedule anneals over and what ends the run: "
        "epochs (the epoch cap), steps (max_steps) or seconds "
        "(time_budget)",
    )
    warmup: float = _field(0.02, "fraction of the cosine schedule's horizon spent in linear warmup")
    max_steps: Optional[int] = _field(None, "optimizer-step cap")
    ema_decay: Optional[float] = _field(
        0.999,
        "decay of an exponential moving average of the "
        "weights, which validation, best.pt and the "
        "exported model use (none: off)",
    )
    rotation_augmentation: bool = _field(
        False, "rotate every training molecule randomly at every step (seeded)"
    )
    seed: int = _field(0, "seed of the split, the initialisation and the batch order")
    num_threads: Optional[int] = _field(
        None, "torch threads per process (none: the measured rule, pyg_schnet.run.throughput)"
    )
    processes: Optional[int] = _field(
        None,
        "data-parallel processes that share each batch, started by pyg-schnet train "
        "(none: one per CPU this process may use, at most 8 and at least 25 molecules "
        "each; 1 on a GPU); the train() function runs in its caller's process",
    )
    # bookkeeping
    out: str = _field(
        "runs/run",
        "run directory; a template such as "
        "runs/{filter}_seed{seed}_{timestamp} is filled from the config",
    )
    wandb: str = _field("disabled", "Weights & Biases: online, offline or disabled")
    wandb_project: str = _field("pyg_schnet", "W&B project")
    wandb_entity: Optional[str] = _field(
        None, "W&B entity: the team or user the run belongs to (none: your default entity)"
    )
    wandb_name: Optional[str] = _field(
        None,
        "W&B run name (none: the run directory's name; a study names its runs after the "
        "variant, target, size and seed, a sweep after the sweep and its count)",
    )
    wandb_group: Optional[str] = _field(
        None,
        "W&B group (none: no group; a study's runs: the study's name, a sweep's: "
        "the sweep's name and local sweep id)",
    )
    wandb_tags: List[str] = _field(
        [], "W&B tags: a list in a config file, comma-separated as a flag"
    )
    wandb_job_type: str = _field(
        "train", "W&B job type (a study's runs: their variant, so W&B groups them by it)"
    )
    device: str = _field("cpu", "cpu or cuda[:N]")

    @property
    def filter_name(self) -> str:
        return str(self.filter["name"])

    @property
    def model_name(self) -> str:
        return str(self.model["name"])

    @property
    def label(self) -> str:
        """What a run is called in output lines and plot titles: the filter
        for this project's SchNet, else the model."""
        return self.filter_name if self.model_entry.takes("filter") else self.model_name

    @property
    def model_entry(self) -> Entry:
        """The model's registry entry (which config keys it takes)."""
        return MODELS.entry(self.model_name)

    def resolved_processes(self) -> int:
        """Data-parallel processes: as set, else
        :func:`~pyg_schnet.run.distributed.default_processes` (one per usable
        CPU, capped; one on a GPU)."""
        if self.processes is not None:
            return self.processes
        return default_processes(self.batch_size, self.device)

    def validate(self) -> "Config":
        """Check the settings, resolve the filter's options (defaults filled in)
        and build the model once: the model's and filter's constructors are the
        one place their settings are checked."""

        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise UserError(msg)

        self.filter = resolve_filter(self.filter)
        self.model = resolve_model(self.model)
        self._check_model()
        self.root = osp.abspath(osp.expanduser(self.root)) if self.root else default_root()
        if self.split_file:
            self.split_file = osp.abspath(osp.expanduser(self.split_file))
        self.target = TARGETS[target_index(self.target)]
        need(
            self.source in SOURCES,
            f"unknown source {self.source!r}; choose one of: {', '.join(SOURCES)}",
        )
        need(
            math.isfinite(self.cutoff) and self.cutoff > 0,
            f"cutoff must be a positive number of Å, got {self.cutoff}",
        )
        for name in ("batch_size", "epochs"):
            need(getattr(self, name) >= 1, f"{name} must be at least 1, got {getattr(self, name)}")
        need(math.isfinite(self.lr) and self.lr > 0, f"lr must be positive, got {self.lr}")
        need(
            (self.patience is None or self.patience >= 1) and self.lr_patience >= 0,
            "patience must be at least 1 (or none), lr_patience at least 0",
        )
        need(0 < self.lr_factor < 1, f"lr_factor must be in (0, 1), got {self.lr_factor}")
        need(
            self.max_molecules is None or self.max_molecules >= 3,
            f"max_molecules must be at least 3, got {self.max_molecules}",
        )
        need(self.time_budget is None or self.time_budget > 0, "time_budget must be positive")
        need(self.train_size > 0 and self.val_size > 0, "train_size and val_size must be positive")
        need(self.test_size is None or self.test_size >= 0, "test_size must be non-negative")
        need(
            self.wandb in ("online", "offline", "disabled"),
            f"wandb must be online, offline or disabled, got {self.wandb!r}",
        )
        check_device_name(self.device)
        bad_tag = next((t for t in self.wandb_tags if not 1 <= len(t) <= 64), None)
        need(bad_tag is None, f"a W&B tag has 1 to 64 characters, got {bad_tag!r}")
        need(
            0 <= self.seed <= MAX_SEED,
            f"seed must be an integer from 0 to {MAX_SEED} (2**32 - 1), got {self.seed}",
        )
        check_text("out", self.out)
        need(self.num_threads is None or self.num_threads >= 1, "num_threads must be at least 1")
        need(self.processes is None or self.processes >= 1, "processes must be at least 1")
        need(
            self.batch_size >= self.resolved_processes(),
            f"batch_size ({self.batch_size}) must be at least the number of processes "
            f"({self.resolved_processes()}), which share each batch",
        )
        need(  # a fraction is checked by the trainer, which knows the data set's size
            self.processes is None or self.train_size < 1 or self.train_size >= self.processes,
            f"train_size ({self.train_size:g}) must be at least the number of processes "
            f"({self.processes}): each needs a training molecule per step",
        )
        need(
            self.max_lr_decays is None or self.max_lr_decays >= 1,
            f"max_lr_decays must be at least 1, got {self.max_lr_decays}",
        )
        self._check_recipe(need)
        self._build_checked()
        return self

    def _build_checked(self) -> None:
        """Build the model, on the ``meta`` device where its constructors
        allow (no memory, no weight initialisation: seconds for DimeNet++):
        the constructors are the one place the model's and filter's settings
        are checked. A model or fast-mode filter table that needs more memory
        than there is is refused with the size, instead of failing inside an
        allocation. A constructor or table that needs real values (PyG's
        SchNet reads a tensor while it is built) gets a real build. The sizes
        are measured once per process for each model's settings (a study's
        plan validates hundreds of configs that build a few models)."""
        hparams = self.model_hparams()
        key = json.dumps(hparams, sort_keys=True, default=repr)
        if key in _MODEL_SIZES:
            parameters, table = _MODEL_SIZES[key]
            _check_parameter_memory(parameters)
            _check_table_memory(table)
        else:
            _MODEL_SIZES[key] = _measure_model(hparams)

    def _check_recipe(self, need: Any) -> None:
        """The schedule, its horizon and the weight average."""
        need(
            self.schedule in SCHEDULES,
            f"unknown schedule {self.schedule!r}; choose one of: {', '.join(SCHEDULES)}",
        )
        need(
            self.horizon in HORIZONS,
            f"unknown horizon {self.horizon!r}; choose one of: {', '.join(HORIZONS)}",
        )
        need(0 <= self.warmup < 1, f"warmup must be a fraction in [0, 1), got {self.warmup}")
        need(
            self.max_steps is None or self.max_steps >= 1,
            f"max_steps must be at least 1, got {self.max_steps}",
        )
        need(
            self.min_lr >= 0 and math.isfinite(self.min_lr),
            f"min_lr must be a non-negative number, got {self.min_lr}",
        )
        if self.schedule == "cosine":
            key = HORIZONS[self.horizon]
            need(
                getattr(self, key) is not None,
                f"the cosine schedule's horizon is {self.horizon}, so {key} must be set",
            )
            need(self.min_lr < self.lr, f"min_lr ({self.min_lr}) must be below lr ({self.lr})")
        need(
            self.ema_decay is None or 0 < self.ema_decay < 1,
            f"ema_decay must be in (0, 1) or none, got {self.ema_decay}",
        )

    def _check_model(self) -> None:
        """The model is registered, and the settings of :data:`MODEL_SPECIFIC_KEYS`
        that it does not take (by its registry entry) are left at their
        defaults: a changed one would silently do nothing (``fast`` may also
        be false; left unset it becomes true where the model has a fast mode).
        A model may take one option of the filter (``filter.num_gaussians``)
        and not the rest."""
        entry, defaults = self.model_entry, Config()
        takers = {
            key: [n for n in MODELS if MODELS.entry(n).takes(key)] for key in MODEL_SPECIFIC_KEYS
        }
        if self.fast is None:  # the default: the fast mode where the model has one
            self.fast = entry.takes("fast")
        for key in MODEL_SPECIFIC_KEYS:
            if entry.takes(key) or key == "filter":
                continue
            if key == "fast" and not self.fast:
                continue
            if getattr(self, key) != getattr(defaults, key):
                raise UserError(
                    f"{key} applies to model {' and '.join(takers[key])} only, not {entry.name!r}"
                )
        if entry.takes("filter"):
            return
        taken = [k.split(".", 1)[1] for k in entry.config_keys if k.startswith("filter.")]
        default = resolve_filter(defaults.filter)
        if self.filter_name != default["name"] or any(
            v != default[k] for k, v in self.filter.items() if k not in taken
        ):
            allowed = f" (it takes the filter's {', '.join(taken)})" if taken else ""
            raise UserError(
                f"filter settings apply to model {' and '.join(takers['filter'])} "
                f"only, not {entry.name!r}{allowed}"
            )

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def model_hparams(self) -> Dict[str, Any]:
        """What :func:`pyg_schnet.nn.models.build` takes (without the
        standardisation, which comes from the data)."""
        options = {k: v for k, v in self.model.items() if k != "name"}
        shared = dict(
            model=self.model_name,
            cutoff=self.cutoff,
            hidden_channels=self.hidden_channels,
            num_interactions=self.num_interactions,
            max_num_neighbors=self.max_num_neighbors,
            readout=readout_for(self.target),
        )
        for key, argument in self.model_entry.config_keys.items():
            shared[argument] = self.value_of(key)
        return dict(shared, **options)

    def value_of(self, key: str) -> Any:
        """A config key's value; ``filter.OPTION`` is an option of the filter
        (the filter's whole setting is a copy)."""
        if key.startswith("filter."):
            return self.filter[key.split(".", 1)[1]]
        value = getattr(self, key)
        return dict(value) if isinstance(value, dict) else value


def _resolve(registry: Registry, spec: Any) -> Dict[str, Any]:
    """A component setting (a name or ``{name: ..., option: value}``) with every
    option of the component, converted to its type, defaults filled in; an
    option it does not take is an error listing those it does."""
    kind = registry.kind
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise UserError(f"{kind} must be a name or a mapping with a name, got {spec!r}")
    name = spec["name"]
    registry.entry(name)
    options = {k: v for k, v in spec.items() if k != "name"}
    registry.check_options(name, options)
    types = registry.option_types(name)
    out: Dict[str, Any] = {"name": name}
    for key, param in registry.options(name).items():
        if key in options:
            out[key] = _convert(f"{kind}.{key}", options[key], types[key])
        elif param.default is inspect.Parameter.empty:
            raise UserError(f"{kind} {name!r} needs its option {key!r}")
        else:
            out[key] = param.default
    return out


def resolve_filter(spec: Any) -> Dict[str, Any]:
    """The filter setting resolved (see :func:`_resolve`)."""
    return _resolve(FILTERS, spec)


def resolve_model(spec: Any) -> Dict[str, Any]:
    """The model setting resolved (see :func:`_resolve`)."""
    return _resolve(MODELS, spec)


#: Config keys that only some models take (their registry entries say which):
#: for a model that does not take one, it must keep its default.
MODEL_SPECIFIC_KEYS = ("filter", "fast", "shared_filters")
FIELD_TYPES = get_type_hints(Config)
KEYS: List[str] = [f.name for f in fields(Config)]
#: Old top-level spellings of filter options (configs, run directories, sweeps
#: and flags from before the nested ``filter``): each one still sets that
#: option of whichever filter takes it and, as it always did, nothing for a
#: filter that does not (old ``config.yaml`` files list all of them).
LEGACY_FILTER_KEYS = (
    "num_gaussians",
    "num_bins",
    "conv_channels",
    "kernel_size",
    "distance_bin_width",
)


def _convert(key: str, value: Any, tp: Any = None) -> Any:
    """Convert a YAML or command-line value to the type ``tp`` (by default
    the type of config field ``key``)."""
    tp = FIELD_TYPES[key] if tp is None else tp
    if getattr(tp, "__origin__", None) is list:  # a list of strings: YAML list or "a,b"
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list) or not all(
            isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in items
        ):
            raise UserError(f"{key} must be a list of strings, got {value!r}")
        return [str(v).strip() for v in items if str(v).strip()]
    optional = getattr(tp, "__origin__", None) is Union and type(None) in tp.__args__
    base = [a for a in tp.__args__ if a is not type(None)][0] if optional else tp
    if isinstance(value, str):
        text = value.strip()
        if optional and text.lower() in ("none", "null", ""):
            return None
        if base is bool:
            if text.lower() in ("true", "1", "yes", "on"):
                return True
            if text.lower() in ("false", "0", "no", "off"):
                return False
            raise UserError(f"{key} must be true or false, got {value!r}")
        if base in (int, float):
            try:
                num = float(text)
            except ValueError:
                raise UserError(f"{key} must be a number, got {value!r}") from None
            value = num
    if value is None:
        if optional:
            return None
        raise UserError(f"{key} may not be empty")
    if base is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"{key} must be true or false, got {value!r}")
    if base is int:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or float(value) != int(value)
        ):
            raise UserError(f"{key} must be an integer, got {value!r}")
        return int(value)
    if base is float:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(float(value))
        ):
            raise UserError(f"{key} must be a finite number, got {value!r}")
        return float(value)
    if base is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise UserError(f"{key} must be a string, got {value!r}")
        return str(value)
    return value


def unknown_key(key: str) -> UserError:
    """The error for a key (or flag) that is no config key."""
    key = key.lstrip("-").split("=", 1)[0]
    if key.replace("-", "_").startswith("filter."):
        known = dict.fromkeys(k for name in FILTERS for k in FILTERS.options(name))
        return UserError(
            f"no registered filter has the option {key[len('filter.') :]!r}; "
            f"filter options: {', '.join(known)}"
        )
    if key.replace("-", "_").startswith("model."):
        known = dict.fromkeys(k for name in MODELS for k in MODELS.options(name))
        return UserError(
            f"no registered model has the option {key[len('model.') :]!r}; "
            f"model options: {', '.join(known)}"
        )
    return UserError(
        f"unknown config key {key!r}; valid keys: {', '.join(KEYS)}, filter.OPTION, model.OPTION"
    )


class _Settings:
    """Config values gathered source by source (defaults, file, flags); the
    filter's name and options are gathered apart and resolved at the end,
    when the filter is known."""

    def __init__(self) -> None:
        self.values: Dict[str, Any] = {}
        self.model: Dict[str, Any] = {}  # name and nested options
        self.filter: Dict[str, Any] = {}  # name and nested options
        self.legacy: Dict[str, Any] = {}  # old flat options: for the filter that takes them

    def set(self, key: str, value: Any) -> None:
        norm = str(key).replace("-", "_")
        if norm == "model":
            self.set_model(value)
        elif norm.startswith("model."):
            self.model[norm[len("model.") :]] = value
        elif norm == "filter":
            self.set_filter(value)
        elif norm.startswith("filter."):
            self.set_option(norm[len("filter.") :], value)
        elif norm in LEGACY_FILTER_KEYS:
            self.legacy[norm] = value
            self.filter.pop(norm, None)
        elif norm in KEYS:
            self.values[norm] = value
        else:
            raise unknown_key(str(key))

    def set_model(self, value: Any) -> None:
        if isinstance(value, str) and value.strip().startswith("{"):
            value = _flow_mapping("model", value)  # a sweep agent's nested form
        if isinstance(value, dict):
            self._new_component(self.model, value.get("name"))
            self.model.update({str(k): v for k, v in value.items()})
        elif isinstance(value, str):
            self._new_component(self.model, value)
            self.model["name"] = value
        else:
            raise UserError(f"model must be a name or a mapping, got {value!r}")

    @staticmethod
    def _new_component(current: Dict[str, Any], name: Any) -> None:
        """A source that names another filter (or model) than an earlier
        source did replaces it: the earlier options were that one's."""
        if isinstance(name, str) and "name" in current and current["name"] != name:
            current.clear()

    def set_filter(self, value: Any) -> None:
        if isinstance(value, str) and value.strip().startswith("{"):
            value = _flow_mapping("filter", value)  # a sweep agent's nested form
        if isinstance(value, dict):
            self._new_component(self.filter, value.get("name"))
            for k, v in value.items():
                self.set_option(str(k), v)
        elif isinstance(value, str):
            self._new_component(self.filter, value)
            self.filter["name"] = value
        else:
            raise UserError(f"filter must be a name or a mapping, got {value!r}")

    def set_option(self, key: str, value: Any) -> None:
        if key == "name":
            if not isinstance(value, str):
                raise UserError(f"filter name must be a string, got {value!r}")
        else:
            self.legacy.pop(key, None)
        self.filter[key] = value

    def config(self) -> Config:
        spec = dict(self.filter)
        spec.setdefault("name", Config().filter_name)
        if spec["name"] in _registered():
            taken = FILTERS.options(spec["name"])
            spec.update({k: v for k, v in self.legacy.items() if k in taken and k not in spec})
        values = {k: _convert(k, v) for k, v in self.values.items()}
        model = dict(self.model)
        model.setdefault("name", Config().model_name)
        return Config(model=model, filter=spec, **values).validate()


def _registered() -> List[str]:
    return list(FILTERS)


#: A fast-mode model's filter tables: (bytes of all blocks' tables, rows of the largest).
TableSize = Optional[Tuple[int, int]]
#: Parameters (None: not countable on meta) and filter tables of the models built so far,
#: by their settings: :meth:`Config._build_checked` measures each once per process.
_MODEL_SIZES: Dict[str, Tuple[Optional[int], TableSize]] = {}


def _measure_model(hparams: Dict[str, Any]) -> Tuple[Optional[int], TableSize]:
    """Build the model ``hparams`` describes (on meta where it can be), refusing
    one that does not fit; returns its parameter count and filter tables."""
    n = _parameter_count(hparams)
    if n is not None:
        _check_parameter_memory(n)  # before a full build: a million blocks are refused here
        try:
            with torch.device("meta"):
                table = _table_size(build(**hparams))
            _check_table_memory(table)
            return n, table
        except UserError:
            raise
        except Exception:  # a value read on meta: the real build below decides
            pass
    try:
        model = build(**hparams)
    except (MemoryError, RuntimeError) as exc:
        if isinstance(exc, MemoryError) or "allocate" in str(exc):
            raise UserError(
                "the model does not fit in memory; use fewer features, filters or basis functions"
            ) from None
        raise
    table = _table_size(model)
    _check_table_memory(table)
    return n, table


def _check_parameter_memory(n: Optional[int]) -> None:
    if n is not None:
        check_memory(
            16 * n,  # float32 weights, gradients and Adam's two moments
            f"a model of {n:,} parameters (with gradients and Adam's moments)",
            "use fewer features, filters, blocks or basis functions",
        )


def _table_size(model: Any) -> TableSize:
    """The fast-mode filter tables of ``model``: total bytes and the largest's rows."""
    tables = [
        (m.filter_table, m.filter)
        for m in model.modules()
        if isinstance(m, CFConv) and m.filter_table is not None
    ]
    if not tables:
        return None
    return sum(t.memory(f) for t, f in tables), max(t.rows(f) for t, f in tables)


def _check_table_memory(table: TableSize) -> None:
    """Refuse fast-mode filter tables that need more memory than there is."""
    if table is not None:
        check_memory(
            table[0],
            f"a fast-mode filter table of {table[1]:,} rows in each block",
            "use a wider filter (rbf_width, bin width) or fast: false",
        )


def _parameter_count(hparams: Dict[str, Any]) -> Optional[int]:
    """Parameters of the model ``hparams`` builds, counted on the ``meta``
    device (no memory); with many blocks, from one and two blocks (a block's
    parameters are the same in each), so a million blocks are not built
    either. None where a constructor cannot run on meta."""
    blocks = hparams.get("num_interactions")

    def count(**changes: Any) -> int:
        with torch.device("meta"):
            return sum(p.numel() for p in build(**dict(hparams, **changes)).parameters())

    try:
        if isinstance(blocks, int) and blocks > 2:
            one, two = count(num_interactions=1), count(num_interactions=2)
            return one + (blocks - 1) * (two - one)
        return count()
    except UserError:
        raise
    except Exception:  # e.g. PyG's SchNet calls .item() while it is built
        return None


def _flow_mapping(key: str, text: str) -> Dict[str, Any]:
    """``{name: conv1d, num_bins: 50}`` (YAML, JSON or a Python dict's repr)."""
    try:
        value = load_yaml(text)
    except yaml.YAMLError:
        value = None
    if not isinstance(value, dict):
        raise UserError(
            f"{key} must be a name or a mapping such as {{name: conv1d, "
            f"num_bins: 50}}, got {text!r}"
        )
    return value


#: Largest YAML file read from a user (configs, study specs, sweep files;
#: this project's are below 10 KiB): ``/dev/zero`` ends with an error.
MAX_YAML_BYTES = 1 << 20
#: Most values (scalars, lists, mappings) a user's YAML document may expand
#: to through its aliases: a "billion laughs" file of a few lines expands to
#: billions, and printing or copying that exhausts the memory.
MAX_YAML_VALUES = 100_000


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, line: int) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key, self.line = key, line


class _TooManyValues(yaml.YAMLError):
    """The document expands (through aliases) beyond :data:`MAX_YAML_VALUES`."""


class _TooDeep(yaml.YAMLError):
    """The document nests lists or mappings deeper than the reader recurses."""


class _StrictLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that refuses a mapping with the same key twice (YAML
    itself lets the last one win, silently)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # ``<<: *base``: its keys may be replaced
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise _DuplicateKey(key, key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """Values in the document under ``root`` with every alias expanded,
    counted up to ``limit + 1`` (a collection that holds itself counts as
    more); the count is linear in the document's nodes, not in its expansion."""
    sizes: Dict[int, int] = {}
    open_nodes = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:  # an alias to one of its own ancestors
            return limit + 1
        open_nodes.add(key)
        children: List[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        total = 1
        for child in children:
            total += size(child)
            if total > limit:
                break
        open_nodes.discard(key)
        sizes[key] = min(total, limit + 1)
        return sizes[key]

    return size(root)


def load_yaml(text: str) -> Any:
    """A YAML document read safely: no key twice in a mapping
    (:class:`_StrictLoader`) and at most :data:`MAX_YAML_VALUES` values once
    its aliases are expanded, checked before anything is built. Raises
    :class:`yaml.YAMLError`."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, MAX_YAML_VALUES) > MAX_YAML_VALUES:
            raise _TooManyValues()
        return loader.construct_document(node)
    except RecursionError:
        raise _TooDeep() from None
    finally:
        loader.dispose()


def read_yaml(path: str, what: str = "config file") -> Dict[str, Any]:
    """Read a YAML mapping (:func:`load_yaml`, at most :data:`MAX_YAML_BYTES`)
    with clear errors for missing, unreadable, oversized or malformed files;
    ``what`` names the file in them."""
    text = read_text(path, what, MAX_YAML_BYTES)
    try:
        data = load_yaml(text)
    except _DuplicateKey as exc:
        raise UserError(f"{what} {path} sets {exc.key!r} twice (line {exc.line})") from None
    except _TooManyValues:
        raise UserError(
            f"{what} {path} expands to more than {MAX_YAML_VALUES:,} values through its "
            f"aliases (*name), the limit for a {what}"
        ) from None
    except _TooDeep:
        raise UserError(f"{what} {path} nests its lists or mappings too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{what} {path} is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{what} {path} must hold a mapping of keys to values")
    return data


def config_keys(values: Dict[Any, Any], where: str) -> Dict[str, Any]:
    """A mapping of config keys with dashes spelled as underscores
    (``batch-size`` is ``batch_size``); a key spelled both ways is set twice,
    which is refused as YAML's own duplicates are (``where`` names the
    mapping in the error)."""
    out: Dict[str, Any] = {}
    spelled: Dict[str, str] = {}
    for key, value in values.items():
        norm = str(key).replace("-", "_")
        if norm in out:
            raise UserError(f"{where} sets {norm!r} twice (as {spelled[norm]!r} and {str(key)!r})")
        out[norm], spelled[norm] = value, str(key)
    return out


#: config keys that name files: relative in a config file = relative to it
PATH_KEYS = ("root", "split_file")
#: configs shipped with the package, by name (``--config quickstart``)
CONFIG_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), "configs")


def shipped_configs() -> List[str]:
    return sorted(f[:-5] for f in os.listdir(CONFIG_DIR) if f.endswith(".yaml"))


def find_config(name: str) -> str:
    """A config file's path: ``name`` itself if it is a file, else the shipped
    config of that name (``quickstart`` -> ``pyg_schnet/configs/quickstart.yaml``)."""
    if osp.exists(name) or os.sep in name or name.endswith((".yaml", ".yml")):
        return name
    shipped = osp.join(CONFIG_DIR, f"{name}.yaml")
    if osp.isfile(shipped):
        return shipped
    raise UserError(
        f"config {name!r} is neither a file nor a shipped config; shipped: "
        f"{', '.join(shipped_configs())}"
    )


#: What a run directory's ``config.yaml`` from before a key existed meant by
#: leaving it out: the training recipe of those runs, whatever today's
#: default is (:func:`load_run_config`).
SAVED_RUN_DEFAULTS: Dict[str, Any] = {
    "schedule": "plateau",
    "horizon": "epochs",
    "warmup": 0.02,
    "max_steps": None,
    "ema_decay": None,
}


def load_run_config(path: str) -> Config:
    """A run directory's saved ``config.yaml``: paths as recorded, and the
    keys it lacks (older versions) as :data:`SAVED_RUN_DEFAULTS`."""
    keys = {str(k).replace("-", "_") for k in read_yaml(path)}
    absent = {k: v for k, v in SAVED_RUN_DEFAULTS.items() if k not in keys}
    return load_config(path, absent, paths_relative_to_file=False)


def _names_first(values: Dict[str, Any]) -> List[Tuple[str, Any]]:
    """A source's settings with the filter and model names before their
    options, so ``--filter.num_bins 50 --filter conv1d`` sets conv1d's option
    whatever the order."""
    return sorted(
        ((str(k), v) for k, v in values.items()),
        key=lambda kv: kv[0].replace("-", "_") not in ("filter", "model"),
    )


def load_config(
    path: Optional[str] = None,
    overrides: Optional[Dict[str, Any]] = None,
    paths_relative_to_file: bool = True,
) -> Config:
    """Defaults, then the YAML file (a path or a shipped config's name), then
    overrides (e.g. flags); validated. A relative path in the file (``root``,
    ``split_file``) is relative to the file, so the result does not depend on
    the current directory; one in the overrides is relative to it, as a shell
    user expects. A run directory's ``config.yaml`` records absolute paths;
    older ones recorded them as given, relative to the directory the run
    started in, which ``paths_relative_to_file=False`` keeps."""
    settings = _Settings()
    if path is not None:
        path = find_config(path)
        here = osp.dirname(osp.abspath(path))
        values = config_keys(read_yaml(path), f"config file {path}")
        for key, value in _names_first(values):
            if (
                paths_relative_to_file
                and str(key) in PATH_KEYS
                and isinstance(value, str)
                and value
                and not osp.isabs(osp.expanduser(value))
            ):
                value = osp.normpath(osp.join(here, value))
            settings.set(str(key), value)
    for key, value in _names_first(overrides or {}):
        settings.set(key, value)
    cfg = settings.config()
    cfg.out = resolve_out(cfg)
    return cfg


def resolve_out(cfg: Config) -> str:
    """Fill an ``out`` template such as ``runs/{filter}_seed{seed}_{timestamp}``
    (every config key, the filter's name as ``filter`` and its options by
    their own names, plus ``timestamp`` and ``run_id``: the W&B run id a
    sweep agent gives the run, else a random one, so two agents that start
    the same configuration in the same second never share a directory), so sweep runs get their own
    directories; the resolved path is what ``config.yaml`` records."""
    import time

    if "{" not in cfg.out:
        return cfg.out
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(cfg.out) if f is not None]
        wrong = next((f for f in fields if not f.isidentifier()), None)
        if wrong is not None:
            raise ValueError(f"{{{wrong}}} is not a key")
        fill = dict(cfg.to_dict(), filter=cfg.filter_name, model=cfg.model_name, run_id=run_id())
        fill.update({k: v for k, v in cfg.filter.items() if k != "name" and k not in fill})
        out = cfg.out.format(**fill, timestamp=time.strftime("%Y%m%d-%H%M%S"))
    except (KeyError, IndexError, ValueError) as exc:
        raise UserError(
            f"out template {cfg.out!r} is invalid ({exc}); use config keys "
            f"in braces, e.g. runs/{{filter}}_seed{{seed}}"
        ) from None
    return check_text("out", out)


def run_id() -> str:
    """The W&B run id of this run (``WANDB_RUN_ID``, set by sweep agents and
    ``pyg-schnet sweep``), else a fresh random one."""
    import uuid

    return os.environ.get("WANDB_RUN_ID") or uuid.uuid4().hex[:8]


def save_config(cfg: Config, path: str) -> None:
    write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
