"""Plots of a study report: learning curves and validation curves."""

from __future__ import annotations

import os.path as osp
from typing import Any, Dict, List, Optional, Sequence

from pyg_schnet.io import save_figure
from pyg_schnet.metrics import display_unit
from pyg_schnet.run.rundir import RunDir
from pyg_schnet.study.spec import plan


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: str, name: str) -> str:
    save_figure(fig, osp.join(out, name))
    _pyplot().close(fig)
    return name


def learning_curve_plot(
    spec, target: str, cells: Sequence[Dict[str, Any]], slopes: Sequence[Dict[str, Any]]
) -> Optional[str]:
    """``learning_curve_<target>.png``: test MAE against training-set size on
    log-log axes, cell means with min-max over seeds, the fitted power law."""
    import numpy as np

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    unit = None
    for k, v in enumerate(spec.variants):
        cs = [c for c in cells if c["target"] == target and c["variant"] == v]
        if not cs:
            continue
        unit = cs[0]["unit"]
        n = np.array([c["size"] for c in cs], dtype=float)
        m = np.array([c["test_mae_mean"] for c in cs])
        sd = np.array([c["test_mae_std"] for c in cs])
        sd = np.where(np.isnan(sd), 0.0, sd)
        slope = next(
            (s["slope"] for s in slopes if s["target"] == target and s["variant"] == v),
            float("nan"),
        )
        label = v if slope != slope else f"{v} (slope {slope:.2f})"
        ax.errorbar(n, m, yerr=sd, fmt="o", color=f"C{k}", ms=4, capsize=2, label=label)
        if len(n) >= 2:
            coef = np.polyfit(np.log(n), np.log(m), 1)
            grid = np.geomspace(n.min(), n.max(), 50)
            ax.plot(grid, np.exp(np.polyval(coef, np.log(grid))), color=f"C{k}", lw=1)
    if unit is None:
        plt.close(fig)
        return None
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training molecules")
    ax.set_ylabel(f"test MAE [{unit}]")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{spec.name}: {target} learning curves (mean ± std over seeds)", fontsize=10)
    fig.tight_layout()
    return _save(fig, spec.out, f"learning_curve_{target}.png")


def val_curve_plot(spec, target: str, size: int) -> Optional[str]:
    """``val_curves_<target>_n<size>.png``: validation MAE against epoch, one
    line per run, one colour per variant."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    drawn: List[str] = []
    scale, unit = 1.0, ""
    for r in plan(spec):
        if r.target != target or r.size != size:
            continue
        log = RunDir(r.cfg.out).log()
        if not log:
            continue
        m = RunDir(r.cfg.out).metrics() or {}
        if m.get("unit"):
            unit, scale = display_unit(m["unit"])
        k = list(spec.variants).index(r.variant)
        ax.plot(
            [x["epoch"] for x in log],
            [x["val_mae"] * scale for x in log],
            color=f"C{k}",
            lw=0.9,
            alpha=0.8,
            label=None if r.variant in drawn else r.variant,
        )
        drawn.append(r.variant)
    if not drawn:
        plt.close(fig)
        return None
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation MAE [{unit}]")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(
        f"{spec.name}: {target}, {size:,} training molecules (one line per run)", fontsize=10
    )
    fig.tight_layout()
    return _save(fig, spec.out, f"val_curves_{target}_n{size}.png")


def contrast_plot(spec, target: str, rows: Sequence[Dict[str, Any]]) -> Optional[str]:
    """``contrasts_<target>.png``: each contrast of ``target`` (the report's
    contrast rows) as its paired mean difference with the 95% interval (thick)
    and Holm's family-wise interval (thin), the spec's equivalence margin as a
    band around 0; a contrast with one seed is a lone point. The x axis is
    symmetric-log, so contrasts of a few meV and of hundreds share one plot."""
    rs = [r for r in rows if r["target"] == target]
    if not rs:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(rs) + 1.4), dpi=110)
    unit = rs[0]["unit"]
    margin = spec.equivalence_margins.get(target)
    if margin is not None:
        ax.axvspan(-margin, margin, color="0.85", label=f"equivalence margin ±{margin:g} {unit}")
    ax.axvline(0.0, color="0.4", lw=0.8)
    for i, r in enumerate(rs):
        y = len(rs) - 1 - i
        if r["holm_low"] == r["holm_low"]:  # not NaN: two seeds or more
            ax.plot([r["holm_low"], r["holm_high"]], [y, y], color="C0", lw=0.8)
        if r["ci_low"] == r["ci_low"]:
            ax.plot([r["ci_low"], r["ci_high"]], [y, y], color="C0", lw=3, alpha=0.7)
        ax.plot([r["diff_mean"]], [y], "o", color="C3" if r.get("equivalent") else "k", ms=4)
        seeds = f"{r['n']} seed" + ("s" if r["n"] != 1 else "")
        ax.text(1.01, y, seeds, transform=ax.get_yaxis_transform(), fontsize=7, va="center")
    ax.set_yticks(range(len(rs)))
    sized = len(spec.train_sizes) > 1
    labels = [r["contrast"] + (f" (n={r['size']:,})" if sized else "") for r in rs]
    ax.set_yticklabels(list(reversed(labels)), fontsize=7)
    lin = max(margin or 1.0, 1.0)
    ax.set_xscale("symlog", linthresh=lin)
    reach = max(
        abs(v) for r in rs for v in (r["diff_mean"], r["holm_low"], r["holm_high"]) if v == v
    )
    ticks = [0.0, lin] + [10.0**k for k in range(1, 5) if 10.0**k > lin and 10.0**k < 3 * reach]
    at = sorted({-t for t in ticks if t} | set(ticks))
    ax.set_xticks(at)
    ax.set_xticklabels([f"{t:g}" if t else "0" for t in at], fontsize=7)
    ax.set_xlabel(f"variant − baseline, test MAE [{unit}]", fontsize=8)
    ax.grid(True, axis="x", alpha=0.3)
    if margin is not None:
        ax.legend(fontsize=7, loc="lower right")
    ax.set_title(
        f"{spec.name}, {target}: paired differences (dot: mean over seeds, thick: 95% "
        "interval,\nthin: Holm's family-wise interval, red: equivalent within the margin)",
        fontsize=8,
    )
    fig.tight_layout()
    return _save(fig, spec.out, f"contrasts_{target}.png")
