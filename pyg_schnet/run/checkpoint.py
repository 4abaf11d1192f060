"""Checkpoints: the one format every reader uses.

``last.pt`` (weights, optimizer, schedule, run state, every RNG), ``best.pt``
(the best model, its settings and run state, no optimizer state;
:class:`~pyg_schnet.run.trainer.Trainer` writes both), and ``model.pt``
(model-only weights and what rebuilds the model: small enough to commit or
ship). Every write goes through :func:`pyg_schnet.io.atomic_write`; every read
through :func:`load_checkpoint`, which refuses other formats with one line;
weights saved by older versions are upgraded by :func:`upgrade_hparams`.

Every checkpoint holds the configuration it was trained with. A run's
``config.yaml`` that says otherwise (edited by hand) is refused by every
reader of the run's weights (:func:`check_config`): resuming, evaluating,
predicting, exporting. The weights are what the checkpoint's settings made,
and neither source may silently win: using the edited file would evaluate a
U0 model against gap labels; using the checkpoint's settings behind an edited
file would leave the file wrong about the run. The message names the keys.
"""

from __future__ import annotations

import os.path as osp
from typing import Any, Callable, Dict, Mapping, Optional

import torch

from pyg_schnet.data import TARGETS, target_index
from pyg_schnet.errors import UserError
from pyg_schnet.io import save_torch
from pyg_schnet.nn.atomistic import AtomisticModel
from pyg_schnet.nn.filters import FILTERS
from pyg_schnet.nn.models import build
from pyg_schnet.run.config import LEGACY_FILTER_KEYS, SAVED_RUN_DEFAULTS, Config, load_config
from pyg_schnet.run.rundir import RunDir, config_differences

#: Version of the checkpoint and run-directory format; another version is refused.
RUN_FORMAT = 1
#: What a training checkpoint (``last.pt``) holds and ``--resume`` needs; the
#: best model (``best.pt``) and a model file (``model.pt``) lack the optimizer,
#: scheduler and random number generators.
TRAINING_KEYS = ("model", "optimizer", "scheduler", "state", "rng", "config")


def atomic_save(obj: Any, path: str, before_commit: Optional[Callable[[], None]] = None) -> None:
    """``torch.save`` through :func:`pyg_schnet.io.save_torch`: a kill leaves
    the old file or the new one; a failed write keeps the old one."""
    try:
        save_torch(obj, path, before_commit)
    except OSError as exc:
        raise UserError(
            f"cannot write checkpoint {path}: {exc.strerror or exc}; "
            f"the previous checkpoint is kept"
        ) from None


def load_checkpoint(path: str) -> Dict[str, Any]:
    """A checkpoint or model file of this format, read onto the CPU (tensors only)."""
    if not osp.isfile(path):
        raise UserError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"checkpoint {path} is unreadable ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("run_format") != RUN_FORMAT:
        raise UserError(
            f"checkpoint {path} is from an incompatible version of pyg_schnet "
            f"(run format {ckpt.get('run_format') if isinstance(ckpt, dict) else '?'}, "
            f"expected {RUN_FORMAT})"
        )
    return ckpt


def load_training_checkpoint(path: str) -> Dict[str, Any]:
    """A training checkpoint (:func:`load_checkpoint`), refused with one line
    when it lacks what resuming needs (a model file saved as ``last.pt``)."""
    ckpt = load_checkpoint(path)
    missing = [k for k in TRAINING_KEYS if k not in ckpt]
    if missing:
        raise UserError(
            f"{path} is not a training checkpoint (it has no {', '.join(missing)}); "
            f"it cannot be resumed"
        )
    return ckpt


def checkpoint_config(ckpt: Mapping[str, Any], path: str) -> Config:
    """The configuration a checkpoint was trained with, read as a saved
    ``config.yaml`` is (keys older versions lacked as
    :data:`~pyg_schnet.run.config.SAVED_RUN_DEFAULTS`)."""
    values = dict(ckpt.get("config") or {})
    if not values:
        raise UserError(f"checkpoint {path} does not record its configuration")
    values.update({k: v for k, v in SAVED_RUN_DEFAULTS.items() if k not in values})
    try:
        return load_config(None, values)
    except UserError as exc:
        raise UserError(f"checkpoint {path} records unreadable settings: {exc}") from None


def check_config(ckpt: Mapping[str, Any], path: str, cfg: Config) -> None:
    """Refuse a checkpoint trained with other settings than ``cfg`` (a run's
    ``config.yaml``; the keys a run may change, such as ``out`` and ``root``,
    aside): one line naming the keys that differ."""
    diff = config_differences(checkpoint_config(ckpt, path), cfg)
    if diff:
        raise UserError(
            f"{cfg.out}/config.yaml differs from the settings {osp.basename(path)} was "
            f"trained with ({', '.join(diff)}); restore config.yaml or train a new run"
        )


def export_weights(run: RunDir) -> str:
    """``model.pt``: the best model's weights and what rebuilds it (no
    optimizer state), small enough to commit or ship;
    :func:`pyg_schnet.analysis.evaluate.load_run` opens it when best.pt is absent."""
    ckpt = load_checkpoint(run.best_path)
    path = run.weights_path
    atomic_save(
        {
            "run_format": ckpt["run_format"],
            "hparams": ckpt["hparams"],
            "model": ckpt["model"],
            "config": ckpt["config"],
            "statistics": ckpt.get("statistics"),
            "epoch": ckpt["state"]["epoch"],
        },
        path,
    )
    return path


def model_from_checkpoint(ckpt: Mapping[str, Any]) -> AtomisticModel:
    """The model a checkpoint holds, rebuilt from its hyperparameters, with
    the target its config names as :attr:`~pyg_schnet.nn.atomistic.AtomisticModel.target`."""
    model = build(**upgrade_hparams(ckpt["hparams"]))
    config = ckpt.get("config") or {}
    model.target = TARGETS[target_index(config["target"])] if "target" in config else None
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise UserError(
            f"checkpoint weights do not fit the saved hyperparameters: {str(exc).splitlines()[0]}"
        ) from None
    return model


def upgrade_hparams(hparams: Mapping[str, Any]) -> Dict[str, Any]:
    """Model arguments saved by an older version (``filter`` a name, the
    options of every filter flat beside it) in today's form: the chosen
    filter's options nested under ``filter``, the others dropped, as they were
    then. Today's form passes through unchanged."""
    out = dict(hparams)
    if not isinstance(out.get("filter"), str):
        return out
    name = out["filter"]
    taken = FILTERS.options(name)
    spec: Dict[str, Any] = {"name": name}
    for key in LEGACY_FILTER_KEYS:
        if key in out:
            value = out.pop(key)
            if key in taken:
                spec[key] = value
    out["filter"] = spec
    return out
