"""``pyg-schnet throughput``: training speed over threads x processes x model
size, the measurements behind the default thread rule
(:mod:`pyg_schnet.run.throughput`)."""

from __future__ import annotations

import argparse
from typing import List

from pyg_schnet.cli.parser import POSITIVE, ROOT_HELP, Parser, plain_text
from pyg_schnet.run import throughput


def main(argv: List[str]) -> int:
    p = Parser(
        prog="pyg-schnet throughput",
        description=plain_text(throughput.__doc__ or ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--root", default=None, help=ROOT_HELP)
    p.add_argument("--source", default="qm9pack")
    sizes = list(throughput.SIZES)
    p.add_argument("--sizes", nargs="+", default=sizes, choices=sizes)
    p.add_argument("--rounds", type=POSITIVE, default=2, help="repetitions of the grid")
    p.add_argument(
        "--epochs", type=POSITIVE, default=3, help="epochs per run (the first is warm-up)"
    )
    p.add_argument(
        "--molecules",
        type=POSITIVE,
        default=None,
        help="training molecules per run (default: 4,000 quickstart, 1,500 PyG)",
    )
    p.add_argument(
        "--fast",
        choices=["true", "false"],
        default="true",
        help="train in the fast mode, train's default (false: the exact mode, no compile step)",
    )
    a = p.parse_args(argv)
    a.fast = a.fast == "true"
    return throughput.run(a)
