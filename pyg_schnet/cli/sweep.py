"""``pyg-schnet sweep SWEEP.yaml --count N``: a W&B sweep run here with W&B's
own sweep engine and no server (:mod:`pyg_schnet.study.sweep`)."""

from __future__ import annotations

from typing import List

from pyg_schnet.cli.parser import POSITIVE, Parser
from pyg_schnet.study.sweep import run_sweep


def main(argv: List[str]) -> int:
    p = Parser(
        prog="pyg-schnet sweep",
        description="Run a W&B sweep file here with W&B's sweep engine, no server.",
    )
    p.add_argument("sweep", help="sweep YAML (the file wandb sweep takes)")
    p.add_argument("--count", type=POSITIVE, default=1, help="runs to start in this call")
    p.add_argument("--out", default=None, help="sweep folder (default: runs/sweeps/NAME)")
    p.add_argument(
        "--wandb",
        default="offline",
        choices=["offline", "disabled", "online"],
        help="W&B mode of the runs (default: offline, no server)",
    )
    p.add_argument(
        "--wandb_sweep_id",
        default=None,
        metavar="[ENTITY/PROJECT/]ID",
        help="file the runs under this sweep of the W&B server (made where there is a "
        "network: wandb sweep --project P SWEEP.yaml), so that wandb sync keeps them "
        "together; kept in the sweep folder for later calls",
    )
    p.epilog = "After --, flags added to every run's command (e.g. -- --epochs=5)."
    extra: List[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    a = p.parse_args(argv)
    return run_sweep(a.sweep, a.count, a.out, a.wandb, extra, a.wandb_sweep_id)
