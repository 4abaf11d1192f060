"""The figures of a run: parity, errors, learned filters (written through
:func:`pyg_schnet.io.save_figure`; used by ``evaluate`` and the W&B logging)."""

from __future__ import annotations

from typing import Any

import torch

from pyg_schnet.io import save_figure


def error_plot(diff, num_atoms, title: str, unit: str, path: str) -> None:
    """The error histogram, and the MAE against the number of atoms (with
    how many molecules each size has)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9, 4.2), dpi=110)
    lim = float(np.percentile(np.abs(diff), 99.5)) or 1.0
    ax.hist(np.clip(diff, -lim, lim), bins=80, color="tab:blue")
    ax.set_xlabel(f"predicted - true [{unit}] (clipped at the 99.5th percentile of |error|)")
    ax.set_ylabel("molecules")
    ax.set_yscale("log")
    sizes = np.unique(num_atoms)
    mae = [float(np.abs(diff[num_atoms == n]).mean()) for n in sizes]
    count = [int((num_atoms == n).sum()) for n in sizes]
    ax2.plot(sizes, mae, "o-", color="tab:red")
    ax2.set_xlabel("atoms per molecule")
    ax2.set_ylabel(f"MAE [{unit}]", color="tab:red")
    ax3 = ax2.twinx()
    ax3.bar(sizes, count, color="0.85", zorder=0)
    ax3.set_ylabel("molecules")
    ax2.set_zorder(ax3.get_zorder() + 1)
    ax2.patch.set_visible(False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def parity_plot(y, pred, title: str, unit: str, path: str) -> None:
    """Parity plot and, beside it, the errors against the true value (for
    total energies the parity panel alone hides everything below 100 eV)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9, 4.2), dpi=110)
    ax.scatter(y, pred, s=4, alpha=0.5)
    lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlabel(f"true [{unit}]")
    ax.set_ylabel(f"predicted [{unit}]")
    ax2.scatter(y, pred - y, s=4, alpha=0.5)
    ax2.axhline(0.0, color="k", lw=0.8, ls="--")
    ax2.set_xlabel(f"true [{unit}]")
    ax2.set_ylabel(f"predicted - true [{unit}]")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


@torch.no_grad()
def filter_plot(model: Any, path: str, channels: int = 8) -> None:
    """Each interaction block's learned filter against distance (the
    ``channels`` channels that vary most; a non-radial filter along the x
    axis), times its envelope, from 0 to the cutoff."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    filters = model.filters
    d = torch.linspace(0.0, model.cutoff, 501)
    vec = torch.stack([d, torch.zeros_like(d), torch.zeros_like(d)], dim=1)  # along x
    fig, axes = plt.subplots(
        1, len(filters), figsize=(3.4 * len(filters), 3.0), dpi=110, squeeze=False
    )
    for k, filt in enumerate(filters):
        w = filt(vec, d)  # [501, num_filters]
        top = torch.argsort(w.std(0), descending=True)[:channels]
        ax = axes[0, k]
        ax.plot(d.numpy(), w[:, top].numpy(), lw=1)
        ax.set_title(f"{filt.name}: block {k + 1}", fontsize=9)
        ax.set_xlabel("distance [Å]" + ("" if filt.radial else " (along x)"))
    axes[0, 0].set_ylabel("filter weight")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
