"""``pyg-schnet study run|report``."""

from __future__ import annotations

import shlex
from typing import List

from pyg_schnet.cli.parser import POSITIVE, Parser
from pyg_schnet.errors import UserError
from pyg_schnet.study.report import write_report
from pyg_schnet.study.runner import run_queue, say
from pyg_schnet.study.spec import load_spec


def main(argv: List[str]) -> int:
    p = Parser(
        prog="pyg-schnet study",
        description="Run a study spec (variants x targets x sizes x seeds) and report it.",
    )
    sub = p.add_subparsers(dest="action", required=True, parser_class=Parser)
    r = sub.add_parser(
        "run",
        help="train every unfinished run, then write the report; "
        "several specs run as one queue, in order",
    )
    r.add_argument("spec", nargs="+")
    r.add_argument("--quick", action="store_true", help="the spec's quick settings (tests)")
    r.add_argument("--jobs", type=POSITIVE, default=1, help="runs at once, one thread each")
    r.add_argument("--out", default=None, help="output folder (default: from the spec)")
    r.add_argument("--root", default=None, help="QM9 data root (default: from the spec)")
    r.add_argument("--source", default=None, help="QM9 source (default: from the spec)")
    r.add_argument(
        "--overwrite", action="store_true", help="retrain runs whose directory holds other settings"
    )
    q = sub.add_parser("report", help="write the report of the finished runs")
    q.add_argument("spec", nargs="+")
    q.add_argument("--quick", action="store_true")
    q.add_argument("--out", default=None)
    a = p.parse_args(argv)
    if a.out is not None and len(a.spec) > 1:
        raise UserError(f"--out names one study's folder; {len(a.spec)} specs were given")
    # every spec is read and checked before anything trains: a bad one in a queue fails now
    specs = [
        load_spec(
            path,
            quick=a.quick,
            out=a.out,
            root=getattr(a, "root", None),
            source=getattr(a, "source", None),
        )
        for path in a.spec
    ]
    if a.action == "report":
        for spec in specs:
            say(f"wrote {write_report(spec)}")
        return 0
    command = "pyg-schnet study " + " ".join(shlex.quote(x) for x in argv)
    failed = run_queue(specs, a.jobs, a.overwrite, command)
    if any(failed.values()):
        where = ", ".join(f"{n} in {name}" for name, n in failed.items() if n)
        raise UserError(
            f"{sum(failed.values())} run(s) failed ({where}; see above); finished "
            f"runs are kept, and a re-run retries the others"
        )
    return 0
