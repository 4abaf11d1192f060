"""``pyg-schnet probes``: probe trained weights (run directories or shipped
models) without retraining (:mod:`pyg_schnet.analysis.probes`)."""

from __future__ import annotations

import sys
from typing import List

from pyg_schnet.analysis.probes import (
    probe,
    probes_csv,
    probes_table,
    subject_from_pretrained,
    subject_from_run,
)
from pyg_schnet.cli.parser import DEVICE_HELP, POSITIVE, Parser, seed
from pyg_schnet.errors import UserError
from pyg_schnet.io import check_output_file, write_text
from pyg_schnet.run.inference import resolve_device


def main(argv: List[str]) -> int:
    """``pyg-schnet probes RUN_DIR ... [--model NAME ...] [--out FILE.csv]``."""
    p = Parser(
        prog="pyg-schnet probes",
        usage="pyg-schnet probes [RUN_DIR ...] [--model NAME ...] [--limit N] [--out FILE.csv] "
        "[--device cpu|cuda]",
    )
    p.add_argument("run_dirs", nargs="*", help="run directories (a study's runs keep model.pt)")
    p.add_argument(
        "--model",
        action="append",
        default=[],
        help="a shipped model (qm9-U0, qm9-gap) or a folder from export; repeatable",
    )
    p.add_argument(
        "--root",
        default=None,
        help="QM9 root (default: a run's recorded root if it is on this machine, else as train)",
    )
    p.add_argument("--limit", type=POSITIVE, default=1000, help="test molecules (seeded subset)")
    p.add_argument("--batch-size", "--batch_size", type=POSITIVE, default=250)
    p.add_argument("--seed", type=seed, default=0, help="seed of the noise and the rotations")
    p.add_argument("--out", default=None, help="also write the rows as CSV here")
    p.add_argument("--device", default="cpu", help=DEVICE_HELP)
    a = p.parse_args(argv)
    if not a.run_dirs and not a.model:
        raise UserError("probes needs run directories or --model NAME")
    if a.out:
        check_output_file(a.out)
    resolve_device(a.device)  # before any model or data is loaded
    subjects = [subject_from_run(r, a.root, a.limit, a.batch_size, a.device) for r in a.run_dirs]
    subjects += [
        subject_from_pretrained(m, a.root, a.limit, a.batch_size, a.device) for m in a.model
    ]
    rows = []
    for s in subjects:
        rows += probe(s, a.seed)
        print(probes_table([r for r in rows if r["subject"] == s.label]), flush=True)
    if a.out:
        write_text(a.out, probes_csv(rows))
        print(f"wrote {len(rows)} rows to {a.out}", file=sys.stderr)
    return 0
