"""``pyg-schnet sweep SWEEP.yaml``: run a W&B sweep here, with no W&B server.

The sweep file is the one ``wandb sweep`` takes (``method`` grid, random or
bayes, ``parameters``, ``metric``, ``command``). The next configuration comes
from W&B's own sweep engine (the ``sweeps`` package, what the W&B server runs),
given every earlier run of this sweep and its metric; the command is built the
way ``wandb agent`` builds it (``${env}``, ``${program}``, ``${args}``), plus
``--out OUT/RUN_ID`` so that each run has its own directory, named after its
W&B run id (``WANDB_RUN_ID``, which the run's W&B logging takes too), and
``--wandb MODE`` (offline by default). Resumable: each run directory holds
``sweep.json`` (its parameters), so a second call continues the sweep; a grid
ends when it is exhausted.
"""

from __future__ import annotations

import json
import os
import os.path as osp
import shlex
import subprocess
import sys
import uuid
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

from pyg_schnet.errors import UserError
from pyg_schnet.io import write_json
from pyg_schnet.run.config import read_yaml
from pyg_schnet.run.rundir import RunDir

#: metrics.json keys of a sweep metric name (val_mae: the best epoch's).
METRIC_KEYS = {"val_mae": "best_val_mae"}


def _engine() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the package's pydantic deprecation warnings
        import sweeps
    return sweeps


def read_sweep(path: str) -> Dict[str, Any]:
    spec = read_yaml(path, "sweep file")
    problems = _engine().schema_violations_from_proposed_config(spec)
    if problems:
        raise UserError(f"sweep file {path}: {problems[0]}")
    if "command" not in spec:
        raise UserError(f"sweep file {path} has no command (the program the agent runs)")
    return spec


def agent_command(spec: Dict[str, Any], run_config: Dict[str, Any]) -> List[str]:
    """The command line ``wandb agent`` builds (with W&B's own rendering of
    the parameters, nested ones included); ``pyg-schnet`` runs in this
    interpreter."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    args = create_sweep_command_args({"args": run_config})["args"]
    out: List[str] = []
    for item in spec["command"]:
        if item == "${env}":
            continue
        if item == "${args}":
            out += args
        elif item == "${program}":
            out.append(str(spec.get("program", "")))
        else:
            out.append(str(item))
    if out and out[0] == "pyg-schnet":
        out = [sys.executable, "-m", "pyg_schnet.cli", *out[1:]]
    return out


def _metric(spec: Dict[str, Any], run_dir: str) -> Tuple[Optional[str], Optional[float]]:
    name = (spec.get("metric") or {}).get("name")
    path = RunDir(run_dir).metrics_path
    if name is None or not osp.isfile(path):
        return name, None
    with open(path) as f:
        metrics = json.load(f)
    value = metrics.get(name, metrics.get(METRIC_KEYS.get(name, name)))
    return name, None if value is None else float(value)


def previous_runs(spec: Dict[str, Any], out: str) -> List[Any]:
    """This sweep's earlier runs (from ``OUT/*/sweep.json``), as the engine
    sees them: configuration, state and metric."""
    engine = _engine()
    runs = []
    for name in sorted(os.listdir(out)) if osp.isdir(out) else []:
        info = osp.join(out, name, "sweep.json")
        if not osp.isfile(info):
            continue
        with open(info) as f:
            config = json.load(f)["config"]
        metric, value = _metric(spec, osp.join(out, name))
        state = engine.RunState.finished if value is not None else engine.RunState.failed
        runs.append(
            engine.SweepRun(
                name=name,
                config=config,
                state=state,
                summaryMetrics={metric: value} if value is not None else {},
            )
        )
    return runs


def run_sweep(
    path: str,
    count: int = 1,
    out_dir: Optional[str] = None,
    wandb_mode: str = "offline",
    extra: Sequence[str] = (),
) -> int:
    """Start ``count`` runs of the sweep file ``path`` (see the module
    docstring) in ``out_dir`` (default: ``runs/sweeps/NAME``), each with the
    flags ``extra`` added; returns 0, or raises naming the failed runs."""
    if count < 1:
        raise UserError("sweep: --count must be at least 1")
    spec = read_sweep(path)
    out = osp.abspath(out_dir or osp.join("runs", "sweeps", str(spec.get("name") or "sweep")))
    os.makedirs(out, exist_ok=True)
    engine = _engine()
    runs = previous_runs(spec, out)
    print(
        f"sweep {spec.get('name', path)} ({spec['method']}): {len(runs)} earlier run(s) in {out}",
        flush=True,
    )
    failed = 0
    for k in range(count):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nxt = engine.next_run(spec, runs)
        if nxt is None:
            print("the sweep is complete (every grid point has run)")
            break
        run_id = uuid.uuid4().hex[:8]
        run_dir = osp.join(out, run_id)
        os.makedirs(run_dir)
        write_json(osp.join(run_dir, "sweep.json"), {"config": nxt.config, "run_id": run_id})
        cmd = (
            agent_command(spec, nxt.config)
            + list(extra)
            + [f"--out={run_dir}", f"--wandb={wandb_mode}"]
        )
        env = dict(os.environ, WANDB_RUN_ID=run_id)
        proc = subprocess.run(cmd, env=env)
        metric, value = _metric(spec, run_dir)
        params = {key: v["value"] for key, v in nxt.config.items()}
        if proc.returncode != 0 or value is None:
            failed += 1
            print(
                f"[{k + 1}/{count}] {run_id} {params}: failed (exit {proc.returncode}); "
                f"command: {shlex.join(cmd)}",
                flush=True,
            )
        else:
            print(f"[{k + 1}/{count}] {run_id} {params}: {metric} {value:.5g}", flush=True)
        runs.append(
            engine.SweepRun(
                name=run_id,
                config=nxt.config,
                state=engine.RunState.finished if value is not None else engine.RunState.failed,
                summaryMetrics={metric: value} if value is not None else {},
            )
        )
    if failed:
        raise UserError(f"{failed} sweep run(s) failed (their output is above)")
    return 0
