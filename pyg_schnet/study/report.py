"""A study's report: tables (CSV and markdown) and plots from its finished runs."""

from __future__ import annotations

import csv
import json
import os
import os.path as osp
from collections import Counter
from typing import Any, Dict, List, Optional, Sequence, Tuple

from pyg_schnet.errors import UserError
from pyg_schnet.io import write_csv, write_text
from pyg_schnet.metrics import display_unit
from pyg_schnet.run.rundir import WEIGHTS_FILE, RunDir
from pyg_schnet.study.figures import contrast_plot, learning_curve_plot, val_curve_plot
from pyg_schnet.study.spec import REUSED_FILE, SYMMETRY_FILE, Spec, plan
from pyg_schnet.study.stats import (
    equivalence,
    holm,
    reading,
    loglog_slope,
    mean,
    paired_difference,
    std,
    two_sided_p,
)

#: One row per invocation of ``study run`` (:class:`~pyg_schnet.study.runner._Sitting`).
SITTINGS_FILE = "sittings.csv"
RUN_FIELDS = (
    "target",
    "variant",
    "size",
    "seed",
    "unit",
    "test_mae",
    "test_rmse",
    "rot_test_mae",
    "rot_change",
    "rot_rel",
    "num_params",
    "epochs",
    "best_epoch",
    "lr_decays",
    "stop_reason",
    "final_lr",
    "train_seconds",
    "molecules_per_second",
    "code",
    "run_dir",
)
CELL_FIELDS = (
    "target",
    "size",
    "variant",
    "unit",
    "n",
    "seeds",
    "test_mae_mean",
    "test_mae_std",
    "rot_test_mae_mean",
    "rot_test_mae_std",
    "num_params",
    "epochs",
    "best_epochs",
    "lr_decays",
    "molecules_per_second",
    "train_seconds_mean",
    "run_dirs",
)
PAIRED_FIELDS = (
    "target",
    "size",
    "variant",
    "reference",
    "unit",
    "n",
    "seeds",
    "diff_mean",
    "diff_std",
    "ci_low",
    "ci_high",
    "agree",
    "ratio",
)
CONTRAST_FIELDS = (
    ("contrast",)
    + PAIRED_FIELDS
    + (
        "holm_p",
        "holm_low",
        "holm_high",
        "margin",
        "eq_low",
        "eq_high",
        "eq_p",
        "equivalent",
        "reading",
    )
)
SLOPE_FIELDS = ("target", "variant", "sizes", "slope", "slope_se")
PARALLEL_FIELDS = (
    "target",
    "variant",
    "reference",
    "sizes",
    "n",
    "seeds",
    "slopes",
    "diff_mean",
    "diff_std",
    "ci_low",
    "ci_high",
    "p",
    "margin",
    "eq_low",
    "eq_high",
    "eq_p",
    "equivalent",
)


def _median(xs: Sequence[float]) -> float:
    xs = sorted(x for x in xs if x == x)
    if not xs:
        return float("nan")
    k = len(xs) // 2
    return xs[k] if len(xs) % 2 else 0.5 * (xs[k - 1] + xs[k])


def collect(spec: Spec) -> List[Dict[str, Any]]:
    """One row per finished run of the plan (metrics, symmetry, convergence);
    a file of a finished run that cannot be read is a UserError naming it."""
    rows = []
    for r in plan(spec):
        rd = RunDir(r.cfg.out)
        m = rd.metrics()
        if m is None:
            continue
        unit, s = display_unit(m["unit"])
        sym: Dict[str, Any] = {}
        if rd.has(SYMMETRY_FILE):
            try:
                with open(rd.file(SYMMETRY_FILE)) as f:
                    sym = dict(json.load(f))
            except (OSError, ValueError, TypeError):
                raise UserError(
                    f"{rd.file(SYMMETRY_FILE)} is unreadable; study run measures it again"
                ) from None
        log = rd.log()
        nan = float("nan")
        rows.append(
            {
                "target": r.target,
                "variant": r.variant,
                "size": r.size,
                "seed": r.seed,
                "unit": unit,
                "test_mae": m["test_mae"] * s,
                "test_rmse": m["test_rmse"] * s,
                "rot_test_mae": sym.get("rot_test_mae", nan) * s,
                "rot_change": sym.get("rot_change", nan) * s,
                "rot_rel": sym.get("rot_rel", nan),
                "num_params": m["num_params"],
                "epochs": m["epochs"],
                "best_epoch": m["best_epoch"],
                "lr_decays": m.get("lr_decays", _decays(log)),
                "stop_reason": m.get("stop_reason", "?"),
                "final_lr": m.get("final_lr", log[-1]["lr"] if log else nan),
                "train_seconds": m["train_seconds"],
                "molecules_per_second": _median([x["molecules_per_second"] for x in log]),
                "code": m.get("code", ""),  # runs before 0.1.0's code field: not recorded
                "run_dir": r.rel,
                # a time budget: its steps depended on the machine's speed (the slow mark)
                "timed": r.cfg.time_budget is not None,
            }
        )
    return rows


#: A run whose median training speed is below this fraction of its variant's
#: fastest run (same target and size) is marked *slow*: under a time budget it
#: saw fewer steps than its seeds. Other work on the machine and the machine's
#: own drift between sittings both cause it; the mark cannot tell them apart.
SLOW_SHARE = 0.9


def relative_speed(rows: Sequence[Dict[str, Any]]) -> List[float]:
    """Each row's median molecules/s over the fastest of its variant, target
    and size."""
    fastest: Dict[Tuple[str, str, int], float] = {}
    for r in rows:
        key = (r["target"], r["variant"], r["size"])
        fastest[key] = max(fastest.get(key, 0.0), r["molecules_per_second"])
    return [
        r["molecules_per_second"] / fastest[(r["target"], r["variant"], r["size"])]
        if fastest[(r["target"], r["variant"], r["size"])] > 0
        else float("nan")
        for r in rows
    ]


def is_slow(row: Dict[str, Any], speed: float) -> bool:
    """Whether a run's relative ``speed`` (:func:`relative_speed`) cost it steps:
    below :data:`SLOW_SHARE` under a time budget; never under a budget in
    epochs or steps, whose runs all see the same steps."""
    return bool(row.get("timed", True)) and speed < SLOW_SHARE


def _decays(log: Sequence[Dict[str, float]]) -> int:
    return sum(1 for a, b in zip(log, log[1:], strict=False) if b["lr"] < a["lr"])


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

                out.append(
                    {
                        "target": t,
                        "size": size,
                        "variant": v,
                        "unit": rs[0]["unit"],
                        "n": len(rs),
                        "seeds": " ".join(str(r["seed"]) for r in rs),
                        "test_mae_mean": mean(col("test_mae")),
                        "test_mae_std": std(col("test_mae")),
                        "rot_test_mae_mean": mean(col("rot_test_mae")),
                        "rot_test_mae_std": std(col("rot_test_mae")),
                        "num_params": rs[0]["num_params"],
                        "epochs": " ".join(str(r["epochs"]) for r in rs),
                        "best_epochs": " ".join(str(r["best_epoch"]) for r in rs),
                        "lr_decays": " ".join(str(r["lr_decays"]) for r in rs),
                        "molecules_per_second": mean(col("molecules_per_second")),
                        "train_seconds_mean": mean(col("train_seconds")),
                        "run_dirs": ";".join(r["run_dir"] for r in rs),
                    }
                )
    return out


def paired(
    spec: Spec, rows: Sequence[Dict[str, Any]], pairs: Optional[Sequence[Tuple[str, str]]] = None
) -> List[Dict[str, Any]]:
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
                out.append(
                    dict(
                        p,
                        target=t,
                        size=size,
                        variant=v,
                        reference=base,
                        unit=unit,
                        seeds=" ".join(map(str, p["seeds"])),
                    )
                )
    return out


def contrasts(spec: Spec, rows: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The spec's named contrasts, as :func:`paired` rows with their names,
    Holm's correction across all of them (the study's family), and, for a
    target with an equivalence margin in the spec, the two one-sided tests
    against it (the margin is in the rows' unit: meV for energies)."""
    out = []
    for name, pair in spec.contrasts.items():
        out += [dict(p, contrast=name) for p in paired(spec, rows, [pair])]
    for row, adjusted in zip(out, holm(out), strict=True):
        row.update(adjusted)
        margin = spec.equivalence_margins.get(row["target"])
        nan = float("nan")
        row.update(margin=nan, eq_low=nan, eq_high=nan, eq_p=nan, equivalent="")
        if margin is not None:
            row.update(equivalence(row, margin), margin=margin)
        row["reading"] = reading(row)
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
            out.append(
                {
                    "target": t,
                    "variant": v,
                    "sizes": " ".join(str(c["size"]) for c in cs),
                    "slope": slope,
                    "slope_se": se,
                }
            )
    return out


def parallel(spec: Spec, rows: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Are two learning curves parallel on a log-log plot? Per seed, the
    least-squares slope of log(variant MAE / baseline MAE) against log(training
    size) over the sizes both have for that seed (at least three); then the
    paired t-test of the mean slope against 0 and, with the spec's
    ``slope_margin``, the two one-sided tests of ``|slope| < margin``
    (parallel within the margin). One row per contrast (or per variant against
    the reference when the spec names no contrasts) and target."""
    out: List[Dict[str, Any]] = []
    if len(spec.train_sizes) < 3:
        return out
    pairs = list(spec.contrasts.values()) or [
        (v, spec.reference) for v in spec.variants if v != spec.reference
    ]
    maes: Dict[Tuple[str, str, int], Dict[int, float]] = {}  # (target, variant, seed) -> size
    for r in rows:
        maes.setdefault((r["target"], r["variant"], r["seed"]), {})[r["size"]] = r["test_mae"]
    nan = float("nan")
    for t in spec.targets:
        for v, base in pairs:
            per_seed: Dict[int, float] = {}
            sizes: set = set()
            for seed in sorted({r["seed"] for r in rows}):
                a, b = maes.get((t, v, seed), {}), maes.get((t, base, seed), {})
                both = sorted(set(a) & set(b))
                if len(both) >= 3:
                    per_seed[seed] = loglog_slope(both, [a[n] / b[n] for n in both])[0]
                    sizes |= set(both)
            if not per_seed:
                continue
            d = paired_difference(per_seed, {k: 0.0 for k in per_seed})
            row = dict(
                target=t,
                variant=v,
                reference=base,
                sizes=" ".join(str(n) for n in sorted(sizes)),
                n=d["n"],
                seeds=" ".join(map(str, d["seeds"])),
                slopes=" ".join(f"{per_seed[k]:+.3f}" for k in d["seeds"]),
                diff_mean=d["diff_mean"],
                diff_std=d["diff_std"],
                ci_low=d["ci_low"],
                ci_high=d["ci_high"],
                p=two_sided_p(d),
                margin=nan,
                eq_low=nan,
                eq_high=nan,
                eq_p=nan,
                equivalent="",
            )
            if spec.slope_margin is not None:
                row.update(equivalence(d, spec.slope_margin), margin=spec.slope_margin)
            out.append(row)
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


def wall_time(rows: Sequence[Dict[str, str]]) -> Tuple[float, int]:
    """Seconds of wall time of ``sittings.csv`` rows and the number of
    sittings: invocations of ``study run`` that overlap in time (two at once,
    one per core) are one sitting and their common time counts once (a row
    without a start, written before sittings were dated, is a sitting of its own)."""
    from datetime import datetime

    undated = [float(r["wall_seconds"]) for r in rows if not r["started"]]
    spans = sorted(
        (start, start + float(r["wall_seconds"]))
        for r in rows
        if r["started"]
        for start in [datetime.fromisoformat(r["started"]).timestamp()]
    )
    total, sittings, end = sum(undated), len(undated), float("-inf")
    for a, b in spans:
        if a >= end:  # a new sitting
            sittings += 1
            total += b - a
        elif b > end:  # overlaps the sitting so far: only its part beyond it
            total += b - end
        end = max(end, b)
    return total, sittings


def read_sittings(out: str) -> List[Dict[str, str]]:
    """The rows of the study's ``sittings.csv`` (none if there is none); a
    file whose rows lack a number of seconds or a date is a UserError naming it."""
    from datetime import datetime

    path = osp.join(out, SITTINGS_FILE)
    if not osp.isfile(path):
        return []
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        for r in rows:
            float(r["wall_seconds"])
            if r["started"]:
                datetime.fromisoformat(r["started"])
    except (OSError, ValueError, TypeError, KeyError, csv.Error):
        raise UserError(
            f"{path} is unreadable (not a table of sittings); restore it, or remove "
            "it (the report then has no wall time for the earlier sittings)"
        ) from None
    return rows


def _sittings(out: str) -> Tuple[float, int, int]:
    """Wall time, sittings and invocations of the study's ``sittings.csv``."""
    rows = read_sittings(out)
    return (*wall_time(rows), len(rows))


def write_report(spec: Spec) -> str:
    """``report.md`` with its tables (``runs.csv``, ``cells.csv``,
    ``paired.csv``, ``contrasts.csv``, ``slopes.csv``, ``parallel.csv``) and
    plots in the study's folder."""
    rows = collect(spec)
    os.makedirs(spec.out, exist_ok=True)
    cell_rows = cells(spec, rows)
    pair_rows = paired(spec, rows)
    contrast_rows = contrasts(spec, rows)
    slope_rows = slopes(spec, cell_rows)
    parallel_rows = parallel(spec, rows)
    write_csv(osp.join(spec.out, "runs.csv"), RUN_FIELDS, rows)
    write_csv(osp.join(spec.out, "cells.csv"), CELL_FIELDS, cell_rows)
    write_csv(osp.join(spec.out, "paired.csv"), PAIRED_FIELDS, pair_rows)
    if spec.contrasts:
        write_csv(osp.join(spec.out, "contrasts.csv"), CONTRAST_FIELDS, contrast_rows)
    write_csv(osp.join(spec.out, "slopes.csv"), SLOPE_FIELDS, slope_rows)
    if parallel_rows:
        write_csv(osp.join(spec.out, "parallel.csv"), PARALLEL_FIELDS, parallel_rows)
    plots = []
    if rows:
        for t in spec.targets:
            if len(spec.train_sizes) > 1:
                p = learning_curve_plot(spec, t, cell_rows, slope_rows)
                if p:
                    plots.append(p)
            for size in spec.train_sizes:
                p = val_curve_plot(spec, t, size)
                if p:
                    plots.append(p)
            p = contrast_plot(spec, t, contrast_rows)
            if p:
                plots.append(p)
    md = _markdown(
        spec, rows, cell_rows, pair_rows, contrast_rows, slope_rows, parallel_rows, plots
    )
    path = osp.join(spec.out, "report.md")
    write_text(path, md)
    return path


def _code_counts(rows: List[Dict[str, Any]]) -> str:
    """Each code version that finished runs (``metrics.json``'s ``code``) with
    its number of runs; runs from before the field as not recorded."""
    counts = Counter(r["code"] or "not recorded" for r in rows)
    return "; ".join(f"{code} ({n} run{'s' * (n != 1)})" for code, n in sorted(counts.items()))


def _markdown(
    spec: Spec, rows, cell_rows, pair_rows, contrast_rows, slope_rows, parallel_rows, plots
) -> str:
    total = len(plan(spec))
    wall, sittings, invocations = _sittings(spec.out)
    reused = [r for r in rows if osp.isfile(osp.join(spec.out, r["run_dir"], REUSED_FILE))]
    compute = sum(r["train_seconds"] for r in rows if r not in reused)
    L = [f"# Study: {spec.name}{' (quick)' if spec.quick else ''}", ""]
    if spec.description:
        L += [spec.description, ""]
    L += [
        f"Spec: `{osp.relpath(spec.path, spec.out)}`. Runs finished: {len(rows)} of {total}. "
        f"Wall time of `study run` over {sittings} sitting(s): {wall / 3600:.2f} h"
        + (
            f" ({invocations} invocations; time when several ran at once counts once)"
            if invocations > sittings
            else ""
        )
        + "; "
        f"training time summed over the runs trained here: {compute / 3600:.2f} h"
        + (
            f"; {len(reused)} runs with identical settings were copied from "
            f"{', '.join(osp.relpath(x, spec.out) for x in spec.reuse)} (see their "
            f"`{REUSED_FILE}` files; their time counts there)."
            if reused
            else "."
        ),
        "",
    ]
    base = ", ".join(
        f"{k} {v}" for k, v in spec.base.items() if k not in ("root", "wandb", "wandb_project")
    )
    L += [
        f"Base settings: {base}. Split per seed: test {spec.test_size:,} and validation "
        f"{spec.val_size:,} molecules, then the training molecules (nested across sizes); "
        f"training sizes {', '.join(f'{s:,}' for s in spec.train_sizes)}; seeds "
        f"{', '.join(map(str, spec.seeds))}"
        + (
            " (variants with their own seeds or targets: see the table)"
            if spec.variant_seeds or spec.variant_targets
            else ""
        )
        + ".",
        "",
    ]
    if rows:
        L += [f"Code that finished the runs: {_code_counts(rows)}.", ""]
    own = bool(spec.variant_seeds or spec.variant_targets)
    L += (
        ["| variant | overrides | targets | seeds |", "|---|---|---|---|"]
        if own
        else ["| variant | overrides |", "|---|---|"]
    )
    for v, o in spec.variants.items():
        ref = " (reference)" if v == spec.reference else ""
        row = f"| {v}{ref} | {', '.join(f'{k}: {x}' for k, x in o.items()) or '(base)'} |"
        if own:
            seeds = sorted({s for size in spec.train_sizes for s in spec.seeds_of(v, size)})
            row += f" {', '.join(spec.targets_of(v))} | {', '.join(map(str, seeds))} |"
        L.append(row)
    L += [
        "",
        "## Test MAE per cell",
        "",
        "Test MAE of the best-validation checkpoint, mean ± sample std over seeds; "
        "*rotated*: the same test set with every molecule randomly rotated. Epochs, best "
        "epochs and learning-rate decays are listed per seed.",
        "",
        "| target | train size | variant | seeds | test MAE | rotated test MAE | params | "
        "epochs | best epochs | lr decays | molecules/s |",
        "|---|---:|---|---:|---:|---:|---:|---|---|---|---:|",
    ]
    for c in cell_rows:
        u = c["unit"]
        L.append(
            f"| {c['target']} | {c['size']:,} | {c['variant']} | {c['n']} | "
            f"{_pm(c['test_mae_mean'], c['test_mae_std'])} {u} | "
            f"{_pm(c['rot_test_mae_mean'], c['rot_test_mae_std'])} {u} | "
            f"{int(c['num_params']):,} | {c['epochs']} | {c['best_epochs']} | "
            f"{c['lr_decays']} | {c['molecules_per_second']:.0f} |"
        )
    if pair_rows:
        L += [
            "",
            f"## Paired differences to the reference ({spec.reference})",
            "",
            "Per seed, variant minus reference on the same split; mean, sample std, 95% "
            "t-interval of the mean over seeds, and the seeds whose difference has the sign "
            "of the mean. Ratio: mean variant MAE over mean reference MAE.",
            "",
        ]
        L += _difference_table(pair_rows, contrast=False)
    if contrast_rows:
        L += [
            "",
            "## Contrasts: one factor each",
            "",
            "Each contrast compares a variant with the variant it changes in one factor "
            "(paired, as above: variant minus baseline). Holm: the interval and p-value "
            "corrected for all of this study's contrasts at once (family-wise 5%). "
            "Equivalent: the two one-sided tests at 5% against the spec's margin, written "
            "before the runs; yes when the 90% interval lies inside ±margin (a study without "
            "a margin states no equivalence). Reading: *differs* when the Holm p-value is "
            "below 5%, *equivalent* when the equivalence test holds, both, *undecided* when "
            "neither (no difference claimed, none ruled out), *one seed* without an interval; "
            "the family is the contrasts with an interval so far, so a reading can change as "
            "runs finish.",
            "",
        ]
        L += _difference_table(contrast_rows, contrast=True)
    if slope_rows:
        L += [
            "",
            "## Learning curves",
            "",
            "Least-squares slope of log(test MAE) against log(training size) over the cell "
            "means (± its standard error; n/a with two sizes).",
            "",
            "| target | variant | sizes | slope |",
            "|---|---|---|---:|",
        ]
        for s in slope_rows:
            L.append(
                f"| {s['target']} | {s['variant']} | {s['sizes']} | "
                f"{_pm(s['slope'], s['slope_se'])} |"
            )
    if parallel_rows:
        margin = (
            f"the spec's margin ±{spec.slope_margin:g}"
            if spec.slope_margin is not None
            else "no margin in the spec, so no equivalence is stated"
        )
        L += [
            "",
            "### Parallel curves: paired slopes of the MAE ratio",
            "",
            "Per seed, the least-squares slope of log(variant MAE / baseline MAE) against "
            "log(training size) over the sizes that seed has (0: the curves are parallel on "
            "a log-log plot; over a 20x range a slope of 0.1 changes the ratio by 35%); the "
            "mean over seeds with its 95% t-interval and paired t-test p-value, and the two "
            f"one-sided tests at 5% against {margin}.",
            "",
            "| target | variant − baseline | sizes | slope per seed | mean [95% CI] | p | "
            "90% CI | parallel within margin |",
            "|---|---|---|---|---:|---:|---:|---|",
        ]
        for r in parallel_rows:
            eq = "n/a" if r["margin"] != r["margin"] else ("yes" if r["equivalent"] else "no")
            L.append(
                f"| {r['target']} | {r['variant']} − {r['reference']} | {r['sizes']} | "
                f"{r['slopes']} | {_fmt(r['diff_mean'])} [{_fmt(r['ci_low'])}, "
                f"{_fmt(r['ci_high'])}] | {_fmt(r['p'])} | [{_fmt(r['eq_low'])}, "
                f"{_fmt(r['eq_high'])}] | {eq} |"
            )
    for p in plots:
        L += ["", f"![{p}]({p})"]
    L += [
        "",
        "## Runs",
        "",
        "Every run's directory holds config.yaml, log.csv, metrics.json and symmetry.json "
        f"(and {WEIGHTS_FILE}, model-only weights, for the seeds kept); checkpoints with "
        "optimizer state are not committed. Stop: why training ended (*lr decays*: the "
        "learning rate had been decayed max_lr_decays times; *epochs*: the epoch cap; "
        "*patience*: early stopping). Speed: the run's median training molecules/s over "
        "the fastest run of its variant; a run with a time budget below "
        f"{SLOW_SHARE:g} (marked *slow*) trained slower than its other seeds, "
        "because other work shared the machine or the machine itself was slower in that "
        "sitting, and so saw fewer steps (a budget in epochs or steps does not depend on "
        "the speed: no mark).",
        "",
        "| target | size | variant | seed | test MAE | rotated | epochs | best epoch | "
        "lr decays | stop | final lr | train s | speed | run |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for r, speed in zip(rows, relative_speed(rows), strict=True):
        u = r["unit"]
        mark = " slow" if is_slow(r, speed) else ""
        L.append(
            f"| {r['target']} | {r['size']:,} | {r['variant']} | {r['seed']} | "
            f"{_fmt(r['test_mae'])} {u} | {_fmt(r['rot_test_mae'])} {u} | {r['epochs']} | "
            f"{r['best_epoch']} | {r['lr_decays']} | {r['stop_reason']} | "
            f"{_fmt(r['final_lr'])} | {r['train_seconds']:.0f} | {speed:.2f}{mark} | "
            f"[{r['run_dir']}]({r['run_dir']}/log.csv) |"
        )
    return "\n".join(L) + "\n"


def _difference_table(rows: Sequence[Dict[str, Any]], contrast: bool) -> List[str]:
    """Markdown rows of :func:`paired` (or, with ``contrast``, :func:`contrasts`) rows."""
    head = "| contrast | variant − baseline" if contrast else "| variant"
    L = [
        f"| target | train size {head} | seeds | difference | 95% interval | agree in sign "
        f"| ratio |",
        "|---|---:|---" + ("|---" if contrast else "") + "|---:" * 5 + "|",
    ]
    if contrast:
        L[0] += " Holm 95% interval | Holm p | equivalent (90% interval) | reading |"
        L[1] += "---:|---:|---|---|"
    for p in rows:
        u = p["unit"]
        what = f"{p['contrast']} | {p['variant']} − {p['reference']}" if contrast else p["variant"]
        line = (
            f"| {p['target']} | {p['size']:,} | {what} | {p['n']} | "
            f"{_pm(p['diff_mean'], p['diff_std'])} {u} | "
            f"[{_fmt(p['ci_low'])}, {_fmt(p['ci_high'])}] {u} | "
            f"{p['agree']}/{p['n']} | {_fmt(p['ratio'])} |"
        )
        if contrast:
            line += (
                f" [{_fmt(p['holm_low'])}, {_fmt(p['holm_high'])}] {u} | {_fmt(p['holm_p'])} | "
                f"{_equivalence_cell(p, u)} | {p['reading']} |"
            )
        L.append(line)
    return L


def _equivalence_cell(p: Dict[str, Any], unit: str) -> str:
    """The TOST verdict of a contrast row: within ±margin or not, with its 90% interval."""
    if p["equivalent"] == "":
        return "no margin"
    verdict = "yes" if p["equivalent"] else "no"
    return f"{verdict}, ±{_fmt(p['margin'])}: [{_fmt(p['eq_low'])}, {_fmt(p['eq_high'])}] {unit}"
