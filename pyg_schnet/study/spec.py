"""Study specs: parsing and checking a spec, and its plan of runs (see
:mod:`pyg_schnet.study`)."""

from __future__ import annotations

import os
import os.path as osp
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from pyg_schnet.data import TARGETS, nested_split, nested_split_name, target_index
from pyg_schnet.errors import UserError
from pyg_schnet.io import copy_file, write_text
from pyg_schnet.run.config import config_keys, load_config, read_yaml
from pyg_schnet.run.rundir import (
    BEST_FILE,
    CONFIG_FILE,
    FINISHED,
    INTERRUPTED,
    LOG_FILE,
    METRICS_FILE,
    NEW,
    SPLIT_FILE,
    STALE,
    SYMMETRY_FILE,
    WEIGHTS_FILE,
    RunDir,
)

SPEC_KEYS = (
    "name",
    "description",
    "base",
    "variants",
    "reference",
    "contrasts",
    "targets",
    "seeds",
    "train_sizes",
    "val_size",
    "test_size",
    "size_overrides",
    "keep_weights",
    "quick",
    "out",
    "reuse",
    "equivalence_margins",
    "slope_margin",
)
#: Spec keys that ``quick`` may replace; its other keys are config overrides.
QUICK_SPEC_KEYS = (
    "targets",
    "seeds",
    "train_sizes",
    "val_size",
    "test_size",
    "keep_weights",
    "size_overrides",
)
#: Keys the runner sets per run (a spec may not set them in the base or a variant).
RUN_KEYS = ("target", "seed", "train_size", "val_size", "test_size", "split_file", "out")
#: A run's cached rotation measurements (:func:`~pyg_schnet.study.runner.symmetry_metrics`).
SYMMETRY_VERSION = 1


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
    #: every target some variant trains (the spec's ``targets``, then the variants' own)
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
    #: target -> margin in meV of the equivalence tests ("no difference" within
    #: +-margin), written in the spec before its runs
    equivalence_margins: Dict[str, float] = field(default_factory=dict)
    #: Margin of the "parallel learning curves" test: the slope of log(MAE
    #: ratio) against log(training size) (see ``report.slope_contrasts``).
    slope_margin: Optional[float] = None
    #: variant -> its own seeds / targets (a variant's ``seeds`` or ``targets`` key), where
    #: it trains more or fewer than the spec's (ignored under ``--quick``)
    variant_seeds: Dict[str, List[int]] = field(default_factory=dict)
    variant_targets: Dict[str, List[str]] = field(default_factory=dict)
    #: the spec's own ``targets`` (``targets`` adds the variants' own); empty: ``targets``
    spec_targets: List[str] = field(default_factory=list)

    def seeds_of(self, variant: str, size: int) -> List[int]:
        """The seeds ``variant`` trains at ``size``: its own, else the size's, else the spec's."""
        return self.variant_seeds.get(variant) or self.size_seeds.get(size, self.seeds)

    def targets_of(self, variant: str) -> List[str]:
        """The targets ``variant`` trains: its own, else the spec's ``targets``."""
        return self.variant_targets.get(variant) or self.spec_targets or self.targets


def _fail(path: str, msg: str) -> UserError:
    return UserError(f"study spec {path}: {msg}")


def _int_list(path: str, key: str, value: Any, minimum: int) -> List[int]:
    items = value if isinstance(value, list) else [value]
    out = []
    for v in items:
        if (
            isinstance(v, bool)
            or not isinstance(v, (int, float))
            or float(v) != int(v)
            or int(v) < minimum
        ):
            raise _fail(
                path,
                f"{key} must be {'a list of ' if isinstance(value, list) else ''}"
                f"whole numbers >= {minimum}, got {value!r}",
            )
        out.append(int(v))
    if len(set(out)) != len(out) or not out:
        raise _fail(path, f"{key} must hold distinct values, got {value!r}")
    return out


def _mapping(path: str, key: str, value: Any) -> Dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(path, f"{key} must be a mapping of config keys to values, got {value!r}")
    return config_keys(value, f"study spec {path}: {key}")


def load_spec(
    path: str,
    quick: bool = False,
    out: Optional[str] = None,
    root: Optional[str] = None,
    source: Optional[str] = None,
) -> Spec:
    """Read and check a spec; ``quick`` applies its ``quick`` section, ``out``,
    ``root`` and ``source`` replace the spec's output folder, data root and
    QM9 source."""
    path = osp.abspath(path)
    raw = read_yaml(path, "study spec")
    _check_keys(path, raw)
    name = str(raw.get("name") or osp.splitext(osp.basename(path))[0])
    base, base_dir = _read_base(path, raw["base"])
    variants, reference = _read_variants(path, raw)
    contrasts = _read_contrasts(path, raw.get("contrasts"), variants)
    values, config_quick = _apply_quick(path, raw, quick)
    targets = _read_targets(path, values["targets"])
    margins = _read_margins(path, raw.get("equivalence_margins"))
    slope_margin = raw.get("slope_margin")
    if slope_margin is not None and (
        isinstance(slope_margin, bool)
        or not isinstance(slope_margin, (int, float))
        or not 0 < slope_margin < 1
    ):
        raise _fail(path, f"slope_margin must be a number between 0 and 1, got {slope_margin!r}")
    seeds = _read_seeds(path, "seeds", values["seeds"])
    variant_seeds, variant_targets = _read_variant_runs(path, variants, quick)
    spec_targets = list(targets)
    targets = list(dict.fromkeys(targets + [t for ts in variant_targets.values() for t in ts]))
    sizes = _int_list(path, "train_sizes", values.get("train_sizes", base.get("train_size")), 1)
    val_size = _int_list(path, "val_size", values["val_size"], 1)[0]
    test_size = _int_list(path, "test_size", values["test_size"], 1)[0]
    size_overrides, size_seeds = _read_size_overrides(path, values, sizes)
    keep = values.get("keep_weights") or []
    keep_weights = _int_list(path, "keep_weights", keep, 0) if keep != [] else []
    for where, mapping in [
        ("base", base),
        *((f"variant {k}", v) for k, v in variants.items()),
        *((f"size_overrides {k}", v) for k, v in size_overrides.items()),
    ]:
        bad = sorted(set(mapping) & set(RUN_KEYS))
        if bad:
            raise _fail(path, f"{where} sets {', '.join(bad)}, which the study sets per run")
    base = _resolve_data(dict(base, **config_quick), base_dir, root, source)
    out_dir, reuse = _resolve_outputs(path, raw, name, quick, out)
    spec = Spec(
        path=path,
        name=name,
        description=str(raw.get("description") or ""),
        base=base,
        variants=variants,
        reference=reference,
        targets=targets,
        seeds=seeds,
        train_sizes=sizes,
        val_size=val_size,
        test_size=test_size,
        size_overrides=size_overrides,
        size_seeds=size_seeds,
        keep_weights=keep_weights,
        out=out_dir,
        quick=quick,
        reuse=reuse,
        contrasts=contrasts,
        variant_seeds=variant_seeds,
        variant_targets=variant_targets,
        spec_targets=spec_targets,
        equivalence_margins=margins,
        slope_margin=None if slope_margin is None else float(slope_margin),
    )
    plan(spec)  # every run's config, so bad settings fail before any training
    return spec


def _check_keys(path: str, raw: Dict[str, Any]) -> None:
    unknown = sorted(set(map(str, raw)) - set(SPEC_KEYS))
    if unknown:
        raise _fail(
            path, f"unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(SPEC_KEYS)}"
        )
    for key in ("base", "variants", "targets", "seeds", "test_size", "val_size"):
        if key not in raw:
            raise _fail(path, f"needs {key!r}")


def _read_base(path: str, base_raw: Any) -> Tuple[Dict[str, Any], str]:
    """The base config (inline, or a config file named relative to the spec)
    and the folder a relative data root in it is relative to."""
    here = osp.dirname(path)
    if isinstance(base_raw, str):
        base_path = osp.join(here, base_raw)
        base = config_keys(read_yaml(base_path), f"config file {base_path}")
        return base, osp.dirname(osp.abspath(base_path))
    return _mapping(path, "base", base_raw), here


def _read_variants(path: str, raw: Dict[str, Any]) -> Tuple[Dict[str, Dict[str, Any]], str]:
    variants_raw = raw["variants"]
    if not isinstance(variants_raw, dict) or not variants_raw:
        raise _fail(path, "variants must be a non-empty mapping of names to config overrides")
    variants = {str(k): _mapping(path, f"variant {k}", v) for k, v in variants_raw.items()}
    for vname in variants:
        if not vname or "/" in vname or vname.startswith(".") or not vname.isprintable():
            raise _fail(path, f"variant name {vname!r} cannot name a folder")
    reference = str(raw.get("reference") or next(iter(variants)))
    if reference not in variants:
        raise _fail(
            path, f"reference {reference!r} is not a variant; variants: {', '.join(variants)}"
        )
    return variants, reference


def _read_seeds(path: str, key: str, value: Any) -> List[int]:
    """Seeds as a count (``3``: 0, 1, 2) or a list."""
    if isinstance(value, list):
        return _int_list(path, key, value, 0)
    return list(range(_int_list(path, key, value, 1)[0]))


def _read_variant_runs(
    path: str, variants: Dict[str, Dict[str, Any]], quick: bool
) -> Tuple[Dict[str, List[int]], Dict[str, List[str]]]:
    """A variant's own ``seeds`` and ``targets`` (taken out of its config
    overrides): more seeds where a finding rests on it, another target where a
    reading may differ. Under ``--quick`` the quick section decides for all."""
    seeds: Dict[str, List[int]] = {}
    targets: Dict[str, List[str]] = {}
    for name, overrides in variants.items():
        if "seeds" in overrides:
            seeds[name] = _read_seeds(path, f"variant {name} seeds", overrides.pop("seeds"))
        if "targets" in overrides:
            raw = overrides.pop("targets")
            if not isinstance(raw, list) or not raw:
                raise _fail(path, f"variant {name} targets must be a list of targets, got {raw!r}")
            targets[name] = _read_targets(path, raw)
    return ({}, {}) if quick else (seeds, targets)


def _read_contrasts(
    path: str, raw: Any, variants: Dict[str, Dict[str, Any]]
) -> Dict[str, Tuple[str, str]]:
    """``contrasts``: a mapping of names to ``[variant, baseline]`` pairs."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _fail(path, f"contrasts must map names to [variant, baseline] pairs, got {raw!r}")
    out: Dict[str, Tuple[str, str]] = {}
    for name, pair in raw.items():
        if not isinstance(pair, list) or len(pair) != 2 or pair[0] == pair[1]:
            raise _fail(
                path,
                f"contrast {name!r} must be [variant, baseline] (two different "
                f"variants), got {pair!r}",
            )
        for v in pair:
            if str(v) not in variants:
                raise _fail(
                    path,
                    f"contrast {name!r}: {v!r} is not a variant; variants: {', '.join(variants)}",
                )
        out[str(name)] = (str(pair[0]), str(pair[1]))
    return out


def _read_margins(path: str, raw: Any) -> Dict[str, float]:
    """``equivalence_margins``: target -> a positive margin in meV (a target
    the spec does not train yet may have one: margins precede the runs)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _fail(path, f"equivalence_margins must map targets to meV, got {raw!r}")
    out: Dict[str, float] = {}
    for t, m in raw.items():
        target = _read_targets(path, [t])[0]
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not m > 0:
            raise _fail(path, f"equivalence margin of {target} must be a positive meV, got {m!r}")
        out[target] = float(m)
    return out


def _apply_quick(
    path: str, raw: Dict[str, Any], quick: bool
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
    targets = []
    for t in value if isinstance(value, list) else [value]:
        try:
            targets.append(TARGETS[target_index(str(t))])
        except UserError as exc:
            raise _fail(path, str(exc)) from None
    twice = sorted({t for t in targets if targets.count(t) > 1})
    if twice:
        raise _fail(path, f"targets name {', '.join(twice)} more than once ({value!r})")
    return targets


def _read_size_overrides(
    path: str, values: Dict[str, Any], sizes: List[int]
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
            size_seeds[size] = _int_list(
                path, f"size_overrides {k} seeds", size_overrides[size].pop("seeds"), 0
            )
    return size_overrides, size_seeds


def _resolve_data(
    base: Dict[str, Any], base_dir: str, root: Optional[str], source: Optional[str]
) -> Dict[str, Any]:
    """The base config with the data root and source given on the command
    line, or its own root made absolute (relative to the file naming it)."""
    if source is not None:
        base["source"] = source
    if root is not None:
        base["root"] = osp.abspath(root)
    elif isinstance(base.get("root"), str) and not osp.isabs(base["root"]):
        base["root"] = osp.normpath(osp.join(base_dir, base["root"]))
    return base


def _resolve_outputs(
    path: str, raw: Dict[str, Any], name: str, quick: bool, out: Optional[str]
) -> Tuple[str, List[str]]:
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
    return osp.join(
        spec.out, "splits", nested_split_name(size, spec.val_size, spec.test_size, seed)
    )


def wandb_filing(spec: Spec, run: Run) -> Dict[str, Any]:
    """How W&B files a study's run unless its config says otherwise: grouped
    by study, then by variant (the job type), named after its folder, tagged
    with its target and training size."""
    return {
        "wandb_group": spec.name,
        "wandb_job_type": run.variant,
        "wandb_name": f"{run.variant}-{run.target}-n{run.size}-seed{run.seed}",
        "wandb_tags": [run.target, f"n{run.size}"],
    }


def plan(spec: Spec) -> List[Run]:
    """Every run, ordered seed by seed (so paired comparisons fill in early),
    then by size, target and variant."""
    runs = []
    every_seed = set(spec.seeds).union(*spec.size_seeds.values(), *spec.variant_seeds.values())
    for seed in sorted(every_seed):
        for size in spec.train_sizes:
            for target in spec.targets:
                for variant, overrides in spec.variants.items():
                    if seed not in spec.seeds_of(variant, size):
                        continue
                    if target not in spec.targets_of(variant):
                        continue
                    values = dict(spec.base, **overrides, **spec.size_overrides.get(size, {}))
                    values.update(
                        target=target,
                        seed=seed,
                        train_size=size,
                        val_size=spec.val_size,
                        test_size=spec.test_size,
                        split_file=split_path(spec, size, seed),
                    )
                    run = Run(variant, target, size, seed, None)
                    values["out"] = osp.join(spec.out, run.rel)
                    for key, value in wandb_filing(spec, run).items():
                        values.setdefault(key, value)  # unless the base or variant sets it
                    try:
                        run.cfg = load_config(None, values)
                    except UserError as exc:
                        raise _fail(spec.path, f"variant {variant}: {exc}") from None
                    runs.append(run)
    return runs


def _statuses(runs: Sequence[Run], overwrite: bool) -> Dict[str, str]:
    """Status of every run's directory; a directory holding other settings
    is refused (or, with ``overwrite``, marked stale)."""
    out: Dict[str, str] = {}
    refused = []
    for r in runs:
        rd = RunDir(r.cfg.out)
        st = rd.status()
        if st != NEW and rd.has(CONFIG_FILE):
            diff = rd.differences(r.cfg)
            if diff:
                if not overwrite:
                    refused.append((r, diff))
                st = STALE
        out[r.rel] = st
    if refused:
        r, diff = refused[0]
        more = f" (and {len(refused) - 1} more runs)" if len(refused) > 1 else ""
        raise UserError(
            f"{r.cfg.out} holds a run with other settings ({', '.join(diff)}){more}; "
            f"use another --out or pass --overwrite to retrain it"
        )
    assert all(s in (NEW, FINISHED, INTERRUPTED, STALE) for s in out.values())
    return out


REUSED_FILE = "reused_from"
#: Files copied from a reused run (checkpoints only if they are there).
REUSE_FILES = (
    CONFIG_FILE,
    SPLIT_FILE,
    LOG_FILE,
    METRICS_FILE,
    SYMMETRY_FILE,
    WEIGHTS_FILE,
    BEST_FILE,
)


def adopt_reused(spec: Spec, runs: Sequence[Run]) -> int:
    """Copy every new run that a ``reuse`` folder holds, finished, with the
    same settings; returns how many were copied."""
    copied = 0
    for r in runs:
        if RunDir(r.cfg.out).status() != NEW:
            continue
        for folder in spec.reuse:
            base = osp.join(folder, "runs", r.target)
            donors = [
                osp.join(base, v, f"n{r.size}_seed{r.seed}")
                for v in (sorted(os.listdir(base)) if osp.isdir(base) else [])
            ]
            donor = next(
                (
                    d
                    for d in donors
                    if RunDir(d).has(METRICS_FILE) and not RunDir(d).differences(r.cfg)
                ),
                None,
            )
            if donor is None:
                continue
            os.makedirs(r.cfg.out, exist_ok=True)
            for f in REUSE_FILES:
                if osp.isfile(osp.join(donor, f)) and (
                    f != WEIGHTS_FILE or r.seed in spec.keep_weights
                ):
                    copy_file(osp.join(donor, f), osp.join(r.cfg.out, f))
            write_text(osp.join(r.cfg.out, REUSED_FILE), osp.relpath(donor, r.cfg.out) + "\n")
            copied += 1
            break
    return copied


def _write_splits(spec: Spec, runs: Sequence[Run], num_molecules: int) -> None:
    os.makedirs(osp.join(spec.out, "splits"), exist_ok=True)
    for size, seed in sorted({(r.size, r.seed) for r in runs}):
        p = split_path(spec, size, seed)
        if not osp.isfile(p):
            nested_split(num_molecules, size, spec.val_size, spec.test_size, seed).save(
                p, num_molecules
            )
