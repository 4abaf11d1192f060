"""Evaluate a run directory on a split; predict new molecules with it."""

from __future__ import annotations

import csv
import io
import os
import os.path as osp
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from pyg_schnet.data import (
    UNITS,
    Split,
    default_root,
    load_split,
    split_from_name,
    target_index,
)
from pyg_schnet.data.loader import MoleculeLoader
from pyg_schnet.data.molio import Molecule, read_inputs
from pyg_schnet.data.targets import QM9_MAX_HEAVY_ATOMS
from pyg_schnet.errors import UserError
from pyg_schnet.hub import evaluation, model_card, pretrained_predictions, size_warning
from pyg_schnet.hub import pretrained as load_pretrained
from pyg_schnet.io import write_csv
from pyg_schnet.metrics import mae_rmse
from pyg_schnet.nn.atomistic import AtomisticModel
from pyg_schnet.nn.fast import eager_kernels
from pyg_schnet.plots import error_plot, parity_plot
from pyg_schnet.run.checkpoint import check_config, load_checkpoint, model_from_checkpoint
from pyg_schnet.run.config import Config
from pyg_schnet.run.inference import predict_loader, resolve_device
from pyg_schnet.run.rundir import SPLIT_FILE, WEIGHTS_FILE, RunDir


def load_run(run_dir: str, which: str = "best") -> Tuple[Config, AtomisticModel, Dict[str, Any]]:
    """Config, model and checkpoint of a run directory: ``which`` is ``best``
    or ``last``; without best.pt, a best model's model-only weights
    (``model.pt``, what studies keep) serve instead. A config.yaml that
    differs from the checkpoint's settings is refused
    (:func:`~pyg_schnet.run.checkpoint.check_config`)."""
    rd = RunDir(run_dir)
    cfg = rd.config()
    name = f"{which}.pt"
    if which == "best" and not rd.has(name) and rd.has(WEIGHTS_FILE):
        name = WEIGHTS_FILE
    ckpt = load_checkpoint(rd.file(name))
    check_config(ckpt, rd.file(name), cfg)
    model = model_from_checkpoint(ckpt)
    model.eval()
    return cfg, model, ckpt


def evaluate(
    run_dir: str,
    split: str = "test",
    batch_size: Optional[int] = None,
    root: Optional[str] = None,
    device: str = "cpu",
) -> Dict[str, Any]:
    """MAE and RMSE of a run's best model on a split, and its parity plot
    (written into the run directory, under the run directory's lock).
    ``root``: the QM9 root, where the run's recorded one is not on this
    machine (a committed run evaluated elsewhere; default: the recorded root
    if it exists, else the default root). ``device``: ``cpu`` or
    ``cuda[:N]``, checked before anything is read."""
    dev = resolve_device(device)
    cfg, model, _ = load_run(run_dir)
    model = model.to(dev)
    if root is not None:
        cfg.root = osp.abspath(root)
    elif cfg.root is None or not osp.isdir(cfg.root):
        cfg.root = default_root()
    with RunDir(run_dir).lock():
        return _evaluate(run_dir, cfg, model, split, batch_size, dev)


#: Columns of ``predictions_SPLIT.csv``: the molecule's position in the data
#: set, its atoms, the target and the prediction (in the target's unit).
PREDICTION_FIELDS = ("index", "num_atoms", "target", "prediction")


def run_split(run_dir: str, cfg: Config, num_molecules: int) -> Split:
    """A run's split: its ``split.npz``, else the split file its config
    names, else (a study's committed run, which keeps neither) the nested
    split that file's name describes."""
    rd = RunDir(run_dir)
    if rd.has(SPLIT_FILE):
        return load_split(rd.split_path, num_molecules)
    if cfg.split_file and osp.isfile(cfg.split_file):
        return load_split(cfg.split_file, num_molecules)
    rebuilt = split_from_name(cfg.split_file, num_molecules) if cfg.split_file else None
    if rebuilt is None:
        raise UserError(f"{run_dir} holds no {SPLIT_FILE} and its split file is not here")
    return rebuilt


def _evaluate(
    run_dir: str,
    cfg: Config,
    model: AtomisticModel,
    split: str,
    batch_size: Optional[int],
    device: torch.device,
) -> Dict[str, Any]:
    from pyg_schnet.data.qm9 import QM9

    dataset = QM9(cfg.root, source=cfg.source, max_molecules=cfg.max_molecules)
    sp = run_split(run_dir, cfg, len(dataset))
    idx = {"train": sp.train_idx, "val": sp.val_idx, "test": sp.test_idx}[split]
    if len(idx) == 0:
        raise UserError(f"the {split} split of {run_dir} is empty")
    loader = MoleculeLoader(dataset, idx, batch_size or cfg.batch_size, target_index(cfg.target))
    pred, y, where = predict_loader(model, loader, device)
    mae, rmse = mae_rmse(pred, y)
    unit = UNITS[cfg.target]
    title = f"{cfg.label}, {cfg.target} ({split}): MAE {mae:.4g} {unit}"
    files = write_evaluation(run_dir, split, dataset, where, pred, y, title, unit)
    return dict(split=split, count=len(idx), mae=mae, rmse=rmse, unit=unit, **files)


def write_evaluation(
    folder: str,
    split: str,
    dataset: Any,
    where: Tensor,
    pred: Tensor,
    y: Tensor,
    title: str,
    unit: str,
) -> Dict[str, str]:
    """An evaluation's files in ``folder``: ``parity_SPLIT.png``,
    ``errors_SPLIT.png`` (error histogram and MAE per molecule size) and
    ``predictions_SPLIT.csv`` (:data:`PREDICTION_FIELDS`), for the molecules
    ``where`` of ``dataset`` with predictions ``pred`` and targets ``y``."""
    diff = pred.double() - y.double()
    plot = osp.join(folder, f"parity_{split}.png")
    parity_plot(y.numpy(), pred.numpy(), title, unit, plot)
    errors = osp.join(folder, f"errors_{split}.png")
    atoms = dataset.num_atoms()[where]
    error_plot(diff.numpy(), atoms.numpy(), title, unit, errors)
    table = osp.join(folder, f"predictions_{split}.csv")
    write_csv(
        table,
        PREDICTION_FIELDS,
        [
            {"index": int(i), "num_atoms": int(n), "target": f"{t:.6f}", "prediction": f"{p:.6f}"}
            for i, n, t, p in zip(
                where.tolist(), atoms.tolist(), y.tolist(), pred.tolist(), strict=True
            )
        ],
    )
    return {"plot": plot, "errors_plot": errors, "predictions": table}


def evaluate_model(
    name: str,
    out: str,
    root: Optional[str] = None,
    split: str = "test",
    limit: Optional[int] = None,
    batch_size: int = 250,
    device: str = "cpu",
) -> Dict[str, Any]:
    """:func:`pyg_schnet.hub.evaluate_pretrained` (the same predictions, MAE
    and RMSE) with its parity plot, error plot and per-molecule CSV written
    into the folder ``out`` (:func:`write_evaluation`; created if missing)."""
    if osp.exists(out) and not osp.isdir(out):
        raise UserError(f"--out {out} is a file, not a folder")
    card, ds, pred, y, where = pretrained_predictions(name, root, split, limit, batch_size, device)
    res = evaluation(card, split, pred, y)
    title = f"{name}, {card['target']} ({split}): MAE {res['mae']:.4g} {res['unit']}"
    os.makedirs(out, exist_ok=True)
    return dict(res, **write_evaluation(out, split, ds, where, pred, y, title, res["unit"]))


GEOMETRY_NOTE = (
    "note: QM9 models expect DFT (B3LYP/6-31G(2df,p)) equilibrium geometries; "
    "SMILES inputs use an rdkit ETKDG+MMFF conformer, which moved qm9-U0's prediction "
    "by 0.25 eV on average over 300 QM9 test molecules (MAE 250 meV against 12.8 at the "
    "DFT geometries): give XYZ or SDF geometries where the number matters"
)


#: QM9's extent, measured on all 130,831 molecules: atoms per molecule (heavy
#: atoms: :data:`~pyg_schnet.data.qm9.QM9_MAX_HEAVY_ATOMS`), the shortest
#: distance between two atoms of one molecule (Å), and the longest distance
#: from an H atom, and from a heavy atom, to its nearest neighbour (Å).
QM9_MAX_ATOMS = 29
QM9_MIN_DISTANCE = 0.958
QM9_MAX_H_NEIGHBOUR = 1.248
QM9_MAX_HEAVY_NEIGHBOUR = 1.568
#: Covalent radii (Å) of QM9's elements (Cordero et al. 2008); two atoms are
#: bonded, for counting fragments, within 1.25 times the sum of theirs.
COVALENT_RADIUS = {1: 0.31, 6: 0.76, 7: 0.71, 8: 0.66, 9: 0.57}
BOND_TOLERANCE = 1.25


#: Atom pairs per batch of the geometry checks (:func:`applicabilities`):
#: molecules of one size are checked together up to this many pairs (32 MB of
#: float64 distances); a larger molecule alone.
GEOMETRY_PAIRS = 1 << 22


def applicability(
    z: torch.Tensor, pos: torch.Tensor, charge: Optional[int] = None, radicals: Optional[int] = None
) -> str:
    """Why a molecule lies outside what a QM9 model has seen ("" when it does
    not): more atoms or heavy atoms than any QM9 molecule, two atoms closer
    or an atom further from its nearest neighbour than in any QM9 molecule
    (coordinates in bohr, say), several fragments, a charge or unpaired
    electrons (QM9 holds neutral closed-shell molecules; where the input
    does not state them, an odd electron count). Elements other than H, C,
    N, O, F are errors, not warnings. One molecule of :func:`applicabilities`."""
    return applicabilities([Molecule("", z, pos, "", charge=charge, radicals=radicals)])[0]


def applicabilities(mols: Sequence[Molecule]) -> List[str]:
    """:func:`applicability` of each molecule: the counts for all at once, the
    geometry of the molecules of one size in one batch (:func:`_geometry_notes`)."""
    heavy, electrons = _atom_counts(mols)
    geometry: List[List[str]] = [[] for _ in mols]
    by_size: Dict[int, List[int]] = {}
    for k, m in enumerate(mols):
        if m.z.numel() > 1:
            by_size.setdefault(m.z.numel(), []).append(k)
    for n, members in by_size.items():
        per = max(1, GEOMETRY_PAIRS // (n * n))
        for start in range(0, len(members), per):
            part = members[start : start + per]
            z = torch.stack([mols[k].z for k in part])
            pos = torch.stack([mols[k].pos for k in part]).double()
            for k, notes in zip(part, _geometry_notes(z, pos), strict=True):
                geometry[k] = notes
    out = []
    for m, h, e, more in zip(mols, heavy, electrons, geometry, strict=True):
        notes = []
        if m.z.numel() > QM9_MAX_ATOMS:
            notes.append(f"{m.z.numel()} atoms (QM9: at most {QM9_MAX_ATOMS})")
        if h > QM9_MAX_HEAVY_ATOMS:
            notes.append(f"{h} heavy atoms (QM9: at most {QM9_MAX_HEAVY_ATOMS})")
        if m.charge:
            notes.append(f"formal charge {m.charge:+d} (QM9 holds neutral molecules)")
        if m.radicals:
            notes.append(f"{m.radicals} unpaired electron(s) (QM9 holds closed-shell molecules)")
        if m.charge is None and m.radicals is None and e % 2:
            notes.append("an odd number of electrons: a radical or an ion (QM9 holds neither)")
        out.append("; ".join(notes + more))
    return out


def _atom_counts(mols: Sequence[Molecule]) -> Tuple[List[int], List[int]]:
    """Heavy atoms and electrons (the sum of the atomic numbers) of each molecule."""
    if not mols:
        return [], []
    z = torch.cat([m.z for m in mols])
    mol = torch.repeat_interleave(torch.tensor([m.z.numel() for m in mols]))
    heavy = torch.zeros(len(mols), dtype=torch.long).index_add_(0, mol, (z > 1).long())
    electrons = torch.zeros(len(mols), dtype=torch.long).index_add_(0, mol, z.long())
    return heavy.tolist(), electrons.tolist()


def _geometry_notes(z: torch.Tensor, pos: torch.Tensor) -> List[List[str]]:
    """The geometry notes of ``B`` molecules of ``n > 1`` atoms each: atomic
    numbers ``[B, n]``, positions ``[B, n, 3]`` (float64)."""
    d = torch.cdist(pos, pos)  # [B, n, n]
    d.diagonal(dim1=1, dim2=2).fill_(float("inf"))
    nearest = d.min(dim=2).values  # [B, n]
    closest = nearest.min(dim=1).values.tolist()
    far = [
        torch.where(mask, nearest, float("-inf")).max(dim=1).values.tolist()
        for mask in (z == 1, z > 1)
    ]
    table = torch.full((max(int(z.max()), *COVALENT_RADIUS) + 1,), 0.75, dtype=pos.dtype)
    for element, r in COVALENT_RADIUS.items():
        table[element] = r
    radius = table[z]  # [B, n]
    bonded = d <= BOND_TOLERANCE * (radius.unsqueeze(2) + radius.unsqueeze(1))  # [B, n, n]
    fragments = _components(bonded).tolist()
    out = []
    for b in range(z.size(0)):
        notes = []
        if closest[b] < QM9_MIN_DISTANCE - 0.005:
            notes.append(f"atoms {closest[b]:.2f} Å apart (QM9: at least {QM9_MIN_DISTANCE} Å)")
        for values, limit, kind in (
            (far[0], QM9_MAX_H_NEIGHBOUR, "an H atom"),
            (far[1], QM9_MAX_HEAVY_NEIGHBOUR, "a heavy atom"),
        ):
            if values[b] > limit + 0.005:  # -inf: no atom of that kind
                notes.append(
                    f"{kind} {values[b]:.2f} Å from its nearest neighbour (QM9: at most "
                    f"{limit} Å; coordinates in bohr?)"
                )
        if fragments[b] > 1:
            notes.append(f"{fragments[b]} disconnected fragments (QM9 molecules are one)")
        out.append(notes)
    return out


def _components(adjacency: torch.Tensor) -> torch.Tensor:
    """Connected components of boolean adjacency matrices ``[B, N, N]``: ``[B]``."""
    n = adjacency.size(1)
    label = torch.arange(n).expand(adjacency.size(0), n)
    reach = adjacency | torch.eye(n, dtype=torch.bool)
    while True:  # each node takes the smallest label it reaches in one step
        new = torch.where(reach, label.unsqueeze(1), n).min(dim=2).values
        if torch.equal(new, label):  # each component labelled by its first node
            return (label == torch.arange(n)).sum(dim=1)
        label = new


#: Molecules per batch in :func:`predict` (the same numbers as one at a time,
#: to float precision; tests/analysis/test_evaluate.py).
PREDICT_BATCH = 256


@torch.no_grad()
def predict(
    run_dir: Optional[str],
    inputs: List[str],
    smiles: List[str],
    pretrained: Optional[str] = None,
    device: str = "cpu",
    progress: Optional[Callable[[int, int], None]] = None,
) -> Tuple[str, str, List[Dict[str, Any]]]:
    """Predict molecules from files (xyz, sdf) and SMILES with a run's best
    model, or a shipped ``pretrained`` one (:mod:`pyg_schnet.hub`), in
    batches of :data:`PREDICT_BATCH`: the target, its unit and one row per
    molecule in input order (``name``, ``source``, ``num_atoms``, ``value``,
    ``warning``: :func:`applicability` and, with a shipped model's card, its
    error for the molecule's size (:func:`~pyg_schnet.hub.size_warning`),
    ``error``: why a molecule could not be predicted, its value then NaN).
    ``progress(done, total)`` is called after each batch. A fast-mode model
    runs its kernels uncompiled (:func:`~pyg_schnet.nn.fast.eager_kernels`:
    the same numbers, without seconds of compiling)."""
    card: Dict[str, Any] = {}  # a run directory has no card, so no size warnings
    if pretrained is not None:
        card = model_card(pretrained)
        target, model = card["target"], load_pretrained(pretrained)
    elif run_dir is not None:
        cfg, model, _ = load_run(run_dir)
        target = cfg.target
    else:
        raise UserError("predict needs a run directory or --model NAME")
    dev = resolve_device(device)
    model = model.to(dev).eval()
    mols = read_inputs(inputs, smiles)
    good = [m for m in mols if not m.error]
    values: Dict[int, float] = {}
    for start in range(0, len(good), PREDICT_BATCH):
        chunk = good[start : start + PREDICT_BATCH]
        sizes = torch.tensor([m.z.numel() for m in chunk])
        z = torch.cat([m.z for m in chunk]).to(dev)
        pos = torch.cat([m.pos for m in chunk]).to(dev)
        batch = torch.repeat_interleave(torch.arange(len(chunk)), sizes).to(dev)
        with eager_kernels():
            out = model(z, pos, batch, num_graphs=len(chunk)).view(-1).cpu()
        for m, v in zip(chunk, out.tolist(), strict=True):
            values[id(m)] = v
        if progress is not None:
            progress(start + len(chunk), len(good))
    warning = dict(zip(map(id, good), _warnings(good, card), strict=True))
    rows = []
    for m in mols:
        rows.append(
            {
                "name": m.name,
                "source": m.source,
                "num_atoms": m.z.numel(),
                "value": values.get(id(m), float("nan")),
                "warning": warning.get(id(m), ""),
                "error": m.error,
            }
        )
    return target, UNITS[target], rows


def _warnings(mols: List[Molecule], card: Dict[str, Any]) -> List[str]:
    """Each predicted molecule's warnings: :func:`applicability`, then the
    card's error for its size (:func:`~pyg_schnet.hub.size_warning`)."""
    heavy, _ = _atom_counts(mols)
    return [
        "; ".join(n for n in (notes, size_warning(card, h)) if n)
        for notes, h in zip(applicabilities(mols), heavy, strict=True)
    ]


def predictions_csv(target: str, unit: str, rows: List[Dict[str, Any]]) -> str:
    """The rows of :func:`predict` as CSV text (an unpredicted molecule's
    value is empty and its error says why)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["name", "source", "num_atoms", f"{target}_{unit}", "warning", "error"])
    for r in rows:
        value = "" if r.get("error") else f"{r['value']:.6f}"
        w.writerow(
            [
                r["name"],
                r["source"],
                r["num_atoms"],
                value,
                r.get("warning", ""),
                r.get("error", ""),
            ]
        )
    return buf.getvalue()
