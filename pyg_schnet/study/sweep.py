"""``pyg-schnet sweep SWEEP.yaml``: run a W&B sweep here, with no W&B server.

The sweep file is the one ``wandb sweep`` takes (``method`` grid, random or
bayes, ``parameters``, ``metric``, ``command``). The next configuration comes
from W&B's own sweep engine (the ``sweeps`` package, what the W&B server runs),
given every earlier run of this sweep and its metric; the command is built the
way ``wandb agent`` builds it (``${env}``, ``${program}``, ``${args}``), plus
``--out OUT/RUN_ID`` so that each run has its own directory, named after its
W&B run id (``WANDB_RUN_ID``, which the run's W&B logging takes too), and
``--wandb MODE`` (offline by default). Resumable: each run directory holds
``sweep.json`` (its parameters), so a second call continues the sweep. A run
that did not finish (no ``metrics.json``: killed, or failed) has not run: a
later call resumes it from its ``last.pt`` (``pyg-schnet train --resume``) or
starts it over before it draws new configurations, and a grid is complete
only when every point has finished. The call ends with the best finished run
(:func:`best_run_summary`). W&B files each run by the sweep
(:func:`wandb_flags`: name, group and tags with the sweep's local id,
:func:`sweep_id`). W&B's own sweep id names a sweep on its server: ``--wandb_sweep_id``
gives one made where there is a network (``wandb sweep --project P SWEEP.yaml``), and
the runs record it (:func:`server_sweep`), so that ``wandb sync`` files them under that
sweep. ``early_terminate`` is refused: every run goes to its end.
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

from pyg_schnet.errors import RunInUse, UserError, read_text
from pyg_schnet.io import write_json, write_text
from pyg_schnet.run.config import Config, read_yaml
from pyg_schnet.run.rundir import INTERRUPTED, METRICS_FILE, RunDir

#: metrics.json keys of a sweep metric name (val_mae: the best epoch's).
METRIC_KEYS = {"val_mae": "best_val_mae"}
#: A sweep run's parameters, in its run directory.
SWEEP_FILE = "sweep.json"
#: The sweep's local id (:func:`sweep_id`), in the sweep folder.
SWEEP_ID_FILE = "sweep_id"
#: The W&B server's sweep its runs are filed under (:func:`server_sweep`), in the sweep folder.
SERVER_SWEEP_FILE = "wandb_sweep"


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
    if "early_terminate" in spec:
        kind = (spec["early_terminate"] or {}).get("type", "early_terminate")
        raise UserError(
            f"sweep file {path}: early_terminate ({kind}) is not supported here: pyg-schnet "
            "sweep runs every configuration to its end; remove it (patience or time_budget "
            "end a run early), or run the sweep with wandb sweep and wandb agent"
        )
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


def _read_json(path: str, what: str) -> Dict[str, Any]:
    """A JSON object the sweep wrote, or one UserError naming the file."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict):
        raise UserError(
            f"{what} {path} is unreadable (not the JSON object it should be); "
            "restore it or remove its run directory"
        )
    return data


def _metric(spec: Dict[str, Any], run_dir: str) -> Tuple[Optional[str], Optional[float]]:
    name = (spec.get("metric") or {}).get("name")
    path = RunDir(run_dir).metrics_path
    if name is None or not osp.isfile(path):
        return name, None
    metrics = _read_json(path, "metrics file")
    value = metrics.get(name, metrics.get(METRIC_KEYS.get(name, name)))
    return name, None if value is None else float(value)


def recorded_runs(out: str) -> Dict[str, Dict[str, Any]]:
    """This sweep's runs so far (``OUT/*/sweep.json``): run id -> its parameters."""
    runs = {}
    for name in sorted(os.listdir(out)) if osp.isdir(out) else []:
        info = osp.join(out, name, SWEEP_FILE)
        if osp.isfile(info):
            config = _read_json(info, "sweep run file").get("config")
            if not isinstance(config, dict):
                raise UserError(f"sweep run file {info} holds no parameters (config)")
            runs[name] = config
    return runs


def _engine_run(spec: Dict[str, Any], name: str, config: Dict[str, Any], out: str) -> Any:
    """A run as the engine sees it: configuration, state and metric."""
    engine = _engine()
    metric, value = _metric(spec, osp.join(out, name))
    return engine.SweepRun(
        name=name,
        config=config,
        state=engine.RunState.finished if value is not None else engine.RunState.failed,
        summaryMetrics={metric: value} if value is not None else {},
    )


def previous_runs(spec: Dict[str, Any], out: str) -> List[Any]:
    """This sweep's earlier runs (from ``OUT/*/sweep.json``), as the engine
    sees them: configuration, state and metric."""
    return [_engine_run(spec, n, c, out) for n, c in recorded_runs(out).items()]


def sweep_id(out: str) -> str:
    """The local sweep id of the sweep folder ``out`` (8 hex digits, made on
    its first call and kept in ``OUT/sweep_id``)."""
    path = osp.join(out, SWEEP_ID_FILE)
    if not osp.isfile(path):
        write_text(path, uuid.uuid4().hex[:8] + "\n")
    ident = read_text(path, "sweep id file", 100).strip()
    if not ident or not ident.isalnum():
        raise UserError(f"sweep id file {path} holds no id; restore it or remove it")
    return ident


def _parse_server_sweep(value: str, where: str) -> Tuple[str, str, str]:
    """``ID`` or ``ENTITY/PROJECT/ID`` (what ``wandb sweep`` prints after
    ``wandb agent``) as (entity, project, id); empty parts are not given."""
    parts = value.strip().split("/")
    ok = len(parts) in (1, 3) and all(
        p and p.replace("-", "").replace("_", "").isalnum() for p in parts
    )
    if not ok:
        raise UserError(
            f"{where}: {value.strip()!r} is not a W&B sweep id (ID or ENTITY/PROJECT/ID, "
            "as wandb sweep prints it)"
        )
    return ("", "", parts[0]) if len(parts) == 1 else (parts[0], parts[1], parts[2])


def server_sweep(out: str, given: Optional[str]) -> Optional[Tuple[str, str, str]]:
    """The W&B server sweep (entity, project, id) that the runs of the sweep
    folder ``out`` are filed under: ``given`` (``--wandb_sweep_id``) on the
    first call that names one, kept in ``OUT/wandb_sweep``; later calls use
    it, and naming another one is refused (runs already filed under the first
    would be split from the rest). None: no server sweep (runs started before
    one was named carry none)."""
    path = osp.join(out, SERVER_SWEEP_FILE)
    kept = None
    if osp.isfile(path):
        kept = _parse_server_sweep(
            read_text(path, "W&B sweep file", 1000), f"W&B sweep file {path}"
        )
    if given is None:
        return kept
    new = _parse_server_sweep(given, "--wandb_sweep_id")
    if kept is not None and kept != new:
        raise UserError(
            f"sweep folder {out} files its runs under W&B sweep {'/'.join(p for p in kept if p)}; "
            f"--wandb_sweep_id {given} would split them (use another --out)"
        )
    if kept is None:
        write_text(path, "/".join(p for p in new if p) + "\n")
    return new


def wandb_flags(
    spec: Dict[str, Any],
    ident: str,
    name: str,
    server: Optional[Tuple[str, str, str]] = None,
) -> List[str]:
    """How W&B files a run of the sweep with local id ``ident``: named
    ``name``, grouped and tagged by the sweep, in the sweep file's ``project``
    and ``entity`` if it names them (those of the server sweep ``server``
    win, when its id was given with them). The id is not W&B's own ``sweep_id``:
    that names a sweep on the W&B server, and ``wandb sync`` of a run whose
    sweep the server does not know fails (:func:`server_sweep` gives one)."""
    flags = [
        f"--wandb_name={name}",
        f"--wandb_group={spec.get('name') or 'sweep'}-{ident}",
        f"--wandb_tags=sweep,sweep-{ident}",
        "--wandb_job_type=sweep",
    ]
    where = {k: spec[k] for k in ("project", "entity") if spec.get(k)}
    if server is not None:
        entity, project, _ = server
        where.update({k: v for k, v in (("entity", entity), ("project", project)) if v})
    return flags + [f"--wandb_{k}={v}" for k, v in sorted(where.items(), reverse=True)]


def _run_command(
    spec: Dict[str, Any],
    config: Dict[str, Any],
    run_dir: str,
    filing: Sequence[str],
    extra: Sequence[str],
    wandb_mode: str,
    again: bool,
) -> Tuple[List[str], str]:
    """The command of a run and what it does (``new``, ``resumed`` or
    ``retried``): the agent's command, the W&B filing flags ``filing``
    (:func:`wandb_flags`), the flags ``extra`` (which win over them), its
    directory and the W&B mode ``wandb_mode``. A run
    started ``again`` (it did not finish) resumes from its ``last.pt`` when
    the command is ``pyg-schnet train`` and the run directory holds one; else
    it starts over (``--overwrite`` for ``pyg-schnet train``, which keeps a
    run directory's files otherwise)."""
    cmd = agent_command(spec, config)
    train = cmd[1:4] == ["-m", "pyg_schnet.cli", "train"]
    if again and train and RunDir(run_dir).status() == INTERRUPTED:
        return [*cmd[:4], "--resume", run_dir], "resumed"
    cmd += [*filing, *extra, f"--out={run_dir}", f"--wandb={wandb_mode}"]
    if not again:
        return cmd, "new"
    return cmd + (["--overwrite"] if train else []), "retried"


def best_run_summary(spec: Dict[str, Any], out: str, runs: Dict[str, Dict[str, Any]]) -> str:
    """The line that ends a sweep: its best finished run of ``runs`` (run id
    -> parameters) by the sweep's metric and goal, with its parameters and
    directory."""
    metric = spec.get("metric") or {}
    scored = [(_metric(spec, osp.join(out, n))[1], n) for n in runs]
    done = [(v, n) for v, n in scored if v is not None]
    if not metric.get("name"):
        return "best run: none (the sweep file names no metric)"
    if not done:
        return f"best run: none yet (none of the {len(runs)} run(s) has finished)"
    pick = max if metric.get("goal") == "maximize" else min
    value, best = pick(done)
    params = {key: v["value"] for key, v in runs[best].items()}
    return (
        f"best run ({metric.get('goal', 'minimize')} {metric['name']}, {len(done)} of "
        f"{len(runs)} run(s) finished): {best} {metric['name']} {value:.5g} {params} "
        f"in {osp.join(out, best)}"
    )


def run_sweep(
    path: str,
    count: int = 1,
    out_dir: Optional[str] = None,
    wandb_mode: str = "offline",
    extra: Sequence[str] = (),
    wandb_sweep: Optional[str] = None,
) -> int:
    """Start ``count`` runs of the sweep file ``path`` (see the module
    docstring) in ``out_dir`` (default: ``runs/sweeps/NAME``), each with the
    flags ``extra`` added: first the earlier runs that did not finish
    (killed or failed: resumed or retried, each once per call), then new
    configurations from the engine. ``wandb_sweep``: the W&B server sweep
    the runs are filed under (:func:`server_sweep`). Returns 0, or raises
    naming how many runs failed."""
    if count < 1:
        raise UserError("sweep: --count must be at least 1")
    spec = read_sweep(path)
    out = osp.abspath(out_dir or osp.join("runs", "sweeps", str(spec.get("name") or "sweep")))
    if wandb_sweep is not None:  # checked before anything is written
        _parse_server_sweep(wandb_sweep, "--wandb_sweep_id")
    recorded = recorded_runs(out)  # every file read (and checked) before anything is written
    runs = {n: _engine_run(spec, n, c, out) for n, c in recorded.items()}
    os.makedirs(out, exist_ok=True)
    ident = sweep_id(out)
    server = server_sweep(out, wandb_sweep)
    env = dict(os.environ)
    if server is not None:  # what `wandb agent` sets; W&B records it with the run
        env["WANDB_SWEEP_ID"] = server[2]
        # under a sweep W&B ignores wandb.init's project and entity for these (the sweep's)
        entity, project, _ = server
        env["WANDB_PROJECT"] = project or str(spec.get("project") or Config.wandb_project)
        if entity or spec.get("entity"):
            env["WANDB_ENTITY"] = entity or str(spec["entity"])
    engine = _engine()
    again = [n for n in recorded if not RunDir(osp.join(out, n)).has(METRICS_FILE)]
    print(
        f"sweep {spec.get('name', path)} ({spec['method']}, local id {ident}"
        + (f", W&B sweep {'/'.join(p for p in server if p)}" if server else "")
        + "): "
        f"{len(runs)} earlier run(s) in {out}"
        + (f", {len(again)} of them unfinished (resumed or retried first)" if again else ""),
        flush=True,
    )
    failed = started = 0
    exhausted = False
    while started < count:
        if again:
            run_id = again.pop(0)
            run_dir, config = osp.join(out, run_id), recorded[run_id]
            info = _read_json(osp.join(run_dir, SWEEP_FILE), "sweep run file")
            name = str(info.get("name") or run_id)  # runs from before names: their id
            try:
                RunDir(run_dir).check_free()
            except RunInUse as exc:
                print(f"{run_id}: left to the process running it ({exc})", flush=True)
                continue
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                nxt = engine.next_run(spec, list(runs.values()))
            if nxt is None:
                exhausted = True
                break
            run_id, config = uuid.uuid4().hex[:8], nxt.config
            name = f"{spec.get('name') or 'sweep'}-{len(runs) + 1}"
            run_dir = osp.join(out, run_id)
            os.makedirs(run_dir)
            write_json(
                osp.join(run_dir, SWEEP_FILE), {"config": config, "run_id": run_id, "name": name}
            )
        filing = wandb_flags(spec, ident, name, server)
        cmd, how = _run_command(
            spec, config, run_dir, filing, extra, wandb_mode, run_id in recorded
        )
        started += 1
        proc = subprocess.run(cmd, env=dict(env, WANDB_RUN_ID=run_id))
        if osp.isdir(run_dir) and not osp.exists(osp.join(run_dir, SWEEP_FILE)):
            # --overwrite replaced the folder whole
            write_json(
                osp.join(run_dir, SWEEP_FILE), {"config": config, "run_id": run_id, "name": name}
            )
        runs[run_id] = _engine_run(spec, run_id, config, out)
        metric, value = _metric(spec, run_dir)
        params = {key: v["value"] for key, v in config.items()}
        where = f"[{started}/{count}] {run_id} {params}{'' if how == 'new' else f' ({how})'}"
        if proc.returncode != 0 or value is None:
            failed += 1
            print(
                f"{where}: failed (exit {proc.returncode}); command: {shlex.join(cmd)}",
                flush=True,
            )
        else:
            print(f"{where}: {metric} {value:.5g}", flush=True)
    if exhausted:
        left = [n for n in runs if not RunDir(osp.join(out, n)).has(METRICS_FILE)]
        if left:
            print(
                f"every grid point has started, but {len(left)} run(s) did not finish "
                f"({', '.join(left)}); a later call resumes or retries them",
                flush=True,
            )
        else:
            print("the sweep is complete (every grid point has run)", flush=True)
    print(best_run_summary(spec, out, recorded_runs(out)), flush=True)
    if failed:
        raise UserError(
            f"{failed} sweep run(s) failed (their output is above); a later call "
            "resumes or retries them"
        )
    return 0
