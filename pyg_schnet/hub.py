"""Pretrained models shipped with the package (``pyg_schnet/weights/NAME``):
model-only weights (``model.pt``) and a model card (``card.json``: data,
split, settings, test MAE, training time, limits).

    >>> import pyg_schnet
    >>> model = pyg_schnet.pretrained("qm9-U0")      # a SchNet, eval mode
    >>> pyg_schnet.model_card("qm9-U0")["test_mae"]  # eV

``pyg-schnet predict --model qm9-U0 --smiles CCO`` uses them from the command line;
``pyg-schnet export RUN_DIR --name NAME`` makes one from a finished run, in
``./models/NAME`` unless ``--to`` says otherwise (:func:`export_model`: the
weights copied, the card written from the run's files, never by hand; the
model's folder replaced whole, so a card never pairs with another model's
weights). ``--model`` and :func:`pretrained` take a shipped name, a folder
name or a path (:func:`model_folder`).
"""

from __future__ import annotations

import json
import os
import os.path as osp
import shutil
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from pyg_schnet.data import (
    UNITS,
    default_root,
    load_split,
    nested_split,
    random_split,
    target_index,
)
from pyg_schnet.data.loader import MoleculeLoader
from pyg_schnet.data.targets import QM9_MAX_HEAVY_ATOMS
from pyg_schnet.errors import UserError
from pyg_schnet.metrics import ErrorSums, display_unit
from pyg_schnet.io import copy_file, locked, replace_dir, staging_path, write_json
from pyg_schnet.run.checkpoint import (
    check_config,
    export_weights,
    load_checkpoint,
    model_from_checkpoint,
)
from pyg_schnet.run.faults import TrainerHooks, default_hooks
from pyg_schnet.run.inference import predict_loader, resolve_device
from pyg_schnet.run.rundir import IGNORED_KEYS, SPLIT_FILE, SYMMETRY_FILE, WEIGHTS_FILE, RunDir

if TYPE_CHECKING:
    from pyg_schnet.data.qm9 import QM9

WEIGHTS_DIR = osp.join(osp.dirname(osp.abspath(__file__)), "weights")
#: Where :func:`export_model` (``pyg-schnet export`` without ``--to``) writes a
#: model: this folder of models under the current directory, never the
#: installed package; ``--model NAME`` looks there too (:func:`model_folder`).
EXPORT_DIR = "models"
#: Settings a card leaves out: where files lived and how the run was executed.
_CARD_SKIPS = IGNORED_KEYS | {"split_file", "processes"}
#: What a card says every shipped model is for.
SCOPE = (
    "predictions are for QM9-like molecules (H, C, N, O, F; at most 29 atoms, 9 heavy) "
    "at DFT equilibrium geometries; pyg-schnet predict warns outside that range"
)


#: The card's errors by molecule size: per number of heavy atoms (C, N, O, F;
#: ``"1"`` to ``"9"``), the test molecules of that size (``count``) and the
#: model's MAE on them (``mae``, in the card's unit; ``None`` without any).
SIZE_ERRORS = "test_mae_by_heavy_atoms"
#: A molecule gets a size warning when its size's test MAE exceeds this many
#: times the model's test MAE ...
SIZE_WARN_RATIO = 3.0
#: ... or when the test set held fewer molecules of its size than this.
SIZE_MIN_COUNT = 10


def available() -> List[str]:
    """Names of the shipped models (a hidden folder, such as an export's
    staging folder, is none)."""
    if not osp.isdir(WEIGHTS_DIR):
        return []
    return sorted(
        d
        for d in os.listdir(WEIGHTS_DIR)
        if not d.startswith(".") and osp.isfile(osp.join(WEIGHTS_DIR, d, WEIGHTS_FILE))
    )


def _is_model(folder: str) -> bool:
    """Whether ``folder`` holds a model: ``model.pt`` and ``card.json``."""
    return osp.isfile(osp.join(folder, "card.json")) and osp.isfile(osp.join(folder, WEIGHTS_FILE))


def model_folder(name: str) -> str:
    """The folder of the model ``name`` (``--model NAME``).

    A path (it holds a separator, such as ``./my-U0`` or ``models/my-U0``)
    must be a folder holding ``model.pt`` and ``card.json``. A bare name is
    looked for in three places: a folder of that name in the current
    directory, one in :data:`EXPORT_DIR` there (where ``export`` writes by
    default), and the shipped models. A name found in exactly one of them is
    that model. A name found in more than one is an error naming them, not a
    silent choice: a folder that happens to share a shipped model's name
    must not change what ``--model qm9-U0`` predicts with, and a shipped
    name must not hide the user's own model either; writing the folder as a
    path (``./qm9-U0``) chooses it.
    """
    if not name:
        raise UserError("a model name is empty")
    if os.sep in name or (osp.altsep and osp.altsep in name) or name in (".", ".."):
        if _is_model(name):
            return name
        what = "holds no model.pt and card.json" if osp.isdir(name) else "does not exist"
        raise UserError(f"model folder {name} {what}")
    places = [name, osp.join(EXPORT_DIR, name)]
    if name in available():
        places.append(osp.join(WEIGHTS_DIR, name))
    found: Dict[str, str] = {}  # the real path -> the first place naming it
    for place in places:
        if _is_model(place):
            found.setdefault(osp.realpath(place), place)
    if len(found) > 1:
        where = [
            f"the shipped model {name}" if p.startswith(WEIGHTS_DIR) else f"./{p}"
            for p in found.values()
        ]
        raise UserError(
            f"model name {name!r} is ambiguous: {' and '.join(where)}; write the folder as "
            f"a path (./{name} or {EXPORT_DIR}/{name}), or rename it"
        )
    if not found:
        raise UserError(
            f"unknown pretrained model {name!r}; available: {', '.join(available()) or 'none'} "
            f"(and no folder ./{name} or ./{EXPORT_DIR}/{name} holds model.pt and card.json)"
        )
    return next(iter(found.values()))


def model_card(name: str) -> Dict[str, Any]:
    """The model card of a model (a shipped name, a folder name or a path:
    :func:`model_folder`)."""
    with open(osp.join(model_folder(name), "card.json")) as f:
        return dict(json.load(f))


def pretrained(name: str) -> Any:
    """A model (a shipped name, a folder name or a path: :func:`model_folder`),
    in eval mode (``model(z, pos, batch) -> [num_graphs, 1]``, in the card's unit)."""
    model = model_from_checkpoint(load_checkpoint(osp.join(model_folder(name), WEIGHTS_FILE)))
    model.eval()
    return model


def pretrained_predictions(
    name: str,
    root: Optional[str],
    split: str = "test",
    limit: Optional[int] = None,
    batch_size: int = 250,
    device: str = "cpu",
) -> Tuple[Dict[str, Any], QM9, Any, Any, Any]:
    """A model's (:func:`model_folder`) predictions on the split its card
    names (the data set rebuilt or loaded at ``root``), on ``device``
    (``cpu`` or ``cuda[:N]``); ``limit``: a seeded random subset of that
    split. Returns the card, the data set, and the predictions, targets and
    data-set positions in the loader's order."""
    dev = resolve_device(device)  # before the data set is built
    card = model_card(name)
    ds, idx = pretrained_split(name, root, split, limit)
    loader = MoleculeLoader(ds, idx, batch_size, target_index(card["target"]))
    pred, y, where = predict_loader(pretrained(name).to(dev), loader, dev)
    return card, ds, pred, y, where


def evaluation(card: Dict[str, Any], split: str, pred: Any, y: Any) -> Dict[str, Any]:
    """MAE and RMSE of predictions ``pred`` against ``y`` on ``split``, with
    the card's own test MAE beside them (for the test split)."""
    sums = ErrorSums().add(pred, y)
    return {
        "split": split,
        "count": len(pred),
        "mae": sums.mae,
        "rmse": sums.rmse,
        "unit": UNITS[card["target"]],
        "card_mae": card["test_mae"] if split == "test" else None,
    }


def evaluate_pretrained(
    name: str,
    root: Optional[str],
    split: str = "test",
    limit: Optional[int] = None,
    batch_size: int = 250,
    device: str = "cpu",
) -> Dict[str, Any]:
    """MAE and RMSE of a model on the split its card names
    (:func:`pretrained_predictions`, :func:`evaluation`)."""
    card, _, pred, y, _ = pretrained_predictions(name, root, split, limit, batch_size, device)
    return evaluation(card, split, pred, y)


def size_errors(
    model: Any, dataset: QM9, test_idx: Any, target: str, device: str = "cpu"
) -> Dict[str, Dict[str, Any]]:
    """A card's :data:`SIZE_ERRORS`: ``model``'s MAE on the molecules
    ``test_idx`` of ``dataset`` by their number of heavy atoms, 1 to 9, with
    the count of each (a fast-mode model runs uncompiled:
    :func:`~pyg_schnet.nn.fast.eager_kernels`, the same numbers)."""
    import torch

    from pyg_schnet.nn.fast import eager_kernels

    dev = resolve_device(device)
    idx = torch.as_tensor(test_idx)
    loader = MoleculeLoader(dataset, idx, 250, target_index(target))
    with eager_kernels():
        pred, y, where = predict_loader(model.to(dev).eval(), loader, dev)
    err = (pred.double() - y.double()).abs()
    heavy = dataset.num_heavy_atoms()[where]
    out: Dict[str, Dict[str, Any]] = {}
    for n in range(1, QM9_MAX_HEAVY_ATOMS + 1):
        mask = heavy == n
        count = int(mask.sum())
        out[str(n)] = {"count": count, "mae": float(err[mask].mean()) if count else None}
    return out


def update_size_errors(name: str, root: Optional[str] = None) -> str:
    """Write :data:`SIZE_ERRORS` into the card of the model ``name``
    (:func:`model_folder`), measured on the test split its card names (the data
    set at ``root``) with :func:`size_errors`, the code
    :func:`export_model` uses; the rest of the card is kept. How the shipped
    cards got theirs::

        python -c "from pyg_schnet.hub import update_size_errors as u; u('qm9-U0'); u('qm9-gap')"

    Returns the card's path."""
    card = model_card(name)
    ds, sp = pretrained_data(name, root)
    card[SIZE_ERRORS] = size_errors(pretrained(name), ds, sp.test_idx, card["target"])
    path = osp.join(model_folder(name), "card.json")
    write_json(path, card)
    return path


def size_warning(card: Dict[str, Any], heavy: int) -> str:
    """Why a molecule of ``heavy`` heavy atoms (1 to 9) is predicted worse than
    the card's test MAE says ("" when it is not, or when the card has no
    :data:`SIZE_ERRORS`): its size's test MAE exceeds :data:`SIZE_WARN_RATIO`
    times the model's, or the test set held fewer than
    :data:`SIZE_MIN_COUNT` molecules of its size."""
    bucket = (card.get(SIZE_ERRORS) or {}).get(str(heavy))
    if bucket is None:
        return ""
    unit, mae = card["unit"], card["test_mae"]
    if bucket["count"] < SIZE_MIN_COUNT:
        return (
            f"{heavy} heavy atom(s): the model's test set held {bucket['count']} such "
            f"molecule(s), too few to state its error (overall MAE {mae:.3g} {unit})"
        )
    if bucket["mae"] > SIZE_WARN_RATIO * mae:
        return (
            f"{heavy} heavy atom(s): test MAE {bucket['mae']:.3g} {unit} on "
            f"{bucket['count']} such molecules, {bucket['mae'] / mae:.1f}x the overall "
            f"{mae:.3g} {unit}"
        )
    return ""


def pretrained_split(
    name: str, root: Optional[str], split: str = "test", limit: Optional[int] = None
) -> Tuple[QM9, Any]:
    """The data set at ``root`` and the indices of the split of a model's
    card (``test``, ``val`` or ``train``), or a seeded random ``limit`` of them."""
    import torch

    ds, sp = pretrained_data(name, root)
    idx = torch.as_tensor({"test": sp.test_idx, "val": sp.val_idx, "train": sp.train_idx}[split])
    if limit is not None and limit < len(idx):
        idx = idx[torch.randperm(len(idx), generator=torch.Generator().manual_seed(0))[:limit]]
    return ds, idx


def pretrained_data(name: str, root: Optional[str]) -> Tuple[QM9, Any]:
    """The data set at ``root`` and the split a shipped model's card names."""
    from pyg_schnet.data.qm9 import QM9

    spec = model_card(name)["split_spec"]
    source = model_card(name).get("source", "qm9pack")
    ds = QM9(root, source=source, max_molecules=spec.get("max_molecules"))
    if len(ds) != spec["num_molecules"]:
        raise UserError(
            f"{name} was trained on {spec['num_molecules']} molecules; the data set "
            f"at {root} has {len(ds)}"
        )
    return ds, card_split(spec, model_folder(name), len(ds))


#: A split no seeded function rebuilds ships beside the weights as this file.


def _split_makers() -> Dict[str, Any]:
    """The seeded splits a card can name: kind -> function of pyg_schnet.data.qm9."""
    return {"nested": nested_split, "random": random_split}


def card_split(spec: Dict[str, Any], folder: str, num_molecules: int) -> Any:
    """The :class:`~pyg_schnet.data.Split` a card's ``split_spec`` names."""
    if spec["kind"] == "file":
        return load_split(osp.join(folder, spec["file"]), num_molecules)
    make = _split_makers()[spec["kind"]]
    return make(num_molecules, spec["train"], spec["val"], spec["test"], spec["seed"])


def _describe_split(
    split: Any, num_molecules: int, seed: int, max_molecules: Optional[int]
) -> Tuple[Dict[str, Any], str]:
    """The card's ``split_spec`` and sentence for a run's split: the seeded
    function of :mod:`pyg_schnet.data.qm9` that rebuilds it index by index, else
    ``kind: file`` (the split ships beside the weights)."""
    import numpy as np

    sizes = [len(split.train_idx), len(split.val_idx), len(split.test_idx)]
    counts = f"{sizes[0]:,} training, {sizes[1]:,} validation, {sizes[2]:,} test molecules" + (
        f" of a seeded random subset of {max_molecules:,} (QM9(max_molecules={max_molecules}))"
        if max_molecules
        else ""
    )
    for kind, make in _split_makers().items():
        try:
            again = make(num_molecules, sizes[0], sizes[1], sizes[2], seed)
        except UserError:
            continue
        if all(
            np.array_equal(np.sort(getattr(split, k)), getattr(again, k))
            for k in ("train_idx", "val_idx", "test_idx")
        ):
            spec = {
                "kind": kind,
                "num_molecules": num_molecules,
                "max_molecules": max_molecules,
                "train": sizes[0],
                "val": sizes[1],
                "test": sizes[2],
                "seed": seed,
            }
            call = (
                f"pyg_schnet.data.{make.__name__}({num_molecules}, "
                f"{', '.join(map(str, sizes))}, seed={seed})"
            )
            return spec, f"{kind} split, seed {seed} ({call}): {counts}"
    spec = {
        "kind": "file",
        "file": SPLIT_FILE,
        "num_molecules": num_molecules,
        "max_molecules": max_molecules,
    }
    return spec, f"the run's own split ({SPLIT_FILE} beside the weights): {counts}"


def _model_text(cfg: Any) -> str:
    size = (
        f"{cfg.hidden_channels} features, {cfg.num_interactions} interactions, "
        f"{cfg.cutoff:g} Å cutoff"
    )
    if not cfg.model_entry.takes("filter"):
        return f"{cfg.model_name} (pyg_schnet.nn.models), {size}"
    fast = ", fast mode (tabulated filters)" if cfg.fast else ""
    return f"SchNet (pyg_schnet), {cfg.label} filter, {size}{fast}"


def _test_mae(metrics: Dict[str, Any], run_dir: str) -> float:
    """A run's test MAE for its card; a run without a test set has none."""
    mae = metrics.get("test_mae")
    if not isinstance(mae, (int, float)) or mae != mae:
        raise UserError(f"{run_dir} has no test MAE (no test molecules): a card needs one")
    return float(mae)


def export_model(
    run_dir: str,
    name: str,
    weights_dir: str = EXPORT_DIR,
    overwrite: bool = False,
    hooks: Optional[TrainerHooks] = None,
    if_better: bool = False,
) -> str:
    """Make a model ``weights_dir/NAME`` (default: ``./models/NAME``,
    :data:`EXPORT_DIR`; the package's own ``pyg_schnet/weights`` only when
    named) from a finished run: its
    model-only weights (``model.pt``; written from ``best.pt`` if the run kept
    none) and a card from the run's config, metrics, ``symmetry.json`` and
    split (``split.npz``, else the config's ``split_file``). The card names
    the split so that ``pyg-schnet evaluate --model NAME`` rebuilds it: the
    seeded nested or random split that equals it index by index, else the
    split file itself, shipped beside the weights. The folder is written
    whole (:func:`_write_model`); ``hooks``: its fault points
    (default: :func:`~pyg_schnet.run.faults.default_hooks`). ``if_better``:
    replace a model of that name only when the run's test MAE is lower on the
    same test molecules (:func:`_check_better`); else nothing is written.
    Returns the model's folder."""

    import numpy as np

    if not name or any(c in name for c in "/\\ ") or name.startswith("."):
        raise UserError(f"model name {name!r} must be a plain folder name (like qm9-U0)")
    folder = osp.join(weights_dir, name)
    if osp.isdir(folder) and not (overwrite or if_better):  # before anything is written
        raise UserError(f"{folder} exists (--overwrite replaces it)")
    rd = RunDir(run_dir)
    metrics = rd.metrics()
    if metrics is None:
        raise UserError(f"{run_dir} is not a finished run (no metrics.json)")
    cfg = rd.config()
    split_path = rd.split_path if rd.has(SPLIT_FILE) else cfg.split_file
    if not split_path or not osp.isfile(split_path):
        raise UserError(
            f"{run_dir} has no split.npz and its split_file {split_path} is gone "
            f"(a study writes it again: pyg-schnet study run SPEC)"
        )
    with np.load(split_path) as f:
        num_molecules = int(f["num_molecules"]) if "num_molecules" in f.files else None
    if num_molecules is None:
        raise UserError(f"{split_path} does not record the data set's size")
    split = load_split(split_path, num_molecules)
    split_spec, split_text = _describe_split(split, num_molecules, cfg.seed, cfg.max_molecules)
    if if_better and osp.isdir(folder):
        _check_better(folder, name, cfg.target, split, num_molecules, _test_mae(metrics, run_dir))
    symmetry = {}
    if rd.has(SYMMETRY_FILE):
        with open(rd.symmetry_path) as f:
            symmetry = json.load(f)
    source = rd.weights_path if rd.has(WEIGHTS_FILE) else rd.best_path
    check_config(load_checkpoint(source), source, cfg)  # readable, this version, these settings
    weights = source if source == rd.weights_path else export_weights(rd)

    from pyg_schnet.data.qm9 import QM9

    root = cfg.root if cfg.root and osp.isdir(cfg.root) else default_root()
    dataset = QM9(root, source=cfg.source, max_molecules=cfg.max_molecules)
    by_size = size_errors(
        model_from_checkpoint(load_checkpoint(weights)), dataset, split.test_idx, cfg.target
    )
    settings = {k: v for k, v in cfg.to_dict().items() if k not in _CARD_SKIPS}
    train = len(split.train_idx)
    package_root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    source_run = osp.abspath(run_dir)
    if source_run.startswith(package_root + os.sep):
        source_run = osp.relpath(source_run, package_root)
    card = {
        "name": name,
        "target": cfg.target,
        "unit": UNITS[cfg.target],
        "model": _model_text(cfg),
        "data": f"QM9 ({num_molecules:,} molecules, PyG's targets and units) from {cfg.source}",
        "split": split_text,
        "test_mae": _test_mae(metrics, run_dir),
        "test_rmse": metrics["test_rmse"],
        "best_val_mae": metrics["best_val_mae"],
        "test_mae_rotated": symmetry.get("rot_test_mae"),
        SIZE_ERRORS: by_size,
        "epochs": metrics["epochs"],
        "best_epoch": metrics["best_epoch"],
        "stop_reason": metrics.get("stop_reason"),
        "schedule": metrics.get("schedule"),  # e.g. "cosine over 60 epochs (warmup 2%), ..."
        "training_seconds": metrics["train_seconds"],
        # what the run used (the measured rule's choice when num_threads was none)
        "training_threads": metrics.get("threads", cfg.num_threads),
        "num_params": metrics["num_params"],
        "settings": settings,
        "source_run": source_run,
        "code": metrics.get("code"),  # the code that finished the run (None: not recorded)
        "limits": f"Trained on {train:,} molecules; {SCOPE}.",
        "split_spec": split_spec,
        "source": cfg.source,
    }
    shipped = split if split_spec["kind"] == "file" else None
    _write_model(folder, weights, card, shipped, num_molecules, hooks or default_hooks())
    return folder


def _check_better(
    folder: str, name: str, target: str, split: Any, num_molecules: int, test_mae: float
) -> None:
    """Refuse to replace the model in ``folder`` unless the run's ``test_mae``
    is lower on the same test molecules (the card's split, rebuilt)."""
    import numpy as np

    try:
        with open(osp.join(folder, "card.json")) as f:
            card = dict(json.load(f))
        old_split = card_split(card["split_spec"], folder, num_molecules)
        old_mae, old_target = float(card["test_mae"]), card["target"]
    except (OSError, ValueError, KeyError, TypeError, UserError) as exc:
        raise UserError(
            f"{folder} holds no readable card to compare with ({type(exc).__name__}); "
            "export with --overwrite to replace it"
        ) from None
    if old_target != target:
        raise UserError(f"{name} is a {old_target} model; the run predicts {target}")
    if not np.array_equal(np.sort(old_split.test_idx), np.sort(split.test_idx)):
        raise UserError(
            f"{name} and the run were tested on different molecules: their test MAEs do not "
            "compare (train the run on the card's split, or export with --overwrite)"
        )
    unit, scale = display_unit(UNITS[target])
    if test_mae >= old_mae:
        raise UserError(
            f"{name} kept: its test MAE {old_mae * scale:.4g} {unit} is not above the run's "
            f"{test_mae * scale:.4g} {unit} on the same {len(split.test_idx):,} test molecules"
        )


def _write_model(
    folder: str,
    weights: str,
    card: Dict[str, Any],
    split: Any,
    num_molecules: int,
    hooks: TrainerHooks,
) -> None:
    """Write a model's folder whole: the weights, the ``split`` (if the card
    ships one, as ``split.npz``) and the card go to a staging folder beside
    it, which then replaces it (:func:`~pyg_schnet.io.replace_dir`), under
    the lock of the folder of models (two exports never share a staging
    folder). A failure (a full disk, a file-size limit) or a kill leaves the
    old model as it was: never a card beside another model's weights."""
    parent = osp.dirname(osp.abspath(folder))
    staged = staging_path(folder)
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {parent}: {exc.strerror or exc}") from None
    with locked(parent):
        try:
            shutil.rmtree(staged, ignore_errors=True)  # a killed export's
            os.makedirs(staged)
            copy_file(weights, osp.join(staged, WEIGHTS_FILE))
            hooks.export()
            if split is not None:
                split.save(osp.join(staged, SPLIT_FILE), num_molecules)
            write_json(osp.join(staged, "card.json"), card)
        except OSError as exc:
            shutil.rmtree(staged, ignore_errors=True)
            raise UserError(
                f"cannot write model {folder}: {exc.strerror or exc}; "
                f"{'the previous one is kept' if osp.isdir(folder) else 'nothing written'}"
            ) from None
        replace_dir(staged, folder, hooks.swap)
