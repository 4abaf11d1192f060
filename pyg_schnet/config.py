"""Training configuration: one typed dataclass, read from YAML and flags.

Every field is accepted as ``--key value`` or ``--key=value`` with dashes or
underscores (W&B sweep agents pass ``--batch_size=100``).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any, Dict, List, Optional, Sequence, Union, get_type_hints

import yaml

from .errors import UserError, read_text


@dataclass
class Config:
    """Resolved settings of one training run (saved as ``config.yaml``)."""
    # model
    filter: str = "gaussian"
    hidden_channels: int = 128
    num_filters: int = 128
    num_interactions: int = 6
    cutoff: float = 10.0
    max_num_neighbors: int = 32
    num_gaussians: int = 50  # gaussian filter
    num_bins: int = 50  # conv1d filter
    conv_channels: int = 8  # conv1d filter
    kernel_size: int = 5  # conv1d filter
    distance_bin_width: float = 0.0  # radial filters: quantise distances to bins (Å), 0 = off
    shared_filters: bool = False
    fast: bool = False  # radial filters by table lookup, compiled pair sums (pyg_schnet.fast)
    # data
    target: str = "U0"
    root: str = "data/qm9"
    source: str = "qm9pack"
    max_molecules: Optional[int] = None
    train_size: float = 0.8  # count (>= 1) or fraction (< 1)
    val_size: float = 0.1
    test_size: Optional[float] = None  # None: the rest
    split_file: Optional[str] = None  # reuse a split (ours or schnetpack's)
    # optimisation
    batch_size: int = 100
    lr: float = 5e-4
    epochs: int = 100
    time_budget: Optional[float] = None  # seconds of training, wall clock
    patience: int = 25  # epochs without validation improvement
    lr_patience: int = 5
    lr_factor: float = 0.5
    min_lr: float = 1e-6
    max_lr_decays: Optional[int] = None  # stop once the learning rate has been decayed this often
    rotation_augmentation: bool = False  # rotate every training molecule randomly at every step
    seed: int = 0
    num_threads: Optional[int] = None
    # bookkeeping
    out: str = "runs/run"
    wandb: str = "disabled"  # online | offline | disabled
    wandb_project: str = "pyg_schnet"
    device: str = "cpu"

    def validate(self) -> "Config":
        from .data import SOURCES, target_index
        from .filters import FILTERS

        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise UserError(msg)

        need(self.filter in FILTERS, f"unknown filter {self.filter!r}; choose one of: "
                                     f"{', '.join(FILTERS)}")
        from .data import TARGETS
        self.target = TARGETS[target_index(self.target)]
        need(self.source in SOURCES, f"unknown source {self.source!r}; choose one of: "
                                     f"{', '.join(SOURCES)}")
        need(math.isfinite(self.cutoff) and self.cutoff > 0,
             f"cutoff must be a positive number of Å, got {self.cutoff}")
        for name in ("hidden_channels", "num_filters", "num_interactions", "batch_size",
                     "epochs", "num_gaussians", "num_bins", "conv_channels", "kernel_size",
                     "max_num_neighbors"):
            need(getattr(self, name) >= 1, f"{name} must be at least 1, got {getattr(self, name)}")
        need(self.hidden_channels >= 2, "hidden_channels must be at least 2")
        need(self.num_gaussians >= 2 and self.num_bins >= 2, "need at least 2 gaussians/bins")
        need(math.isfinite(self.lr) and self.lr > 0, f"lr must be positive, got {self.lr}")
        need(self.patience >= 1 and self.lr_patience >= 0, "patience must be at least 1")
        need(0 < self.lr_factor < 1, f"lr_factor must be in (0, 1), got {self.lr_factor}")
        need(self.max_molecules is None or self.max_molecules >= 3,
             f"max_molecules must be at least 3, got {self.max_molecules}")
        need(self.time_budget is None or self.time_budget > 0, "time_budget must be positive")
        need(self.train_size > 0 and self.val_size > 0, "train_size and val_size must be positive")
        need(self.test_size is None or self.test_size >= 0, "test_size must be non-negative")
        need(self.wandb in ("online", "offline", "disabled"),
             f"wandb must be online, offline or disabled, got {self.wandb!r}")
        need(self.device == "cpu" or self.device.startswith("cuda"),
             f"device must be cpu or cuda, got {self.device!r}")
        need(self.kernel_size % 2 == 1, f"kernel_size must be odd, got {self.kernel_size}")
        need(self.num_threads is None or self.num_threads >= 1, "num_threads must be at least 1")
        need(0.0 <= self.distance_bin_width < self.cutoff,
             f"distance_bin_width must be 0 (off) or between 0 and the cutoff, "
             f"got {self.distance_bin_width}")
        need(self.max_lr_decays is None or self.max_lr_decays >= 1,
             f"max_lr_decays must be at least 1, got {self.max_lr_decays}")
        return self

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def model_hparams(self) -> Dict[str, Any]:
        from .data import EXTENSIVE
        return dict(filter=self.filter, hidden_channels=self.hidden_channels,
                    num_filters=self.num_filters, num_interactions=self.num_interactions,
                    cutoff=self.cutoff, max_num_neighbors=self.max_num_neighbors,
                    num_gaussians=self.num_gaussians, num_bins=self.num_bins,
                    conv_channels=self.conv_channels, kernel_size=self.kernel_size,
                    distance_bin_width=self.distance_bin_width,
                    shared_filters=self.shared_filters, fast=self.fast,
                    readout="add" if self.target in EXTENSIVE else "mean")


FIELD_TYPES = get_type_hints(Config)
KEYS: List[str] = [f.name for f in fields(Config)]


def _convert(key: str, value: Any) -> Any:
    """Convert a YAML or command-line value to the field's type."""
    tp = FIELD_TYPES[key]
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
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or float(value) != int(value):
            raise UserError(f"{key} must be an integer, got {value!r}")
        return int(value)
    if base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(float(value)):
            raise UserError(f"{key} must be a finite number, got {value!r}")
        return float(value)
    if base is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise UserError(f"{key} must be a string, got {value!r}")
        return str(value)
    return value  # pragma: no cover


def _check_key(key: str) -> str:
    norm = key.replace("-", "_")
    if norm not in KEYS:
        raise UserError(f"unknown config key {key!r}; valid keys: {', '.join(KEYS)}")
    return norm


def read_yaml(path: str) -> Dict[str, Any]:
    """Read a YAML mapping with clear errors for missing, unreadable or
    malformed files."""
    text = read_text(path, "config file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"config file {path} is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of keys to values")
    return data


def parse_overrides(args: Sequence[str]) -> Dict[str, str]:
    """``["--batch-size", "100", "--lr=1e-3"]`` -> ``{"batch_size": "100", "lr": "1e-3"}``."""
    out: Dict[str, str] = {}
    i = 0
    args = list(args)
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or arg == "--":
            raise UserError(f"unexpected argument {arg!r}; use --key value or --key=value")
        body = arg[2:]
        if "=" in body:
            key, value = body.split("=", 1)
            i += 1
        else:
            key = body
            if i + 1 >= len(args):
                raise UserError(f"flag --{key} needs a value")
            value = args[i + 1]
            i += 2
        out[_check_key(key)] = value
    return out


def load_config(path: Optional[str] = None, overrides: Optional[Dict[str, Any]] = None) -> Config:
    """Defaults, then the YAML file, then overrides; validated."""
    values: Dict[str, Any] = {}
    if path is not None:
        for key, value in read_yaml(path).items():
            values[_check_key(str(key))] = value
    for key, value in (overrides or {}).items():
        values[_check_key(key)] = value
    cfg = Config(**{k: _convert(k, v) for k, v in values.items()}).validate()
    cfg.out = resolve_out(cfg)
    return cfg


def resolve_out(cfg: Config) -> str:
    """Fill an ``out`` template such as ``runs/{filter}_seed{seed}_{timestamp}``
    (every config key, plus ``timestamp``), so sweep runs get their own
    directories; the resolved path is what ``config.yaml`` records."""
    import time
    if "{" not in cfg.out:
        return cfg.out
    try:
        return cfg.out.format(**cfg.to_dict(), timestamp=time.strftime("%Y%m%d-%H%M%S"))
    except (KeyError, IndexError, ValueError) as exc:
        raise UserError(f"out template {cfg.out!r} is invalid ({exc}); use config keys "
                        f"in braces, e.g. runs/{{filter}}_seed{{seed}}") from None


def save_config(cfg: Config, path: str) -> None:
    from .io import write_text
    write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
