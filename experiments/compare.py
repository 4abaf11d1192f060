"""The filter comparison: every filter x seed x target, trained on a matched
budget, tabulated with test MAE (mean ± std over seeds), size, speed and the
trained model's rotation (in)variance, plus learning curves.

    pyg-schnet compare [--filters gaussian,coords,conv1d] [--targets U0,gap]
                       [--seeds 3] [--out experiments/results] [--quick] ...
    python -m experiments.compare ...   (the same)

Each run is an ordinary run directory ``OUT/runs/<target>/<filter>_seed<seed>``
(config.yaml, split.npz, log.csv, best.pt, last.pt, metrics.json) plus
``symmetry.json`` (the rotation measurements below), so every cell of
``results.md`` can be traced to its log. Re-running the command skips finished
runs and resumes an interrupted one from its ``last.pt``; a run directory made
with other settings is refused (use a fresh ``--out`` or ``--overwrite``).

Symmetry measurements of a trained model (best.pt) on its own test split:

* ``rot_change``: mean |f(R x) - f(x)| over test molecules, one random
  rotation R per molecule (0 for a rotation-invariant model, up to float noise);
* ``rot_test_mae``: test MAE when every test molecule is randomly rotated
  (what a user gets who feeds a molecule in another orientation);
* ``rot_rel`` / ``trans_rel`` / ``perm_rel``: :func:`pyg_schnet.invariance.
  invariance_errors` on the first 100 test molecules (largest change relative
  to the spread of the predictions).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import os.path as osp
import shlex
import sys
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

HERE = osp.dirname(osp.abspath(__file__))
CONFIG_DIR = osp.join(HERE, "configs")
DEFAULT_TARGETS = ("U0", "gap")
DEFAULT_SEEDS = 3
DEFAULT_OUT = "experiments/results"
QUICK_OUT = "runs/compare_quick"
#: ``--quick``: tiny models on a tiny subset, so the whole comparison (3 filters
#: x 2 seeds x 2 targets) takes about a minute; for tests, not for conclusions.
QUICK = dict(max_molecules=600, train_size=400, val_size=100, test_size=100, hidden_channels=16,
             num_filters=16, num_interactions=2, cutoff=4.0, num_gaussians=16, num_bins=16,
             batch_size=40, epochs=4, patience=4, lr=0.002, num_threads=1)
QUICK_SEEDS = 2
#: Config keys that may differ between a finished run and a re-run without the
#: run being a different experiment.
IGNORED_KEYS = frozenset({"out", "root", "num_threads", "wandb", "wandb_project", "device"})
SYMMETRY_FILE = "symmetry.json"
SYMMETRY_VERSION = 1
SYMMETRY_BATCH = 100

RUN_FIELDS = ("target", "filter", "seed", "unit", "test_mae", "test_rmse", "best_epoch", "epochs",
              "num_params", "train_seconds", "molecules_per_second", "rot_change",
              "rot_test_mae", "rot_rel", "trans_rel", "perm_rel", "run_dir")
RESULT_FIELDS = ("target", "filter", "unit", "seeds", "test_mae_mean", "test_mae_std",
                 "test_rmse_mean", "num_params", "train_seconds_mean",
                 "molecules_per_second_mean", "rot_change_mean", "rot_test_mae_mean",
                 "rot_test_mae_std", "rot_rel_mean", "epochs", "run_dirs")


def _user_error(msg: str) -> Exception:
    from pyg_schnet.errors import UserError
    return UserError(msg)


# -- arguments -------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        raise _user_error(f"{self.prog}: {message}")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pyg-schnet compare",
                description="Train every filter x seed x target on a matched budget and "
                            "tabulate the results (see experiments/compare.py).")
    p.add_argument("--filters", default=None,
                   help="comma-separated filters (default: every registered filter)")
    p.add_argument("--targets", default=None,
                   help=f"comma-separated QM9 targets (default: {','.join(DEFAULT_TARGETS)})")
    p.add_argument("--seeds", default=None,
                   help=f"number of seeds (0..N-1) or a comma-separated list "
                        f"(default: {DEFAULT_SEEDS}, --quick: {QUICK_SEEDS})")
    p.add_argument("--out", default=None,
                   help=f"output folder (default: {DEFAULT_OUT}, --quick: {QUICK_OUT})")
    p.add_argument("--configs", default=CONFIG_DIR,
                   help="folder with one <filter>.yaml per filter (default: experiments/configs)")
    p.add_argument("--quick", action="store_true",
                   help="tiny models and subset, 2 seeds: about a minute (for tests)")
    p.add_argument("--max-molecules", "--max_molecules", type=int, default=None,
                   help="QM9 subset size; train/val/test counts shrink proportionally to fit")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs of every run (also sets patience: no early stopping)")
    p.add_argument("--root", default=None, help="QM9 data root (default: the configs' root)")
    p.add_argument("--num-threads", "--num_threads", type=int, default=None,
                   help="torch threads per run")
    p.add_argument("--overwrite", action="store_true",
                   help="retrain runs whose directory holds other settings")
    return p


def _names(text: Optional[str], choices: Sequence[str], default: Sequence[str], what: str,
           canon=None) -> List[str]:
    if text is None:
        return list(default)
    out: List[str] = []
    for raw in text.split(","):
        name = raw.strip()
        if not name:
            continue
        if canon is not None:
            name = canon(name)
        if name not in choices:
            raise _user_error(f"unknown {what} {raw.strip()!r}; choose from: {', '.join(choices)}")
        if name not in out:
            out.append(name)
    if not out:
        raise _user_error(f"--{what}s needs at least one name; choose from: {', '.join(choices)}")
    return out


def _seeds(text: Optional[str], default: int) -> List[int]:
    if text is None:
        return list(range(default))
    text = text.strip()
    try:
        if "," not in text:
            n = int(text)
            if n < 1:
                raise _user_error(f"--seeds must be at least 1, got {n}")
            return list(range(n))
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise _user_error(f"--seeds takes a count or a comma-separated list of integers, "
                          f"got {text!r}") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise _user_error(f"--seeds list must hold distinct non-negative integers, got {text!r}")
    return seeds


def _canon_target(name: str) -> str:
    from pyg_schnet.data import TARGETS
    lower = {t.lower(): t for t in TARGETS}
    return lower.get(name.lower(), name)


# -- configs ---------------------------------------------------------------------

def _fit_counts(base: Dict[str, Any], n: int) -> Dict[str, Any]:
    """Shrink integer train/val/test counts proportionally so they fit ``n``
    molecules (fractions are left alone)."""
    sizes = {k: base.get(k) for k in ("train_size", "val_size", "test_size")}
    counts = {k: float(v) for k, v in sizes.items() if v is not None and float(v) >= 1}
    total = sum(counts.values())
    if not counts or total <= n:
        return {}
    scaled = {k: max(1, int(v * n / total)) for k, v in counts.items()}
    return scaled


def run_config(config_dir: str, filter_name: str, target: str, seed: int,
               extra: Dict[str, Any], out_dir: str):
    """The Config of one run: ``<config_dir>/<filter>.yaml`` + overrides."""
    from pyg_schnet.config import load_config, read_yaml
    path = osp.join(config_dir, f"{filter_name}.yaml")
    if not osp.isfile(path):
        raise _user_error(f"no config for filter {filter_name!r}: {path} does not exist")
    overrides = dict(extra)
    if overrides.get("max_molecules") is not None:
        base = dict(read_yaml(path), **{k: v for k, v in overrides.items()
                                        if k in ("train_size", "val_size", "test_size")})
        for k, v in _fit_counts(base, int(overrides["max_molecules"])).items():
            overrides[k] = v
    overrides.update(filter=filter_name, target=target, seed=seed,
                     out=osp.join(out_dir, "runs", target, f"{filter_name}_seed{seed}"))
    cfg = load_config(path, overrides)
    if cfg.filter != filter_name:  # pragma: no cover - overrides win
        raise _user_error(f"{path} sets filter {cfg.filter!r}, expected {filter_name!r}")
    return cfg


def _differences(saved: Dict[str, Any], wanted: Dict[str, Any]) -> List[str]:
    keys = sorted((set(saved) | set(wanted)) - IGNORED_KEYS)
    return [k for k in keys if saved.get(k) != wanted.get(k)]


def run_status(cfg, overwrite: bool) -> str:
    """``new``, ``finished``, ``interrupted`` or ``stale`` (files but nothing to
    resume) for the run directory of ``cfg``; other settings -> UserError."""
    from pyg_schnet.config import load_config
    out = cfg.out
    if not osp.isdir(out) or not os.listdir(out):
        return "new"
    saved_path = osp.join(out, "config.yaml")
    if osp.isfile(saved_path):
        try:
            saved = load_config(saved_path).to_dict()
        except Exception:
            saved = None
        diff = ["config.yaml (unreadable)"] if saved is None else \
            _differences(saved, cfg.to_dict())
        if diff:
            if overwrite:
                return "stale"
            raise _user_error(f"{out} holds a run with other settings ({', '.join(diff)}); "
                              f"use a fresh --out or pass --overwrite to retrain it")
    if osp.isfile(osp.join(out, "metrics.json")) and osp.isfile(osp.join(out, "best.pt")):
        return "finished"
    if osp.isfile(osp.join(out, "last.pt")) and osp.isfile(saved_path) \
            and osp.isfile(osp.join(out, "split.npz")):
        return "interrupted"
    return "stale"


# -- symmetry of a trained model ---------------------------------------------------

def symmetry_metrics(run_dir: str, dataset, seed: int = 1234) -> Dict[str, float]:
    """Rotation measurements of a run's best model on its test split (see the
    module docstring); cached in ``<run_dir>/symmetry.json``."""
    import torch
    from pyg_schnet.data import UNITS, load_split, target_index
    from pyg_schnet.evaluate import load_run
    from pyg_schnet.invariance import invariance_errors, random_rotation
    from pyg_schnet.loader import MoleculeLoader

    path = osp.join(run_dir, SYMMETRY_FILE)
    if osp.isfile(path):
        try:
            with open(path) as f:
                cached = json.load(f)
            if cached.get("version") == SYMMETRY_VERSION:
                return cached
        except (OSError, ValueError):
            pass
    cfg, model, _ = load_run(run_dir)
    split = load_split(osp.join(run_dir, "split.npz"), len(dataset))
    idx = split.test_idx if len(split.test_idx) else split.val_idx
    loader = MoleculeLoader(dataset, idx, 250, target_index(cfg.target))
    gen = torch.Generator().manual_seed(seed)
    change, rot_err, n = 0.0, 0.0, 0
    first = None
    with torch.no_grad():
        for b in loader:
            if first is None:
                first = b
            pred = model(b.z, b.pos, b.batch, num_graphs=b.num_graphs).view(-1).double()
            rots = torch.stack([random_rotation(gen) for _ in range(b.num_graphs)])
            pos = torch.einsum("nij,nj->ni", rots[b.batch], b.pos)
            rpred = model(b.z, pos, b.batch, num_graphs=b.num_graphs).view(-1).double()
            change += float((rpred - pred).abs().sum())
            rot_err += float((rpred - b.y.double()).abs().sum())
            n += b.num_graphs
    k = min(SYMMETRY_BATCH, len(idx))
    sub = MoleculeLoader(dataset, idx[:k], k).gather(torch.as_tensor(idx[:k]))
    inv = invariance_errors(model, sub.z, sub.pos, sub.batch, seed=0)
    out = {"version": SYMMETRY_VERSION, "unit": UNITS[cfg.target], "molecules": n,
           "rot_change": change / max(n, 1), "rot_test_mae": rot_err / max(n, 1),
           "rot_rel": inv["rotation"], "trans_rel": inv["translation"],
           "perm_rel": inv["permutation"], "batch_molecules": k}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
    return out


# -- one run -------------------------------------------------------------------------

def _read_log(run_dir: str) -> List[Dict[str, float]]:
    path = osp.join(run_dir, "log.csv")
    if not osp.isfile(path):
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _median(xs: Sequence[float]) -> float:
    xs = sorted(x for x in xs if x == x)
    if not xs:
        return float("nan")
    m = len(xs) // 2
    return xs[m] if len(xs) % 2 else 0.5 * (xs[m - 1] + xs[m])


def report_scale(unit: str) -> Tuple[str, float]:
    """Unit and factor used in the tables: meV for eV targets."""
    return ("meV", 1000.0) if unit == "eV" else (unit, 1.0)


def run_row(cfg, metrics: Dict[str, Any], sym: Dict[str, Any], out_dir: str) -> Dict[str, Any]:
    unit, s = report_scale(metrics["unit"])
    log = _read_log(cfg.out)
    return {"target": cfg.target, "filter": cfg.filter, "seed": cfg.seed, "unit": unit,
            "test_mae": metrics["test_mae"] * s, "test_rmse": metrics["test_rmse"] * s,
            "best_epoch": metrics["best_epoch"], "epochs": metrics["epochs"],
            "num_params": metrics["num_params"], "train_seconds": metrics["train_seconds"],
            "molecules_per_second": _median([r["molecules_per_second"] for r in log]),
            "rot_change": sym["rot_change"] * s, "rot_test_mae": sym["rot_test_mae"] * s,
            "rot_rel": sym["rot_rel"], "trans_rel": sym["trans_rel"], "perm_rel": sym["perm_rel"],
            "run_dir": osp.relpath(cfg.out, out_dir)}


# -- aggregation and output ------------------------------------------------------------

def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def _std(xs: Sequence[float]) -> float:
    """Sample standard deviation (n - 1); NaN for a single seed."""
    if len(xs) < 2:
        return float("nan")
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def aggregate(rows: Sequence[Dict[str, Any]], targets: Sequence[str],
              filters: Sequence[str]) -> List[Dict[str, Any]]:
    out = []
    for t in targets:
        for f in filters:
            rs = [r for r in rows if r["target"] == t and r["filter"] == f]
            if not rs:
                continue
            col = lambda k: [float(r[k]) for r in rs]  # noqa: E731
            out.append({"target": t, "filter": f, "unit": rs[0]["unit"],
                        "seeds": " ".join(str(r["seed"]) for r in rs),
                        "test_mae_mean": _mean(col("test_mae")),
                        "test_mae_std": _std(col("test_mae")),
                        "test_rmse_mean": _mean(col("test_rmse")),
                        "num_params": rs[0]["num_params"],
                        "train_seconds_mean": _mean(col("train_seconds")),
                        "molecules_per_second_mean": _mean(col("molecules_per_second")),
                        "rot_change_mean": _mean(col("rot_change")),
                        "rot_test_mae_mean": _mean(col("rot_test_mae")),
                        "rot_test_mae_std": _std(col("rot_test_mae")),
                        "rot_rel_mean": _mean(col("rot_rel")),
                        "epochs": "/".join(sorted({str(r["epochs"]) for r in rs}, key=int)),
                        "run_dirs": ";".join(r["run_dir"] for r in rs)})
    return out


def _write_csv(path: str, fields: Sequence[str], rows: Iterable[Dict[str, Any]]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(fields))
        w.writeheader()
        for r in rows:
            w.writerow({k: r[k] for k in fields})
    os.replace(tmp, path)


def _fmt(x: float, digits: int = 3) -> str:
    if x != x:
        return "n/a"
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) < 1e-3:
        return f"{x:.1e}"
    return f"{x:.{digits}g}"


def _pm(mean: float, std: float) -> str:
    return _fmt(mean) if std != std else f"{_fmt(mean)} ± {_fmt(std, 2)}"


def write_markdown(path: str, agg: Sequence[Dict[str, Any]], rows: Sequence[Dict[str, Any]],
                   settings: Dict[str, Any], command: str, plots: Sequence[str]) -> None:
    lines = ["# Filter comparison: gaussian vs coords vs conv1d", ""]
    lines += [f"Command: `{command}`", ""]
    lines += ["Settings (identical for every filter; matched budget of epochs): "
              + ", ".join(f"{k} {v}" for k, v in settings.items()) + ".", ""]
    lines += ["Test MAE of the best-validation checkpoint, mean ± sample std over seeds "
              "(the seed sets the split, the initialisation and the batch order; filters "
              "share splits seed by seed). *rotated test MAE*: the same test set with every "
              "molecule randomly rotated; *rotation change*: mean |f(Rx) − f(x)| over the test "
              "set; *rotation rel.*: largest change under rotation over the spread of the "
              "predictions on 100 test molecules. Train s (training and validation, all epochs) "
              "and molecules/s (median training throughput over epochs) are wall-clock "
              "measurements on a shared machine: noisy.", ""]
    header = ("| target | filter | test MAE | rotated test MAE | rotation change | "
              "rotation rel. | params | train s | molecules/s | epochs |")
    lines += [header, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for a in agg:
        u = a["unit"]
        lines.append(f"| {a['target']} | {a['filter']} | {_pm(a['test_mae_mean'], a['test_mae_std'])}"
                     f" {u} | {_pm(a['rot_test_mae_mean'], a['rot_test_mae_std'])} {u} | "
                     f"{_fmt(a['rot_change_mean'])} {u} | {_fmt(a['rot_rel_mean'])} | "
                     f"{int(a['num_params']):,} | {_fmt(a['train_seconds_mean'])} | "
                     f"{a['molecules_per_second_mean']:.0f} | {a['epochs']} |")
    lines += [""]
    for p in plots:
        lines += [f"![learning curves]({p})", ""]
    lines += ["## Runs", "", "Every run's own directory (config.yaml, log.csv, metrics.json, "
              "symmetry.json; checkpoints are not committed).", "",
              "| target | filter | seed | test MAE | rotated test MAE | best epoch | train s | "
              "run directory |", "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['target']} | {r['filter']} | {r['seed']} | {_fmt(r['test_mae'])} "
                     f"{r['unit']} | {_fmt(r['rot_test_mae'])} {r['unit']} | {r['best_epoch']} | "
                     f"{_fmt(r['train_seconds'])} | [{r['run_dir']}]({r['run_dir']}/log.csv) |")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


COLORS = {"gaussian": "tab:blue", "coords": "tab:red", "conv1d": "tab:green"}


def plot_learning_curves(out_dir: str, target: str,
                         runs: Sequence[Tuple[str, str, float, str]]) -> str:
    """``learning_curves_<target>.png``: validation MAE against epoch and wall
    time, one colour per filter, mean over seeds with the min-max band shaded.
    ``runs`` holds (filter, run_dir, unit scale, unit)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=110, sharey=True)
    unit = None
    by_filter: Dict[str, List[Tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    for f, run_dir, scale, u in runs:
        unit = u
        log = _read_log(run_dir)
        if not log:
            continue
        by_filter.setdefault(f, []).append((np.array([r["epoch"] for r in log]),
                                            np.array([r["elapsed"] for r in log]),
                                            np.array([r["val_mae"] for r in log]) * scale))
    for k, (f, curves) in enumerate(by_filter.items()):
        color = COLORS.get(f, f"C{k}")
        n = min(len(c[0]) for c in curves)
        ep = curves[0][0][:n]
        vals = np.stack([c[2][:n] for c in curves])
        ax = axes[0]
        ax.plot(ep, vals.mean(0), color=color, label=f"{f} ({len(curves)} seeds)")
        if len(curves) > 1:
            ax.fill_between(ep, vals.min(0), vals.max(0), color=color, alpha=0.2, lw=0)
        # wall time: interpolate every seed onto a common grid
        lo = max(c[1][0] for c in curves)
        hi = min(c[1][-1] for c in curves)
        ax = axes[1]
        if len(curves) > 1 and hi > lo:
            grid = np.linspace(lo, hi, 200)
            vals_t = np.stack([np.interp(grid, c[1], c[2]) for c in curves])
            ax.plot(grid, vals_t.mean(0), color=color, label=f)
            ax.fill_between(grid, vals_t.min(0), vals_t.max(0), color=color, alpha=0.2, lw=0)
        else:  # one seed (or no common time range): each seed's own curve
            for j, c in enumerate(curves):
                ax.plot(c[1], c[2], color=color, lw=1, label=None if j else f)
    from matplotlib.ticker import MaxNLocator
    axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_xlabel("epoch")
    axes[1].set_xlabel("training wall time [s] (incl. validation)")
    axes[0].set_ylabel(f"validation MAE [{unit}]")
    for ax in axes:
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{target}: validation MAE (mean over seeds, band = min-max)", fontsize=10)
    fig.tight_layout()
    name = f"learning_curves_{target}.png"
    tmp = osp.join(out_dir, name + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, osp.join(out_dir, name))
    return name


# -- main ------------------------------------------------------------------------------------

def _say(msg: str) -> None:
    print(msg, flush=True)


def main(argv: Optional[List[str]] = None) -> int:
    """Run the comparison; returns 0 (bad input raises UserError)."""
    from pyg_schnet.data import QM9, TARGETS, UNITS
    from pyg_schnet.filters import FILTERS
    from pyg_schnet.train import train

    argv = list(sys.argv[1:] if argv is None else argv)
    a = _parser().parse_args(argv)
    filters = _names(a.filters, list(FILTERS), list(FILTERS), "filter")
    targets = _names(a.targets, list(TARGETS), DEFAULT_TARGETS, "target", canon=_canon_target)
    seeds = _seeds(a.seeds, QUICK_SEEDS if a.quick else DEFAULT_SEEDS)
    out_dir = a.out or (QUICK_OUT if a.quick else DEFAULT_OUT)
    if not osp.isdir(a.configs):
        raise _user_error(f"config folder {a.configs} does not exist")
    if a.epochs is not None and a.epochs < 1:
        raise _user_error(f"--epochs must be at least 1, got {a.epochs}")
    if a.max_molecules is not None and a.max_molecules < 3:
        raise _user_error(f"--max-molecules must be at least 3, got {a.max_molecules}")
    if a.num_threads is not None and a.num_threads < 1:
        raise _user_error(f"--num-threads must be at least 1, got {a.num_threads}")
    if osp.exists(out_dir) and not osp.isdir(out_dir):
        raise _user_error(f"output {out_dir} is a file")

    extra: Dict[str, Any] = dict(QUICK) if a.quick else {}
    if a.epochs is not None:
        extra.update(epochs=a.epochs, patience=a.epochs)
    if a.max_molecules is not None:
        extra["max_molecules"] = a.max_molecules
    if a.root is not None:
        extra["root"] = a.root
    if a.num_threads is not None:
        extra["num_threads"] = a.num_threads

    # every config first, so bad settings fail before any training
    plan = [(seed, t, f) for seed in seeds for t in targets for f in filters]
    cfgs = {(seed, t, f): run_config(a.configs, f, t, seed, extra, out_dir)
            for seed, t, f in plan}
    status = {key: run_status(cfg, a.overwrite) for key, cfg in cfgs.items()}
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise _user_error(f"cannot create output folder {out_dir}: {exc.strerror}") from None

    command = "pyg-schnet compare " + " ".join(shlex.quote(x) for x in argv)
    todo = sum(s != "finished" for s in status.values())
    _say(f"compare: {len(filters)} filters x {len(targets)} targets x {len(seeds)} seeds = "
         f"{len(plan)} runs ({len(plan) - todo} finished, {todo} to train) -> {out_dir}")
    t_start = time.perf_counter()
    datasets: Dict[Tuple[str, Any], Any] = {}
    rows: List[Dict[str, Any]] = []
    for i, key in enumerate(plan, 1):
        seed, t, f = key
        cfg, st = cfgs[key], status[key]
        tag = f"[{i}/{len(plan)}] {t} {f} seed {seed}"
        if st == "finished":
            with open(osp.join(cfg.out, "metrics.json")) as fh:
                metrics = json.load(fh)
            what = "finished before, skipped"
        else:
            sym_path = osp.join(cfg.out, SYMMETRY_FILE)
            if osp.exists(sym_path):
                os.remove(sym_path)
            t0 = time.perf_counter()
            _say(f"{tag}: {'resuming from last.pt' if st == 'interrupted' else 'training'} "
                 f"({cfg.out})")
            metrics = train(cfg, resume=(st == "interrupted"), overwrite=(st == "stale"),
                            quiet=True)
            what = f"trained in {time.perf_counter() - t0:.0f} s"
        dkey = (cfg.root, cfg.max_molecules)
        if dkey not in datasets:
            datasets[dkey] = QM9(cfg.root, source=cfg.source, max_molecules=cfg.max_molecules)
        sym = symmetry_metrics(cfg.out, datasets[dkey])
        row = run_row(cfg, metrics, sym, out_dir)
        rows.append(row)
        _say(f"{tag}: {what}; test MAE {_fmt(row['test_mae'])} {row['unit']}, rotated "
             f"{_fmt(row['rot_test_mae'])} {row['unit']}")

    rows.sort(key=lambda r: (targets.index(r["target"]), filters.index(r["filter"]), r["seed"]))
    agg = aggregate(rows, targets, filters)
    _write_csv(osp.join(out_dir, "runs.csv"), RUN_FIELDS, rows)
    _write_csv(osp.join(out_dir, "results.csv"), RESULT_FIELDS, agg)
    plots = []
    for t in targets:
        runs = []
        for r in rows:
            if r["target"] == t:
                cfg = cfgs[(r["seed"], t, r["filter"])]
                unit, scale = report_scale(UNITS[t])
                runs.append((r["filter"], cfg.out, scale, unit))
        plots.append(plot_learning_curves(out_dir, t, runs))
    c0 = cfgs[plan[0]]
    settings = {
        "QM9 subset": f"{c0.max_molecules or 'all'} molecules "
                      f"(train {_size(c0.train_size)} / val {_size(c0.val_size)} / "
                      f"test {_size(c0.test_size)})",
        "model": f"hidden {c0.hidden_channels}, filters {c0.num_filters}, "
                 f"{c0.num_interactions} interactions, cutoff {c0.cutoff:g} Å, "
                 f"{c0.num_gaussians} gaussians / {c0.num_bins} bins",
        "training": f"{c0.epochs} epochs, batch {c0.batch_size}, Adam lr {c0.lr:g} with "
                    f"ReduceLROnPlateau (patience {c0.lr_patience}, factor {c0.lr_factor:g}), "
                    f"no rotation augmentation",
        "seeds": ", ".join(map(str, seeds)),
        "torch threads per run": str(c0.num_threads or "default"),
    }
    write_markdown(osp.join(out_dir, "results.md"), agg, rows, settings, command, plots)
    _say(f"compare: done in {time.perf_counter() - t_start:.0f} s; wrote "
         f"{osp.join(out_dir, 'results.md')}, results.csv, runs.csv and {', '.join(plots)}")
    for ag in agg:
        _say(f"  {ag['target']:<5} {ag['filter']:<9} test MAE "
             f"{_pm(ag['test_mae_mean'], ag['test_mae_std'])} {ag['unit']}")
    return 0


def _size(v: Optional[float]) -> str:
    if v is None:
        return "rest"
    return f"{int(v)}" if float(v) >= 1 else f"{v:g}"


if __name__ == "__main__":
    from pyg_schnet.errors import UserError
    try:
        sys.exit(main())
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
