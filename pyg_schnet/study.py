"""Studies: a grid of training runs from one spec, resumable, with paired statistics.

    pyg-schnet study run SPEC.yaml [SPEC.yaml ...] [--quick] [--jobs N] [--out DIR]
                                [--root DIR] [--source qm9pack|pyg] [--overwrite]
    pyg-schnet study report SPEC.yaml [SPEC.yaml ...] [--quick] [--out DIR]

Several specs form a queue: all are read and checked first, then run one after
the other (``--out`` needs a single spec).

A spec (YAML) names a base config, named variants (config overrides), targets,
seeds and training-set sizes; every combination is one ordinary run directory
``OUT/runs/<target>/<variant>/n<size>_seed<seed>``. Relative paths in a spec
(``base``, ``out``) are relative to the spec file, and a relative ``root`` to
the file that sets it, so the commands work from any directory::

    name: factors
    description: one line on what the study asks
    base: {filter: gaussian, hidden_channels: 64, ...}   # or a config file path
    variants:                                 # the first one is the reference
      gaussian: {}
      distance: {filter: distance}
    reference: gaussian                      # optional
    contrasts:                                # optional: one factor each, variant - baseline
      radial basis removed: [distance, gaussian]
    targets: [U0, gap]
    seeds: 3                                  # a count (0..N-1) or a list
    train_sizes: [20000]                      # a list is a learning curve
    val_size: 5000
    test_size: 10000
    size_overrides: {1000: {epochs: 300}, 50000: {seeds: [0]}}   # optional, per size
    keep_weights: [0]                         # seeds whose model-only weights are kept
    quick: {seeds: 2, train_sizes: [200], hidden_channels: 16, ...}   # --quick
    out: results/factors                      # optional, default: <spec dir>/<name>
    reuse: [factors]                          # optional: other studies' output folders

A run of a ``reuse`` folder with exactly this run's settings (the same target,
training size, seed and split) is copied instead of trained again, with a
``reused_from`` file naming its origin; its training time counts in its own
study.

Splits: for a seed, one permutation of the data set gives the test set, then
the validation set, then the training molecules (:func:`~pyg_schnet.data.
nested_split`): every variant of a seed sees the same split, and a smaller
training set is a subset of a larger one. So variants can be compared *paired*
(same seed, same split): the report gives per variant the mean difference to
the reference with a 95% t-interval over seeds, and how many seeds agree in
sign; each named contrast (a variant against the variant it changes in one
factor, not necessarily the reference) gets the same statistics.

Resuming: a finished run (metrics.json) is skipped, an interrupted one resumes
from its last.pt, and a run directory holding other settings is refused (or,
with ``--overwrite``, retrained). ``--jobs N`` trains N runs at once in worker
processes with one thread each (for small models two one-thread processes
train about 1.8x faster than one two-thread process on two cores).
"""
from __future__ import annotations

import csv
import json
import math
import os
import os.path as osp
import shlex
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .errors import UserError
from .io import write_csv, write_json, write_text

SPEC_KEYS = ("name", "description", "base", "variants", "reference", "contrasts", "targets",
             "seeds", "train_sizes", "val_size", "test_size", "size_overrides", "keep_weights",
             "quick", "out", "reuse")
#: Spec keys that ``quick`` may replace; its other keys are config overrides.
QUICK_SPEC_KEYS = ("targets", "seeds", "train_sizes", "val_size", "test_size", "keep_weights",
                   "size_overrides")
#: Keys the runner sets per run (a spec may not set them in the base or a variant).
RUN_KEYS = ("target", "seed", "train_size", "val_size", "test_size", "split_file", "out")
SYMMETRY_FILE = "symmetry.json"
SYMMETRY_VERSION = 1
from .train import WEIGHTS_FILE, export_weights  # noqa: E402  (the model-only weights)


# -- the spec ---------------------------------------------------------------------------

@dataclass
class Spec:
    """A parsed study spec (see the module docstring)."""
    path: str
    name: str
    description: str
    base: Dict[str, Any]
    variants: Dict[str, Dict[str, Any]]
    reference: str
    targets: List[str]
    seeds: List[int]
    train_sizes: List[int]
    val_size: int
    test_size: int
    size_overrides: Dict[int, Dict[str, Any]] = field(default_factory=dict)
    size_seeds: Dict[int, List[int]] = field(default_factory=dict)
    keep_weights: List[int] = field(default_factory=list)
    out: str = ""
    quick: bool = False
    reuse: List[str] = field(default_factory=list)
    #: name -> (variant, baseline): paired differences reported beside the reference's
    contrasts: Dict[str, Tuple[str, str]] = field(default_factory=dict)


def _fail(path: str, msg: str) -> UserError:
    return UserError(f"study spec {path}: {msg}")


def _int_list(path: str, key: str, value: Any, minimum: int) -> List[int]:
    items = value if isinstance(value, list) else [value]
    out = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or float(v) != int(v) \
                or int(v) < minimum:
            raise _fail(path, f"{key} must be {'a list of ' if isinstance(value, list) else ''}"
                              f"whole numbers >= {minimum}, got {value!r}")
        out.append(int(v))
    if len(set(out)) != len(out) or not out:
        raise _fail(path, f"{key} must hold distinct values, got {value!r}")
    return out


def _mapping(path: str, key: str, value: Any) -> Dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(path, f"{key} must be a mapping of config keys to values, got {value!r}")
    return {str(k).replace("-", "_"): v for k, v in value.items()}


def load_spec(path: str, quick: bool = False, out: Optional[str] = None,
              root: Optional[str] = None, source: Optional[str] = None) -> Spec:
    """Read and check a spec; ``quick`` applies its ``quick`` section, ``out``,
    ``root`` and ``source`` replace the spec's output folder, data root and
    QM9 source."""
    from .config import read_yaml
    path = osp.abspath(path)
    raw = read_yaml(path)
    _check_keys(path, raw)
    name = str(raw.get("name") or osp.splitext(osp.basename(path))[0])
    base, base_dir = _read_base(path, raw["base"])
    variants, reference = _read_variants(path, raw)
    contrasts = _read_contrasts(path, raw.get("contrasts"), variants)
    values, config_quick = _apply_quick(path, raw, quick)
    targets = _read_targets(path, values["targets"])
    seeds_raw = values["seeds"]
    seeds = list(range(_int_list(path, "seeds", seeds_raw, 1)[0])) \
        if not isinstance(seeds_raw, list) else _int_list(path, "seeds", seeds_raw, 0)
    sizes = _int_list(path, "train_sizes", values.get("train_sizes", base.get("train_size")), 1)
    val_size = _int_list(path, "val_size", values["val_size"], 1)[0]
    test_size = _int_list(path, "test_size", values["test_size"], 1)[0]
    size_overrides, size_seeds = _read_size_overrides(path, values, sizes)
    keep = values.get("keep_weights") or []
    keep_weights = _int_list(path, "keep_weights", keep, 0) if keep != [] else []
    for where, mapping in [("base", base), *((f"variant {k}", v) for k, v in variants.items()),
                           *((f"size_overrides {k}", v) for k, v in size_overrides.items())]:
        bad = sorted(set(mapping) & set(RUN_KEYS))
        if bad:
            raise _fail(path, f"{where} sets {', '.join(bad)}, which the study sets per run")
    base = _resolve_data(dict(base, **config_quick), base_dir, root, source)
    out_dir, reuse = _resolve_outputs(path, raw, name, quick, out)
    spec = Spec(path=path, name=name, description=str(raw.get("description") or ""), base=base,
                variants=variants, reference=reference, targets=targets, seeds=seeds,
                train_sizes=sizes, val_size=val_size, test_size=test_size,
                size_overrides=size_overrides, size_seeds=size_seeds,
                keep_weights=keep_weights, out=out_dir,
                quick=quick, reuse=reuse, contrasts=contrasts)
    plan(spec)  # every run's config, so bad settings fail before any training
    return spec


def _check_keys(path: str, raw: Dict[str, Any]) -> None:
    unknown = sorted(set(map(str, raw)) - set(SPEC_KEYS))
    if unknown:
        raise _fail(path, f"unknown key(s) {', '.join(unknown)}; valid keys: "
                          f"{', '.join(SPEC_KEYS)}")
    for key in ("base", "variants", "targets", "seeds", "test_size", "val_size"):
        if key not in raw:
            raise _fail(path, f"needs {key!r}")


def _read_base(path: str, base_raw: Any) -> Tuple[Dict[str, Any], str]:
    """The base config (inline, or a config file named relative to the spec)
    and the folder a relative data root in it is relative to."""
    from .config import read_yaml
    here = osp.dirname(path)
    if isinstance(base_raw, str):
        base_path = osp.join(here, base_raw)
        base = {str(k).replace("-", "_"): v for k, v in read_yaml(base_path).items()}
        return base, osp.dirname(osp.abspath(base_path))
    return _mapping(path, "base", base_raw), here


def _read_variants(path: str, raw: Dict[str, Any]) -> Tuple[Dict[str, Dict[str, Any]], str]:
    variants_raw = raw["variants"]
    if not isinstance(variants_raw, dict) or not variants_raw:
        raise _fail(path, "variants must be a non-empty mapping of names to config overrides")
    variants = {str(k): _mapping(path, f"variant {k}", v) for k, v in variants_raw.items()}
    for vname in variants:
        if not vname or "/" in vname or vname.startswith("."):
            raise _fail(path, f"variant name {vname!r} cannot name a folder")
    reference = str(raw.get("reference") or next(iter(variants)))
    if reference not in variants:
        raise _fail(path, f"reference {reference!r} is not a variant; variants: "
                          f"{', '.join(variants)}")
    return variants, reference


def _read_contrasts(path: str, raw: Any, variants: Dict[str, Dict[str, Any]]
                    ) -> Dict[str, Tuple[str, str]]:
    """``contrasts``: a mapping of names to ``[variant, baseline]`` pairs."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _fail(path, f"contrasts must map names to [variant, baseline] pairs, got {raw!r}")
    out: Dict[str, Tuple[str, str]] = {}
    for name, pair in raw.items():
        if not isinstance(pair, list) or len(pair) != 2 or pair[0] == pair[1]:
            raise _fail(path, f"contrast {name!r} must be [variant, baseline] (two different "
                              f"variants), got {pair!r}")
        for v in pair:
            if str(v) not in variants:
                raise _fail(path, f"contrast {name!r}: {v!r} is not a variant; variants: "
                                  f"{', '.join(variants)}")
        out[str(name)] = (str(pair[0]), str(pair[1]))
    return out


def _apply_quick(path: str, raw: Dict[str, Any], quick: bool
                 ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The spec's values with its ``quick`` section applied (spec keys), and
    the config overrides that section holds."""
    values = dict(raw)
    config_quick: Dict[str, Any] = {}
    if quick:
        for k, v in _mapping(path, "quick", raw.get("quick")).items():
            if k in QUICK_SPEC_KEYS:
                values[k] = v
            else:
                config_quick[k] = v
    return values, config_quick


def _read_targets(path: str, value: Any) -> List[str]:
    from .data import TARGETS, target_index
    targets = []
    for t in value if isinstance(value, list) else [value]:
        try:
            targets.append(TARGETS[target_index(str(t))])
        except UserError as exc:
            raise _fail(path, str(exc)) from None
    return targets


def _read_size_overrides(path: str, values: Dict[str, Any], sizes: List[int]
                         ) -> Tuple[Dict[int, Dict[str, Any]], Dict[int, List[int]]]:
    """Config overrides per training size, and the seeds of the sizes that
    run fewer (the costliest)."""
    size_overrides: Dict[int, Dict[str, Any]] = {}
    size_seeds: Dict[int, List[int]] = {}
    so = values.get("size_overrides") or {}
    if not isinstance(so, dict):
        raise _fail(path, "size_overrides must map training sizes to config overrides")
    for k, v in so.items():
        size = _int_list(path, "size_overrides", k, 1)[0]
        if size not in sizes:
            raise _fail(path, f"size_overrides names {size}, which is not in train_sizes")
        size_overrides[size] = _mapping(path, f"size_overrides {k}", v)
        if "seeds" in size_overrides[size]:
            size_seeds[size] = _int_list(path, f"size_overrides {k} seeds",
                                         size_overrides[size].pop("seeds"), 0)
    return size_overrides, size_seeds


def _resolve_data(base: Dict[str, Any], base_dir: str, root: Optional[str],
                  source: Optional[str]) -> Dict[str, Any]:
    """The base config with the data root and source given on the command
    line, or its own root made absolute (relative to the file naming it)."""
    if source is not None:
        base["source"] = source
    if root is not None:
        base["root"] = osp.abspath(root)
    elif isinstance(base.get("root"), str) and not osp.isabs(base["root"]):
        base["root"] = osp.normpath(osp.join(base_dir, base["root"]))
    return base


def _resolve_outputs(path: str, raw: Dict[str, Any], name: str, quick: bool,
                     out: Optional[str]) -> Tuple[str, List[str]]:
    """The output folder and the folders whose identical runs are reused."""
    here = osp.dirname(path)
    if out is not None:
        out_dir = osp.abspath(out)
    elif quick:
        out_dir = osp.join(here, f"{name}_quick")
    else:
        out_dir = osp.normpath(osp.join(here, str(raw.get("out") or name)))
    reuse_raw = raw.get("reuse") or []
    if not isinstance(reuse_raw, list) or not all(isinstance(x, str) for x in reuse_raw):
        raise _fail(path, f"reuse must be a list of study output folders, got {reuse_raw!r}")
    reuse = [] if quick else [osp.normpath(osp.join(here, x)) for x in reuse_raw]
    return out_dir, reuse


# -- the plan -----------------------------------------------------------------------------

@dataclass
class Run:
    variant: str
    target: str
    size: int
    seed: int
    cfg: Any  # Config

    @property
    def rel(self) -> str:
        return osp.join("runs", self.target, self.variant, f"n{self.size}_seed{self.seed}")


def split_path(spec: Spec, size: int, seed: int) -> str:
    return osp.join(spec.out, "splits",
                    f"seed{seed}_train{size}_val{spec.val_size}_test{spec.test_size}.npz")


def plan(spec: Spec) -> List[Run]:
    """Every run, ordered seed by seed (so paired comparisons fill in early),
    then by size, target and variant."""
    from .config import load_config
    runs = []
    for seed in sorted(set(spec.seeds).union(*spec.size_seeds.values())):
        for size in spec.train_sizes:
            if seed not in spec.size_seeds.get(size, spec.seeds):
                continue
            for target in spec.targets:
                for variant, overrides in spec.variants.items():
                    values = dict(spec.base, **overrides, **spec.size_overrides.get(size, {}))
                    values.update(target=target, seed=seed, train_size=size,
                                  val_size=spec.val_size, test_size=spec.test_size,
                                  split_file=split_path(spec, size, seed))
                    run = Run(variant, target, size, seed, None)
                    values["out"] = osp.join(spec.out, run.rel)
                    try:
                        run.cfg = load_config(None, values)
                    except UserError as exc:
                        raise _fail(spec.path, f"variant {variant}: {exc}") from None
                    runs.append(run)
    return runs


def _statuses(runs: Sequence[Run], overwrite: bool) -> Dict[str, str]:
    """Status of every run's directory; a directory holding other settings
    is refused (or, with ``overwrite``, marked stale)."""
    from .rundir import FINISHED, INTERRUPTED, NEW, STALE, RunDir
    out: Dict[str, str] = {}
    refused = []
    for r in runs:
        rd = RunDir(r.cfg.out)
        st = rd.status()
        if st != NEW and rd.has("config.yaml"):
            diff = rd.differences(r.cfg)
            if diff:
                if not overwrite:
                    refused.append((r, diff))
                st = STALE
        out[r.rel] = st
    if refused:
        r, diff = refused[0]
        more = f" (and {len(refused) - 1} more runs)" if len(refused) > 1 else ""
        raise UserError(f"{r.cfg.out} holds a run with other settings ({', '.join(diff)}){more}; "
                        f"use another --out or pass --overwrite to retrain it")
    assert all(s in (NEW, FINISHED, INTERRUPTED, STALE) for s in out.values())
    return out


REUSED_FILE = "reused_from"
#: Files copied from a reused run (checkpoints only if they are there).
REUSE_FILES = ("config.yaml", "split.npz", "log.csv", "metrics.json", SYMMETRY_FILE,
               WEIGHTS_FILE, "best.pt")


def adopt_reused(spec: Spec, runs: Sequence[Run]) -> int:
    """Copy every new run that a ``reuse`` folder holds, finished, with the
    same settings; returns how many were copied."""
    import shutil
    from .rundir import NEW, RunDir
    copied = 0
    for r in runs:
        if RunDir(r.cfg.out).status() != NEW:
            continue
        for folder in spec.reuse:
            base = osp.join(folder, "runs", r.target)
            donors = [osp.join(base, v, f"n{r.size}_seed{r.seed}")
                      for v in (sorted(os.listdir(base)) if osp.isdir(base) else [])]
            donor = next((d for d in donors if RunDir(d).has("metrics.json")
                          and not RunDir(d).differences(r.cfg)), None)
            if donor is None:
                continue
            os.makedirs(r.cfg.out, exist_ok=True)
            for f in REUSE_FILES:
                if osp.isfile(osp.join(donor, f)) and (f != WEIGHTS_FILE
                                                      or r.seed in spec.keep_weights):
                    shutil.copy2(osp.join(donor, f), osp.join(r.cfg.out, f))
            with open(osp.join(r.cfg.out, REUSED_FILE), "w") as fh:
                fh.write(osp.relpath(donor, r.cfg.out) + "\n")
            copied += 1
            break
    return copied


def _write_splits(spec: Spec, runs: Sequence[Run], num_molecules: int) -> None:
    from .data import nested_split
    os.makedirs(osp.join(spec.out, "splits"), exist_ok=True)
    for size, seed in sorted({(r.size, r.seed) for r in runs}):
        p = split_path(spec, size, seed)
        if not osp.isfile(p):
            nested_split(num_molecules, size, spec.val_size, spec.test_size, seed).save(
                p, num_molecules)


# -- one run (in this process or a worker) ----------------------------------------------------

_DATASETS: Dict[Tuple[str, str, Optional[int]], Any] = {}


def _dataset(cfg) -> Any:
    from .data import QM9
    key = (cfg.root, cfg.source, cfg.max_molecules)
    if key not in _DATASETS:
        _DATASETS[key] = QM9(cfg.root, source=cfg.source, max_molecules=cfg.max_molecules)
    return _DATASETS[key]


def _worker_init() -> None:
    import torch
    torch.set_num_threads(1)


def execute_run(cfg_dict: Dict[str, Any], status: str, keep_weights: bool) -> Dict[str, Any]:
    """Train (or resume) one run, then measure its symmetry and, if asked,
    keep its model-only weights; returns its metrics."""
    from .config import Config
    from .rundir import FINISHED, INTERRUPTED, RunDir
    from .train import train
    cfg = Config(**cfg_dict)
    t0 = time.perf_counter()
    rd = RunDir(cfg.out)
    with rd.lock():  # another study process on the same folder gets an error
        now = rd.status()  # another process may have trained it since the plan was made
        if now in (FINISHED, INTERRUPTED) and not rd.differences(cfg):
            status = now
        if status != FINISHED:
            for name in (SYMMETRY_FILE, WEIGHTS_FILE):  # an earlier run's, if any
                if rd.has(name):
                    os.remove(rd.file(name))
            train(cfg, resume=(status == INTERRUPTED), overwrite=True, quiet=True,
                  dataset=_dataset(cfg))
        if rd.has("best.pt"):
            symmetry_metrics(cfg.out, _dataset(cfg))
            if keep_weights and not rd.has(WEIGHTS_FILE):
                export_weights(cfg.out)  # model-only weights (train.export_weights)
    metrics = rd.metrics() or {}
    return dict(metrics, wall_seconds=time.perf_counter() - t0)


def symmetry_metrics(run_dir: str, dataset, seed: int = 1234) -> Dict[str, Any]:
    """Rotation measurements of a run's best model on its test split, cached
    in ``symmetry.json``: ``rot_test_mae`` (test MAE with every molecule
    randomly rotated), ``rot_change`` (mean |f(Rx) - f(x)|) and the largest
    relative changes under rotation, translation and permutation on 100 test
    molecules (:func:`~pyg_schnet.invariance.invariance_errors`)."""
    import torch
    from .data import UNITS, load_split, target_index
    from .evaluate import load_run
    from .invariance import invariance_errors, random_rotations
    from .loader import MoleculeLoader, rotated

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
    change = rot_err = err = 0.0
    n = 0
    with torch.no_grad():
        for b in loader:
            pred = model(b.z, b.pos, b.batch, num_graphs=b.num_graphs).view(-1).double()
            rb = rotated(b, random_rotations(b.num_graphs, gen))
            rpred = model(rb.z, rb.pos, rb.batch, num_graphs=b.num_graphs).view(-1).double()
            change += float((rpred - pred).abs().sum())
            rot_err += float((rpred - b.y.double()).abs().sum())
            err += float((pred - b.y.double()).abs().sum())
            n += b.num_graphs
    k = min(100, len(idx))
    sub = MoleculeLoader(dataset, idx[:k], k).gather(torch.as_tensor(idx[:k]))
    inv = invariance_errors(model, sub.z, sub.pos, sub.batch, seed=0)
    out = {"version": SYMMETRY_VERSION, "unit": UNITS[cfg.target], "molecules": n,
           "test_mae": err / max(n, 1), "rot_test_mae": rot_err / max(n, 1),
           "rot_change": change / max(n, 1), "rot_rel": inv["rotation"],
           "trans_rel": inv["translation"], "perm_rel": inv["permutation"]}
    write_json(path, out)
    return out


# -- the runner ------------------------------------------------------------------------------

def _say(msg: str) -> None:
    print(msg, flush=True)


class _Sitting:
    """One invocation of ``study run``: appended to ``OUT/sittings.csv`` and
    rewritten after every finished run, so a sitting cut off by a kill still
    counts the wall time up to its last finished run."""
    FIELDS = ("started", "wall_seconds", "runs_trained", "runs_failed", "jobs", "command")

    def __init__(self, out: str, jobs: int, command: str) -> None:
        self.path = osp.join(out, "sittings.csv")
        self.rows: List[Dict[str, Any]] = []
        if osp.isfile(self.path):
            with open(self.path, newline="") as f:
                self.rows = list(csv.DictReader(f))
        self.t0 = time.perf_counter()
        self.row = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "wall_seconds": 0.0,
                    "runs_trained": 0, "runs_failed": 0, "jobs": jobs, "command": command}
        self.rows.append(self.row)

    def update(self, trained: int, failed: int) -> None:
        self.row.update(wall_seconds=round(time.perf_counter() - self.t0, 1),
                        runs_trained=trained, runs_failed=failed)
        if trained or failed:
            write_csv(self.path, self.FIELDS, self.rows)


def run_study(spec: Spec, jobs: int = 1, overwrite: bool = False, command: str = "") -> int:
    """Train every run of the plan that is not finished, then write the
    report. Returns the number of failed runs."""
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    runs = plan(spec)
    status = _prepare(spec, runs, overwrite)
    from .rundir import FINISHED
    todo = [r for r in runs if status[r.rel] != FINISHED]
    _say(f"study {spec.name}: {len(spec.variants)} variants x {len(spec.targets)} targets x "
         f"{len(spec.train_sizes)} sizes x {len(spec.seeds)} seeds = {len(runs)} runs "
         f"({len(runs) - len(todo)} finished, {len(todo)} to train) -> {spec.out}")
    if todo:
        _write_splits(spec, todo, len(_dataset(todo[0].cfg)))
    # finished runs whose symmetry or weights are missing (and whose checkpoint is here)
    for r in runs:
        if status[r.rel] == FINISHED and osp.isfile(osp.join(r.cfg.out, "best.pt")):
            execute_run(r.cfg.to_dict(), FINISHED, r.seed in spec.keep_weights)
    progress = _Progress(len(todo), _Sitting(spec.out, jobs, command))
    if jobs == 1 or len(todo) <= 1:
        _train_here(spec, todo, status, progress)
    else:
        _train_in_workers(spec, todo, status, progress, jobs)
    progress.sitting.update(progress.done, len(progress.failed))
    write_report(spec)
    _say(f"study {spec.name}: trained {progress.done} runs in "
         f"{time.perf_counter() - progress.sitting.t0:.0f} s; "
         f"report {osp.join(spec.out, 'report.md')}")
    return len(progress.failed)


def _prepare(spec: Spec, runs: Sequence[Run], overwrite: bool) -> Dict[str, str]:
    """Refuse directories holding other settings, copy reusable finished runs
    in, create the output folder; the status of every run."""
    _statuses(runs, overwrite)  # refuse before copying anything
    reused = adopt_reused(spec, runs)
    if reused:
        _say(f"study {spec.name}: copied {reused} finished runs with the same settings from "
             f"{', '.join(spec.reuse)}")
    status = _statuses(runs, overwrite)
    try:
        os.makedirs(spec.out, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output folder {spec.out}: {exc.strerror}") from None
    return status


class _Progress:
    """Counts finished and failed runs, says each one, keeps the sitting's log."""

    def __init__(self, total: int, sitting: "_Sitting") -> None:
        self.total, self.sitting = total, sitting
        self.done = 0
        self.failed: List[Tuple[Run, str]] = []

    def finished(self, r: Run, result: Optional[Dict[str, Any]], error: Optional[str]) -> None:
        tag = f"{r.target} {r.variant} n={r.size} seed {r.seed}"
        if error is not None or result is None:
            error = error or "no result"
            self.failed.append((r, error))
            _say(f"  failed: {tag}: {error}")
        else:
            self.done += 1
            mae = result.get("test_mae_meV", result.get("test_mae", float("nan")))
            _say(f"  [{self.done + len(self.failed)}/{self.total}] {tag}: test MAE {mae:.4g} "
                 f"{'meV' if 'test_mae_meV' in result else result.get('unit', '')}, "
                 f"{result.get('epochs')} epochs ({result.get('stop_reason')}), "
                 f"{result.get('wall_seconds', 0):.0f} s")
        self.sitting.update(self.done, len(self.failed))


def _train_here(spec: Spec, todo: Sequence[Run], status: Dict[str, str],
                progress: _Progress) -> None:
    """The runs one after another in this process."""
    for r in todo:
        try:
            result = execute_run(r.cfg.to_dict(), status[r.rel], r.seed in spec.keep_weights)
            progress.finished(r, result, None)
        except UserError as exc:
            progress.finished(r, None, str(exc))


def _train_in_workers(spec: Spec, todo: Sequence[Run], status: Dict[str, str],
                      progress: _Progress, jobs: int) -> None:
    """The runs in ``jobs`` spawned worker processes, one thread each; a
    worker that dies fails its run, not the others."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_worker_init) as pool:
        futures = {}
        for r in todo:
            cfg_dict = dict(r.cfg.to_dict(), num_threads=1)
            futures[pool.submit(execute_run, cfg_dict, status[r.rel],
                                r.seed in spec.keep_weights)] = r
        for fut in as_completed(futures):
            r = futures[fut]
            try:
                progress.finished(r, fut.result(), None)
            except UserError as exc:
                progress.finished(r, None, str(exc))
            except Exception as exc:  # a worker died or a bug: the others go on
                first_line = str(exc).splitlines()[0] if str(exc) else ""
                progress.finished(r, None, f"{type(exc).__name__}: {first_line}")


# -- statistics -------------------------------------------------------------------------------

#: Two-sided 95% quantiles of Student's t by degrees of freedom (1-30).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_quantile_975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        return float("nan")
    return _T975[df - 1] if df <= len(_T975) else 1.960 + 2.4 / df  # within 0.3% beyond 30


def mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def std(xs: Sequence[float]) -> float:
    """Sample standard deviation (n - 1); NaN below two values."""
    if len(xs) < 2:
        return float("nan")
    m = mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def paired_difference(variant: Dict[int, float], reference: Dict[int, float]) -> Dict[str, Any]:
    """Mean of ``variant[s] - reference[s]`` over the seeds both have, its
    sample std, the 95% t-interval of the mean, how many seeds agree in sign
    with the mean, and the ratio of the means."""
    seeds = sorted(set(variant) & set(reference))
    d = [variant[s] - reference[s] for s in seeds]
    n = len(d)
    m, s = mean(d), std(d)
    half = t_quantile_975(n - 1) * s / math.sqrt(n) if n >= 2 else float("nan")
    sign = 1 if m > 0 else -1 if m < 0 else 0
    agree = sum(1 for x in d if (x > 0) - (x < 0) == sign) if n else 0
    ratio = mean([variant[k] for k in seeds]) / mean([reference[k] for k in seeds]) if n else \
        float("nan")
    return {"n": n, "seeds": seeds, "diff_mean": m, "diff_std": s, "ci_low": m - half,
            "ci_high": m + half, "agree": agree, "ratio": ratio}


def loglog_slope(sizes: Sequence[float], values: Sequence[float]) -> Tuple[float, float]:
    """Least-squares slope of log(value) against log(size), and its standard
    error (NaN with fewer than three points)."""
    xs = [math.log(x) for x in sizes]
    ys = [math.log(y) for y in values]
    n = len(xs)
    if n < 2:
        return float("nan"), float("nan")
    mx, my = mean(xs), mean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    if n < 3:
        return slope, float("nan")
    resid = sum((y - my - slope * (x - mx)) ** 2 for x, y in zip(xs, ys))
    return slope, math.sqrt(resid / (n - 2) / sxx)


# -- the report ---------------------------------------------------------------------------------

RUN_FIELDS = ("target", "variant", "size", "seed", "unit", "test_mae", "test_rmse",
              "rot_test_mae", "rot_change", "rot_rel", "num_params", "epochs", "best_epoch",
              "lr_decays", "stop_reason", "final_lr", "train_seconds", "molecules_per_second",
              "run_dir")
CELL_FIELDS = ("target", "size", "variant", "unit", "n", "seeds", "test_mae_mean", "test_mae_std",
               "rot_test_mae_mean", "rot_test_mae_std", "num_params", "epochs", "best_epochs",
               "lr_decays", "molecules_per_second", "train_seconds_mean", "run_dirs")
PAIRED_FIELDS = ("target", "size", "variant", "reference", "unit", "n", "seeds", "diff_mean",
                 "diff_std", "ci_low", "ci_high", "agree", "ratio")
CONTRAST_FIELDS = ("contrast",) + PAIRED_FIELDS
SLOPE_FIELDS = ("target", "variant", "sizes", "slope", "slope_se")


def _scale(unit: str) -> Tuple[str, float]:
    return ("meV", 1000.0) if unit == "eV" else (unit, 1.0)


def _median(xs: Sequence[float]) -> float:
    xs = sorted(x for x in xs if x == x)
    if not xs:
        return float("nan")
    k = len(xs) // 2
    return xs[k] if len(xs) % 2 else 0.5 * (xs[k - 1] + xs[k])


def collect(spec: Spec) -> List[Dict[str, Any]]:
    """One row per finished run of the plan (metrics, symmetry, convergence)."""
    from .rundir import RunDir
    rows = []
    for r in plan(spec):
        rd = RunDir(r.cfg.out)
        m = rd.metrics()
        if m is None:
            continue
        unit, s = _scale(m["unit"])
        sym: Dict[str, Any] = {}
        if rd.has(SYMMETRY_FILE):
            with open(rd.file(SYMMETRY_FILE)) as f:
                sym = json.load(f)
        log = rd.log()
        nan = float("nan")
        rows.append({
            "target": r.target, "variant": r.variant, "size": r.size, "seed": r.seed,
            "unit": unit, "test_mae": m["test_mae"] * s, "test_rmse": m["test_rmse"] * s,
            "rot_test_mae": sym.get("rot_test_mae", nan) * s,
            "rot_change": sym.get("rot_change", nan) * s, "rot_rel": sym.get("rot_rel", nan),
            "num_params": m["num_params"], "epochs": m["epochs"], "best_epoch": m["best_epoch"],
            "lr_decays": m.get("lr_decays", _decays(log)),
            "stop_reason": m.get("stop_reason", "?"),
            "final_lr": m.get("final_lr", log[-1]["lr"] if log else nan),
            "train_seconds": m["train_seconds"],
            "molecules_per_second": _median([x["molecules_per_second"] for x in log]),
            "run_dir": r.rel})
    return rows


def _decays(log: Sequence[Dict[str, float]]) -> int:
    return sum(1 for a, b in zip(log, log[1:]) if b["lr"] < a["lr"])


def cells(spec: Spec, rows: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    out = []
    for t in spec.targets:
        for size in spec.train_sizes:
            for v in spec.variants:
                rs = [r for r in rows if (r["target"], r["size"], r["variant"]) == (t, size, v)]
                if not rs:
                    continue
                def col(k: str, rs: List[Dict[str, Any]] = rs) -> List[float]:
                    return [float(r[k]) for r in rs]
                out.append({
                    "target": t, "size": size, "variant": v, "unit": rs[0]["unit"], "n": len(rs),
                    "seeds": " ".join(str(r["seed"]) for r in rs),
                    "test_mae_mean": mean(col("test_mae")), "test_mae_std": std(col("test_mae")),
                    "rot_test_mae_mean": mean(col("rot_test_mae")),
                    "rot_test_mae_std": std(col("rot_test_mae")),
                    "num_params": rs[0]["num_params"],
                    "epochs": " ".join(str(r["epochs"]) for r in rs),
                    "best_epochs": " ".join(str(r["best_epoch"]) for r in rs),
                    "lr_decays": " ".join(str(r["lr_decays"]) for r in rs),
                    "molecules_per_second": mean(col("molecules_per_second")),
                    "train_seconds_mean": mean(col("train_seconds")),
                    "run_dirs": ";".join(r["run_dir"] for r in rs)})
    return out


def paired(spec: Spec, rows: Sequence[Dict[str, Any]],
           pairs: Optional[Sequence[Tuple[str, str]]] = None) -> List[Dict[str, Any]]:
    """Paired differences per target and size for each ``(variant, baseline)``
    of ``pairs`` (default: every variant against the reference)."""
    if pairs is None:
        pairs = [(v, spec.reference) for v in spec.variants if v != spec.reference]
    maes: Dict[Tuple[str, int, str], Dict[int, float]] = {}  # (target, size, variant) -> seeds
    for r in rows:
        maes.setdefault((r["target"], r["size"], r["variant"]), {})[r["seed"]] = r["test_mae"]
    out = []
    for t in spec.targets:
        for size in spec.train_sizes:
            for v, base in pairs:
                p = paired_difference(maes.get((t, size, v), {}), maes.get((t, size, base), {}))
                if p["n"] == 0:
                    continue
                unit = next(r["unit"] for r in rows if r["target"] == t)
                out.append(dict(p, target=t, size=size, variant=v, reference=base,
                                unit=unit, seeds=" ".join(map(str, p["seeds"]))))
    return out


def contrasts(spec: Spec, rows: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The spec's named contrasts, as :func:`paired` rows with their names."""
    out = []
    for name, pair in spec.contrasts.items():
        out += [dict(p, contrast=name) for p in paired(spec, rows, [pair])]
    return out


def slopes(spec: Spec, cell_rows: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    out: List[Dict[str, Any]] = []
    if len(spec.train_sizes) < 2:
        return out
    for t in spec.targets:
        for v in spec.variants:
            cs = [c for c in cell_rows if c["target"] == t and c["variant"] == v]
            if len(cs) < 2:
                continue
            slope, se = loglog_slope([c["size"] for c in cs], [c["test_mae_mean"] for c in cs])
            out.append({"target": t, "variant": v,
                        "sizes": " ".join(str(c["size"]) for c in cs), "slope": slope,
                        "slope_se": se})
    return out


def _fmt(x: Any, digits: int = 3) -> str:
    if isinstance(x, str):
        return x
    if x != x:
        return "n/a"
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) < 1e-3:
        return f"{x:.1e}"
    return f"{x:.{digits}g}"


def _pm(m: float, s: float) -> str:
    return _fmt(m) if s != s else f"{_fmt(m)} ± {_fmt(s, 2)}"


def _sittings(out: str) -> Tuple[float, int]:
    path = osp.join(out, "sittings.csv")
    if not osp.isfile(path):
        return 0.0, 0
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return sum(float(r["wall_seconds"]) for r in rows), len(rows)


def write_report(spec: Spec) -> str:
    """``report.md`` with its tables (``runs.csv``, ``cells.csv``,
    ``paired.csv``, ``slopes.csv``) and plots in the study's folder."""
    rows = collect(spec)
    os.makedirs(spec.out, exist_ok=True)
    cell_rows = cells(spec, rows)
    pair_rows = paired(spec, rows)
    contrast_rows = contrasts(spec, rows)
    slope_rows = slopes(spec, cell_rows)
    write_csv(osp.join(spec.out, "runs.csv"), RUN_FIELDS, rows)
    write_csv(osp.join(spec.out, "cells.csv"), CELL_FIELDS, cell_rows)
    write_csv(osp.join(spec.out, "paired.csv"), PAIRED_FIELDS, pair_rows)
    if spec.contrasts:
        write_csv(osp.join(spec.out, "contrasts.csv"), CONTRAST_FIELDS, contrast_rows)
    write_csv(osp.join(spec.out, "slopes.csv"), SLOPE_FIELDS, slope_rows)
    plots = []
    if rows:
        from .study_plots import learning_curve_plot, val_curve_plot
        for t in spec.targets:
            if len(spec.train_sizes) > 1:
                p = learning_curve_plot(spec, t, cell_rows, slope_rows)
                if p:
                    plots.append(p)
            for size in spec.train_sizes:
                p = val_curve_plot(spec, t, size)
                if p:
                    plots.append(p)
    md = _markdown(spec, rows, cell_rows, pair_rows, contrast_rows, slope_rows, plots)
    path = osp.join(spec.out, "report.md")
    write_text(path, md)
    return path


def _markdown(spec: Spec, rows, cell_rows, pair_rows, contrast_rows, slope_rows, plots) -> str:
    total = len(plan(spec))
    wall, sittings = _sittings(spec.out)
    reused = [r for r in rows if osp.isfile(osp.join(spec.out, r["run_dir"], REUSED_FILE))]
    compute = sum(r["train_seconds"] for r in rows if r not in reused)
    L = [f"# Study: {spec.name}{' (quick)' if spec.quick else ''}", ""]
    if spec.description:
        L += [spec.description, ""]
    L += [f"Spec: `{osp.relpath(spec.path, spec.out)}`. Runs finished: {len(rows)} of {total}. "
          f"Wall time of `study run` over {sittings} sitting(s): {wall / 3600:.2f} h; "
          f"training time summed over the runs trained here: {compute / 3600:.2f} h"
          + (f"; {len(reused)} runs with identical settings were copied from "
             f"{', '.join(osp.relpath(x, spec.out) for x in spec.reuse)} (see their "
             f"`{REUSED_FILE}` files; their time counts there)." if reused else "."), ""]
    base = ", ".join(f"{k} {v}" for k, v in spec.base.items() if k not in ("root", "wandb",
                                                                            "wandb_project"))
    L += [f"Base settings: {base}. Split per seed: test {spec.test_size:,} and validation "
          f"{spec.val_size:,} molecules, then the training molecules (nested across sizes); "
          f"training sizes {', '.join(f'{s:,}' for s in spec.train_sizes)}; seeds "
          f"{', '.join(map(str, spec.seeds))}.", ""]
    L += ["| variant | overrides |", "|---|---|"]
    for v, o in spec.variants.items():
        ref = " (reference)" if v == spec.reference else ""
        L.append(f"| {v}{ref} | {', '.join(f'{k}: {x}' for k, x in o.items()) or '(base)'} |")
    L += ["", "## Test MAE per cell", "",
          "Test MAE of the best-validation checkpoint, mean ± sample std over seeds; "
          "*rotated*: the same test set with every molecule randomly rotated. Epochs, best "
          "epochs and learning-rate decays are listed per seed.", "",
          "| target | train size | variant | seeds | test MAE | rotated test MAE | params | "
          "epochs | best epochs | lr decays | molecules/s |",
          "|---|---:|---|---:|---:|---:|---:|---|---|---|---:|"]
    for c in cell_rows:
        u = c["unit"]
        L.append(f"| {c['target']} | {c['size']:,} | {c['variant']} | {c['n']} | "
                 f"{_pm(c['test_mae_mean'], c['test_mae_std'])} {u} | "
                 f"{_pm(c['rot_test_mae_mean'], c['rot_test_mae_std'])} {u} | "
                 f"{int(c['num_params']):,} | {c['epochs']} | {c['best_epochs']} | "
                 f"{c['lr_decays']} | {c['molecules_per_second']:.0f} |")
    if pair_rows:
        L += ["", f"## Paired differences to the reference ({spec.reference})", "",
              "Per seed, variant minus reference on the same split; mean, sample std, 95% "
              "t-interval of the mean over seeds, and the seeds whose difference has the sign "
              "of the mean. Ratio: mean variant MAE over mean reference MAE.", ""]
        L += _difference_table(pair_rows, contrast=False)
    if contrast_rows:
        L += ["", "## Contrasts: one factor each", "",
              "Each contrast compares a variant with the variant it changes in one factor "
              "(paired, as above: variant minus baseline).", ""]
        L += _difference_table(contrast_rows, contrast=True)
    if slope_rows:
        L += ["", "## Learning curves", "",
              "Least-squares slope of log(test MAE) against log(training size) over the cell "
              "means (± its standard error; n/a with two sizes).", "",
              "| target | variant | sizes | slope |", "|---|---|---|---:|"]
        for s in slope_rows:
            L.append(f"| {s['target']} | {s['variant']} | {s['sizes']} | "
                     f"{_pm(s['slope'], s['slope_se'])} |")
    for p in plots:
        L += ["", f"![{p}]({p})"]
    L += ["", "## Runs", "",
          "Every run's directory holds config.yaml, log.csv, metrics.json and symmetry.json "
          f"(and {WEIGHTS_FILE}, model-only weights, for the seeds kept); checkpoints with "
          "optimizer state are not committed. Stop: why training ended (*lr decays*: the "
          "learning rate had been decayed max_lr_decays times; *epochs*: the epoch cap; "
          "*patience*: early stopping).", "",
          "| target | size | variant | seed | test MAE | rotated | epochs | best epoch | "
          "lr decays | stop | final lr | train s | run |",
          "|---|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|"]
    for r in rows:
        u = r["unit"]
        L.append(f"| {r['target']} | {r['size']:,} | {r['variant']} | {r['seed']} | "
                 f"{_fmt(r['test_mae'])} {u} | {_fmt(r['rot_test_mae'])} {u} | {r['epochs']} | "
                 f"{r['best_epoch']} | {r['lr_decays']} | {r['stop_reason']} | "
                 f"{_fmt(r['final_lr'])} | {r['train_seconds']:.0f} | "
                 f"[{r['run_dir']}]({r['run_dir']}/log.csv) |")
    return "\n".join(L) + "\n"


def _difference_table(rows: Sequence[Dict[str, Any]], contrast: bool) -> List[str]:
    """Markdown rows of :func:`paired` (or, with ``contrast``, :func:`contrasts`) rows."""
    head = "| contrast | variant − baseline" if contrast else "| variant"
    L = [f"| target | train size {head} | seeds | difference | 95% interval | agree in sign "
         f"| ratio |", "|---|---:|---" + ("|---" if contrast else "") + "|---:" * 5 + "|"]
    for p in rows:
        u = p["unit"]
        what = f"{p['contrast']} | {p['variant']} − {p['reference']}" if contrast \
            else p["variant"]
        L.append(f"| {p['target']} | {p['size']:,} | {what} | {p['n']} | "
                 f"{_pm(p['diff_mean'], p['diff_std'])} {u} | "
                 f"[{_fmt(p['ci_low'])}, {_fmt(p['ci_high'])}] {u} | "
                 f"{p['agree']}/{p['n']} | {_fmt(p['ratio'])} |")
    return L


# -- command line -------------------------------------------------------------------------------

def main(argv: List[str]) -> int:
    from .cli import _Parser
    p = _Parser(prog="pyg-schnet study",
                description="Run a study spec (variants x targets x sizes x seeds) and report it.")
    sub = p.add_subparsers(dest="action", required=True, parser_class=_Parser)
    r = sub.add_parser("run", help="train every unfinished run, then write the report; "
                                   "several specs run one after the other")
    r.add_argument("spec", nargs="+")
    r.add_argument("--quick", action="store_true", help="the spec's quick settings (tests)")
    r.add_argument("--jobs", type=int, default=1, help="runs at once, one thread each")
    r.add_argument("--out", default=None, help="output folder (default: from the spec)")
    r.add_argument("--root", default=None, help="QM9 data root (default: from the spec)")
    r.add_argument("--source", default=None, help="QM9 source (default: from the spec)")
    r.add_argument("--overwrite", action="store_true",
                   help="retrain runs whose directory holds other settings")
    q = sub.add_parser("report", help="write the report of the finished runs")
    q.add_argument("spec", nargs="+")
    q.add_argument("--quick", action="store_true")
    q.add_argument("--out", default=None)
    a = p.parse_args(argv)
    if a.out is not None and len(a.spec) > 1:
        raise UserError(f"--out names one study's folder; {len(a.spec)} specs were given")
    # every spec is read and checked before anything trains: a bad one in a queue fails now
    specs = [load_spec(path, quick=a.quick, out=a.out, root=getattr(a, "root", None),
                       source=getattr(a, "source", None)) for path in a.spec]
    if a.action == "report":
        for spec in specs:
            _say(f"wrote {write_report(spec)}")
        return 0
    command = "pyg-schnet study " + " ".join(shlex.quote(x) for x in argv)
    failed = {spec.name: run_study(spec, a.jobs, a.overwrite, command) for spec in specs}
    if any(failed.values()):
        where = ", ".join(f"{n} in {name}" for name, n in failed.items() if n)
        raise UserError(f"{sum(failed.values())} run(s) failed ({where}; see above); finished "
                        f"runs are kept, and a re-run retries the others")
    return 0


if __name__ == "__main__":  # pragma: no cover
    from .cli import main as cli_main
    sys.exit(cli_main(["study", *sys.argv[1:]]))
