"""``pyg-schnet benchmark``: pyg_schnet against PyG's SchNet (or any
registered models) on the same batches (:mod:`pyg_schnet.analysis.benchmark`)."""

from __future__ import annotations

import argparse
from typing import List

from pyg_schnet.analysis.benchmark import run
from pyg_schnet.cli.parser import NON_NEGATIVE, POSITIVE, ROOT_HELP, Parser, positive_float


def main(argv: List[str]) -> int:
    """``pyg-schnet benchmark``: the command line, checked (a bad value is one
    error line), then :func:`pyg_schnet.analysis.benchmark.run`."""
    p = Parser(prog="pyg-schnet benchmark")
    p.add_argument("--root", default=None, help=ROOT_HELP)
    p.add_argument("--source", default="qm9pack", help="QM9 source of the root")
    # the model's sizes under train's names (--hidden-channels ...); the
    # short names of earlier versions (--hidden ...) still work
    for flag, short, default, train in (
        ("hidden-channels", "hidden", 128, "--hidden-channels"),
        ("num-filters", "filters", 128, "--num-filters"),
        ("num-interactions", "interactions", 6, "--num-interactions"),
        ("num-gaussians", "gaussians", 50, "--filter.num_gaussians"),
    ):
        p.add_argument(
            f"--{flag}",
            f"--{flag.replace('-', '_')}",
            f"--{short}",
            type=POSITIVE,
            default=default,
            help=f"as train's {train}",
        )
    p.add_argument("--cutoff", type=positive_float, default=10.0)
    p.add_argument("--batch-size", type=POSITIVE, default=100)
    p.add_argument("--batches", type=POSITIVE, default=6, help="timed batches per round")
    p.add_argument("--rounds", type=POSITIVE, default=3)
    p.add_argument("--warmup", type=NON_NEGATIVE, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--skip-build", action="store_true", help="do not time a fresh data build")
    p.add_argument(
        "--fast",
        action="store_true",
        help="also time pyg_schnet's fast mode (with --models: that of every model "
        "that has one, schnet and painn, with the same weights)",
    )
    p.add_argument(
        "--models",
        default=None,
        metavar="NAME,...",
        help="time these registered models instead (pyg_schnet.nn.models: schnet, "
        "pyg_schnet_ref, visnet, dimenet++, painn), each built with --hidden-channels, "
        "--num-interactions and --cutoff, on the same batches; ratios are to the "
        "first",
    )
    p.add_argument(
        "--filter",
        default=None,
        metavar="NAME",
        help="schnet's filter with --models (pyg_schnet.nn.filters: gaussian, coords, "
        "coords_basis, ...; default gaussian), with --num-gaussians where it takes it",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="one thread count (default: the default's and every count up to the number of cores)",
    )
    p.add_argument(
        "--no-memory",
        action="store_true",
        help="skip the peak-memory column (it starts one fresh interpreter per model)",
    )
    p.add_argument("--memory-of", default=None, help=argparse.SUPPRESS)
    return run(p.parse_args(argv), argv)
