"""Probes of trained weights: what a model's filters learned and how its
predictions respond to small changes of the input, nothing retrained.

For a run directory or a shipped model, on a seeded subset of its test split:

* ``mae``: the model's error as it is;
* ``rounding``: its error when the distances its radial filters see are
  rounded to bins of 0.01-0.1 Å at test time (the same weights);
* ``noise``: the mean change of its prediction when Gaussian noise of
  0.002-0.03 Å is added to every coordinate;
* ``forces``: the mean norm of :math:`-\\partial E / \\partial \\mathbf{r}` per
  atom at QM9's geometries (relaxed: the true forces are about 0);
* ``bandwidth`` and ``total_variation`` of each block's filter on a 0.001 Å
  grid over the distances QM9 holds (radial filters);
* ``rotation_average``: for a filter that is not rotation-invariant, the
  error of its prediction averaged over 1, 4, 16 and 64 random rotations, and
  ``rot_change``, the mean change of the prediction under one rotation (for
  every model; about 0 for an invariant one).

Energies are reported in meV, as the study reports are. The random draws
(noise, rotations) come from seeded CPU generators on every device, so a
GPU probes the same inputs as the CPU.
"""

from __future__ import annotations

import csv
import io
import os.path as osp
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import Tensor

from pyg_schnet.analysis.evaluate import QM9_MIN_DISTANCE, load_run, run_split
from pyg_schnet.data import QM9, UNITS, default_root, target_index
from pyg_schnet.data.loader import MoleculeBatch, MoleculeLoader
from pyg_schnet.nn.fast import eager_kernels
from pyg_schnet.hub import model_card, pretrained_data
from pyg_schnet.hub import pretrained as load_pretrained
from pyg_schnet.metrics import display_unit
from pyg_schnet.nn.atomistic import AtomisticModel
from pyg_schnet.nn.filters import RadialFilter
from pyg_schnet.nn.models import build
from pyg_schnet.nn.rotations import random_rotation
from pyg_schnet.nn.schnet import SchNet
from pyg_schnet.run.inference import resolve_device

#: Test-time rounding widths (Å), coordinate noise (Å), rotation counts.
ROUNDING_WIDTHS = (0.01, 0.02, 0.05, 0.1)
NOISE_SCALES = (0.002, 0.01, 0.03)
ROTATIONS = (1, 4, 16, 64)
#: The filter grid's spacing (Å) and the share of spectral power the bandwidth holds.
GRID_STEP = 0.001
BANDWIDTH_POWER = 0.95
FIELDS = ("subject", "probe", "setting", "value", "unit")


@dataclass
class Subject:
    """A trained model and the molecules it is probed on, both on ``device``."""

    label: str
    model: AtomisticModel
    target: str
    batches: List[MoleculeBatch]
    device: torch.device = torch.device("cpu")


def subject_from_run(
    run_dir: str, root: Optional[str], limit: int, batch_size: int, device: str = "cpu"
) -> Subject:
    """A run directory's best model on a seeded subset of its test split, on
    ``device`` (``cpu`` or ``cuda[:N]``)."""
    dev = resolve_device(device)
    cfg, model, _ = load_run(run_dir)
    root = root or (cfg.root if cfg.root and osp.isdir(cfg.root) else default_root())
    ds = QM9(root, source=cfg.source, max_molecules=cfg.max_molecules)
    idx = torch.as_tensor(run_split(run_dir, cfg, len(ds)).test_idx)
    label = osp.normpath(run_dir)
    batches = _batches(ds, idx, cfg.target, limit, batch_size, dev)
    return Subject(label, model.to(dev), cfg.target, batches, dev)


def subject_from_pretrained(
    name: str, root: Optional[str], limit: int, batch_size: int, device: str = "cpu"
) -> Subject:
    """A model (:func:`~pyg_schnet.hub.model_folder`) on a seeded subset of
    the test split its card names, on ``device``."""
    dev = resolve_device(device)
    ds, split = pretrained_data(name, root)
    idx = torch.as_tensor(split.test_idx)
    target = model_card(name)["target"]
    batches = _batches(ds, idx, target, limit, batch_size, dev)
    return Subject(name, load_pretrained(name).to(dev), target, batches, dev)


def _batches(
    ds: QM9, idx: Tensor, target: str, limit: int, batch_size: int, device: torch.device
) -> List[MoleculeBatch]:
    if limit < len(idx):  # the same seeded subset as ``evaluate --limit``
        idx = idx[torch.randperm(len(idx), generator=torch.Generator().manual_seed(0))[:limit]]
    loader = MoleculeLoader(ds, idx, batch_size, target_index(target))
    return [b.to(device) for b in loader]


def probe(subject: Subject, seed: int = 0) -> List[Dict[str, Any]]:
    """Every probe that applies to the subject's model, one row per value (a
    fast-mode model with its kernels uncompiled: :func:`~pyg_schnet.nn.fast.eager_kernels`)."""
    with eager_kernels():
        return _probe(subject, seed)


def _probe(subject: Subject, seed: int) -> List[Dict[str, Any]]:
    model = subject.model.eval()
    unit, scale = display_unit(UNITS[subject.target])
    rows: List[Dict[str, Any]] = []

    def add(name: str, setting: str, value: float, value_unit: str = unit) -> None:
        rows.append(
            dict(subject=subject.label, probe=name, setting=setting, value=value, unit=value_unit)
        )

    with torch.no_grad():
        y = torch.cat([b.y for b in subject.batches])
        pred = _predict(model, subject.batches)
        add("mae", "", scale * float((pred - y).abs().mean()))
        for w in ROUNDING_WIDTHS if _rounds(model) else ():
            rounded = _predict(_with_rounding(model, w).to(subject.device), subject.batches)
            add("rounding", f"{w:g} Å", scale * float((rounded - y).abs().mean()))
        gen = torch.Generator().manual_seed(seed)
        for sigma in NOISE_SCALES:
            noisy = _predict(model, subject.batches, noise=(sigma, gen))
            add("noise", f"{sigma:g} Å", scale * float((noisy - pred).abs().mean()))
        gen = torch.Generator().manual_seed(seed)
        turned = _predict(model, subject.batches, rotations=1, gen=gen)
        add("rot_change", "1 rotation", scale * float((turned - pred).abs().mean()))
        if not _invariant(model):
            for k in ROTATIONS:
                gen = torch.Generator().manual_seed(seed)
                avg = _predict(model, subject.batches, rotations=k, gen=gen)
                add(
                    "rotation_average",
                    f"{k} rotation{'s' * (k > 1)}",
                    scale * float((avg - y).abs().mean()),
                )
    add("forces", "mean |F| per atom", scale * _mean_force(model, subject.batches), f"{unit}/Å")
    for k, f in enumerate(_radial_filters(model)):
        band, tv = filter_shape(f)
        add("bandwidth", f"block {k + 1}", band, "1/Å")
        add("total_variation", f"block {k + 1}", tv, "")
    return rows


def _predict(
    model: AtomisticModel,
    batches: Sequence[MoleculeBatch],
    noise: Optional[tuple] = None,
    rotations: int = 0,
    gen: Optional[torch.Generator] = None,
) -> Tensor:
    """Predictions ``[M]``: as given, with Gaussian noise ``(sigma, gen)`` on
    the coordinates, or averaged over ``rotations`` random rotations (one per
    molecule and draw, from ``gen``)."""
    out = []
    for b in batches:
        pos = b.pos
        if noise is not None:
            sigma, ngen = noise
            pos = pos + sigma * torch.randn(pos.shape, generator=ngen).to(pos.device)
        if rotations == 0:
            out.append(model(b.z, pos, b.batch, num_graphs=b.num_graphs).view(-1))
            continue
        total = torch.zeros(b.num_graphs, device=pos.device)
        for _ in range(rotations):
            rots = torch.stack([random_rotation(gen) for _ in range(b.num_graphs)])  # [B, 3, 3]
            rots = rots.to(pos.device)
            turned = torch.einsum("nij,nj->ni", rots[b.batch], pos)
            total += model(b.z, turned, b.batch, num_graphs=b.num_graphs).view(-1)
        out.append(total / rotations)
    return torch.cat(out)


def _mean_force(model: AtomisticModel, batches: Sequence[MoleculeBatch]) -> float:
    """Mean norm of ``-d prediction / d position`` per atom (0 for a model
    whose prediction is constant between distance bins: a filter rounded to
    bins with its envelope taken at the bin centre never sees a position)."""
    total, count = 0.0, 0
    for b in batches:
        pos = b.pos.clone().requires_grad_(True)
        energy = model(b.z, pos, b.batch, num_graphs=b.num_graphs).sum()
        (grad,) = torch.autograd.grad(energy, pos, allow_unused=True)
        if grad is not None:
            total += float(grad.norm(dim=-1).sum())
        count += b.z.numel()
    return total / max(count, 1)


def _radial_filters(model: AtomisticModel) -> List[RadialFilter]:
    if not isinstance(model, SchNet):
        return []
    return [f for f in model.filters if isinstance(f, RadialFilter)]


def _rounds(model: AtomisticModel) -> bool:
    """Whether test-time rounding applies: SchNet with radial filters."""
    return isinstance(model, SchNet) and all(isinstance(f, RadialFilter) for f in model.filters)


def _invariant(model: AtomisticModel) -> bool:
    return not isinstance(model, SchNet) or all(f.radial for f in model.filters)


def _with_rounding(model: AtomisticModel, width: float) -> AtomisticModel:
    """The same weights, its radial filters' distances rounded to ``width``
    bins (``floor``) at test time."""
    assert isinstance(model, SchNet)
    hp = model.hparams()
    hp["filter"] = dict(hp["filter"], distance_bin_width=width, rounding="floor")
    hp["filter"].pop("discrete_envelope", None)
    rounded = build(**hp)
    rounded.load_state_dict(model.state_dict())
    return rounded.eval()


@torch.no_grad()
def filter_shape(f: RadialFilter, step: float = GRID_STEP) -> tuple:
    """``(bandwidth, total_variation)`` of a radial filter (envelope
    included) on a ``step`` grid from QM9's shortest distance to the cutoff,
    averaged over its channels: the frequency (cycles per Å) below which
    :data:`BANDWIDTH_POWER` of a channel's spectral power lies (mean removed,
    Hann window), and a channel's total variation over its range (1 for a
    monotone channel, more for each swing). The filter is evaluated on the
    device of its weights; the spectrum is taken on the CPU."""
    was = f.training
    f.eval()
    weight = next(f.parameters(), None)  # a filter without weights runs on the CPU
    device = weight.device if weight is not None else torch.device("cpu")
    d = torch.arange(QM9_MIN_DISTANCE, f.cutoff, step, dtype=torch.float64).float().to(device)
    W = f(torch.zeros(len(d), 3, device=device), d).double().cpu()  # [G, F]
    f.train(was)
    rng = (W.max(0).values - W.min(0).values).clamp(min=1e-12)  # [F]
    tv = float(((W[1:] - W[:-1]).abs().sum(0) / rng).mean())
    x = (W - W.mean(0)) * torch.hann_window(len(d), dtype=W.dtype).unsqueeze(-1)
    power = torch.fft.rfft(x, dim=0).abs().square()  # [G // 2 + 1, F]
    freq = torch.fft.rfftfreq(len(d), d=step)  # cycles per Å
    share = power.cumsum(0) / power.sum(0).clamp(min=1e-300)
    first = (share >= BANDWIDTH_POWER).double().argmax(0)  # [F]
    return float(freq[first].mean()), tv


def probes_csv(rows: List[Dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(dict(r, value=f"{r['value']:.6g}"))
    return buf.getvalue()


def probes_table(rows: List[Dict[str, Any]]) -> str:
    """The rows as an aligned text table, one block per subject."""
    lines: List[str] = []
    subject = None
    for r in rows:
        if r["subject"] != subject:
            subject = r["subject"]
            lines.append(("\n" if lines else "") + subject)
        setting = f" ({r['setting']})" if r["setting"] else ""
        lines.append(f"  {r['probe'] + setting:<34} {r['value']:>12.5g} {r['unit']}")
    return "\n".join(lines)
