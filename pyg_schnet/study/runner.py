"""Training a study's runs: one run in this process or a worker, the
runner over a plan, and the sittings log."""

from __future__ import annotations

import json
import os
import os.path as osp
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from pyg_schnet.analysis.evaluate import load_run
from pyg_schnet.analysis.invariance import invariance_errors
from pyg_schnet.data import QM9, UNITS, load_split, target_index
from pyg_schnet.data.loader import MoleculeLoader, rotated
from pyg_schnet.errors import RunInUse, UserError
from pyg_schnet.io import locked, write_csv, write_json
from pyg_schnet.metrics import ErrorSums
from pyg_schnet.nn.rotations import random_rotations
from pyg_schnet.run.checkpoint import export_weights
from pyg_schnet.run.config import Config
from pyg_schnet.run.rundir import BEST_FILE, FINISHED, INTERRUPTED, WEIGHTS_FILE, RunDir
from pyg_schnet.run.trainer import train
from pyg_schnet.study.report import SITTINGS_FILE, read_sittings, write_report
from pyg_schnet.study.spec import (
    SYMMETRY_FILE,
    SYMMETRY_VERSION,
    Run,
    Spec,
    _statuses,
    _write_splits,
    adopt_reused,
    plan,
)

# -- one run (in this process or a worker) ----------------------------------------------------

_DATASETS: Dict[Tuple[str, str, Optional[int]], Any] = {}


def _dataset(cfg) -> Any:
    key = (cfg.root, cfg.source, cfg.max_molecules)
    if key not in _DATASETS:
        _DATASETS[key] = QM9(cfg.root, source=cfg.source, max_molecules=cfg.max_molecules)
    return _DATASETS[key]


def _worker_init(parent: int) -> None:
    import torch

    torch.set_num_threads(1)
    _die_with_parent(parent)


def _die_with_parent(parent: int) -> None:
    """Linux: this worker is killed when the ``study run`` process that
    started it dies, however it dies, so no run goes on training with no one
    to record it (a killed run resumes from its ``last.pt``). Elsewhere a
    no-op."""
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGKILL)


def execute_run(cfg_dict: Dict[str, Any], status: str, keep_weights: bool) -> Dict[str, Any]:
    """Train (or resume) one run, then measure its symmetry and, if asked,
    keep its model-only weights; returns its metrics."""
    cfg = Config(**cfg_dict)
    t0 = time.perf_counter()
    rd = RunDir(cfg.out)
    with rd.lock():  # another study process on the same folder gets an error
        now = rd.status()  # another process may have trained it since the plan was made
        if now in (FINISHED, INTERRUPTED) and not rd.differences(cfg):
            status = now
        if status != FINISHED:
            for name in (SYMMETRY_FILE, WEIGHTS_FILE):  # an earlier run's, if any
                if rd.has(name):
                    os.remove(rd.file(name))
            train(
                cfg,
                resume=(status == INTERRUPTED),
                overwrite=True,
                quiet=True,
                dataset=_dataset(cfg),
            )
        if rd.has(BEST_FILE):
            symmetry_metrics(cfg.out, _dataset(cfg))
            if keep_weights and not rd.has(WEIGHTS_FILE):
                export_weights(rd)  # model-only weights
    metrics = rd.metrics() or {}
    return dict(metrics, wall_seconds=time.perf_counter() - t0)


def symmetry_metrics(run_dir: str, dataset, seed: int = 1234) -> Dict[str, Any]:
    """Rotation measurements of a run's best model on its test split, cached
    in ``symmetry.json``: ``rot_test_mae`` (test MAE with every molecule
    randomly rotated), ``rot_change`` (mean |f(Rx) - f(x)|) and the largest
    relative changes under rotation, translation and permutation on 100 test
    molecules (:func:`~pyg_schnet.analysis.invariance.invariance_errors`)."""
    import torch

    path = osp.join(run_dir, SYMMETRY_FILE)
    if osp.isfile(path):
        try:
            with open(path) as f:
                cached = json.load(f)
            if cached.get("version") == SYMMETRY_VERSION:
                return cached
        except (OSError, ValueError):
            pass
    cfg, model, _ = load_run(run_dir)
    split = load_split(RunDir(run_dir).split_path, len(dataset))
    idx = split.test_idx if len(split.test_idx) else split.val_idx
    loader = MoleculeLoader(dataset, idx, 250, target_index(cfg.target))
    gen = torch.Generator().manual_seed(seed)
    change, rot_err, err = ErrorSums(), ErrorSums(), ErrorSums()
    with torch.no_grad():
        for b in loader:
            pred = model(b.z, b.pos, b.batch, num_graphs=b.num_graphs).view(-1).double()
            rb = rotated(b, random_rotations(b.num_graphs, gen))
            rpred = model(rb.z, rb.pos, rb.batch, num_graphs=b.num_graphs).view(-1).double()
            change.add(rpred, pred)
            rot_err.add(rpred, b.y)
            err.add(pred, b.y)
    n = err.n
    k = min(100, len(idx))
    sub = MoleculeLoader(dataset, idx[:k], k).gather(torch.as_tensor(idx[:k]))
    inv = invariance_errors(model, sub.z, sub.pos, sub.batch, seed=0)
    out = {
        "version": SYMMETRY_VERSION,
        "unit": UNITS[cfg.target],
        "molecules": n,
        "test_mae": err.mae,
        "rot_test_mae": rot_err.mae,
        "rot_change": change.mae,
        "rot_rel": inv["rotation"],
        "trans_rel": inv["translation"],
        "perm_rel": inv["permutation"],
    }
    write_json(path, out)
    return out


# -- the runner ------------------------------------------------------------------------------


def say(msg: str) -> None:
    print(msg, flush=True)


class _Sitting:
    """One invocation of ``study run``, for one study: a row of
    ``OUT/sittings.csv``, rewritten after every finished run, so a sitting
    cut off by a kill still counts the wall time up to its last finished run.
    Its wall time runs from the start of the study's first run to the end of
    its last (in a queue, a study's first runs may start while the one before
    it finishes its last). Invocations running at once each own their row:
    the file is re-read and merged under a lock on ``OUT`` at every write."""

    FIELDS = ("started", "wall_seconds", "runs_trained", "runs_failed", "jobs", "command")

    def __init__(self, out: str, jobs: int, command: str) -> None:
        self.out = out
        self.path = osp.join(out, SITTINGS_FILE)
        self.t0: Optional[float] = None  # time.time() at the start of the first run
        self.row: Dict[str, Any] = {
            "started": "",
            "wall_seconds": 0.0,
            "runs_trained": 0,
            "runs_failed": 0,
            "jobs": jobs,
            "command": command,
        }
        self.written: Optional[Dict[str, str]] = None  # our row as last written to the file

    def started(self, t: float) -> None:
        """A run of this study started at ``t`` (time.time())."""
        if self.t0 is None or t < self.t0:
            self.t0 = t
            self.row["started"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t))

    def update(self, trained: int, failed: int) -> None:
        if self.t0 is not None:
            self.row["wall_seconds"] = round(time.time() - self.t0, 1)
        self.row.update(runs_trained=trained, runs_failed=failed)
        if trained or failed:
            self._write()

    def _write(self) -> None:
        """Replace our row in the file as it is now (other invocations may
        have added or updated theirs since our last write), or append it."""
        with locked(self.out):  # the directory itself: no lock file to leave
            rows: List[Dict[str, Any]] = list(read_sittings(self.out))
            mine = {k: str(v) for k, v in self.row.items()}
            if self.written in rows:
                rows[rows.index(self.written)] = mine
            else:
                rows.append(mine)
            write_csv(self.path, self.FIELDS, rows)
            self.written = mine


def run_study(spec: Spec, jobs: int = 1, overwrite: bool = False, command: str = "") -> int:
    """Train every run of the plan that is not finished, then write the
    report. Returns the number of failed runs."""
    return run_queue([spec], jobs, overwrite, command)[spec.name]


def run_queue(
    specs: Sequence[Spec], jobs: int = 1, overwrite: bool = False, command: str = ""
) -> Dict[str, int]:
    """Several studies as one queue: every study is prepared first (refusals,
    reused runs, splits), then their unfinished runs train in order, the
    next study's first runs taking a worker as soon as one is free (no core
    waits for the slowest run of a study), and each study's report is written
    when its last run ends. Returns the number of failed runs per study."""
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    studies = [_Study(spec, overwrite, jobs, command) for spec in specs]
    for study in studies:
        if not study.todo:
            study.finish()
    if jobs == 1 or sum(len(s.todo) for s in studies) <= 1:
        _train_here(studies)
    else:
        _train_in_workers(studies, jobs)
    return {study.spec.name: len(study.progress.failed) for study in studies}


class _Study:
    """One spec of a queue: its unfinished runs, their directories' statuses
    and its progress."""

    def __init__(self, spec: Spec, overwrite: bool, jobs: int, command: str) -> None:
        self.spec = spec
        self.runs = runs = plan(spec)
        for r in runs:  # the report's files, read (and checked) before anything changes
            RunDir(r.cfg.out).metrics()
            RunDir(r.cfg.out).log()
        read_sittings(spec.out)
        self.status = _prepare(spec, runs, overwrite)
        self.todo = [r for r in runs if self.status[r.rel] != FINISHED]
        say(
            f"study {spec.name}: {len(spec.variants)} variants x {len(spec.targets)} targets x "
            f"{len(spec.train_sizes)} sizes x {len(spec.seeds)} seeds"
            + (" (some variants their own)" if spec.variant_seeds or spec.variant_targets else "")
            + f" = {len(runs)} runs "
            f"({len(runs) - len(self.todo)} finished, {len(self.todo)} to train) -> {spec.out}"
        )
        if self.todo:
            _write_splits(spec, self.todo, len(_dataset(self.todo[0].cfg)))
        # finished runs whose symmetry or weights are missing (and whose checkpoint is here)
        for r in runs:
            if self.status[r.rel] == FINISHED and RunDir(r.cfg.out).has(BEST_FILE):
                try:
                    execute_run(r.cfg.to_dict(), FINISHED, r.seed in spec.keep_weights)
                except RunInUse:  # another sitting measures it now
                    pass
        self.progress = _Progress(len(self.todo), _Sitting(spec.out, jobs, command))

    def job(self, r: Run, threads: Optional[int] = None) -> Tuple[Dict[str, Any], str, bool]:
        """``execute_run``'s arguments for run ``r``."""
        cfg_dict = r.cfg.to_dict()
        if threads is not None:
            cfg_dict["num_threads"] = threads
        return cfg_dict, self.status[r.rel], r.seed in self.spec.keep_weights

    def finished(self, r: Run, result: Optional[Dict[str, Any]], error: Optional[str]) -> None:
        self.progress.finished(r, result, error)
        if self.progress.ended == self.progress.total:
            self.finish()

    def left(self, r: Run, error: str) -> None:
        """Run ``r`` is being trained by another sitting: leave it to that one."""
        self.progress.left(r, error)
        if self.progress.ended == self.progress.total:
            self.finish()

    def finish(self) -> None:
        """Every run of this sitting has ended: its last line and the report,
        unless another sitting is still training one of the runs (the last
        sitting to end writes it)."""
        sitting = self.progress.sitting
        sitting.update(self.progress.done, len(self.progress.failed))
        running = [r for r in self.progress.busy if RunDir(r.cfg.out).status() != FINISHED]
        trained = f"study {self.spec.name}: trained {self.progress.done} runs in "
        trained += f"{sitting.row['wall_seconds']:.0f} s"
        if running:
            say(
                f"{trained}; {len(running)} run(s) still training in another sitting, "
                "which writes the report when it ends"
            )
            return
        write_report(self.spec)
        say(f"{trained}; report {osp.join(self.spec.out, 'report.md')}")


def _prepare(spec: Spec, runs: Sequence[Run], overwrite: bool) -> Dict[str, str]:
    """Refuse directories holding other settings, copy reusable finished runs
    in, create the output folder; the status of every run."""
    _statuses(runs, overwrite)  # refuse before copying anything
    reused = adopt_reused(spec, runs)
    if reused:
        say(
            f"study {spec.name}: copied {reused} finished runs with the same settings from "
            f"{', '.join(spec.reuse)}"
        )
    status = _statuses(runs, overwrite)
    try:
        os.makedirs(spec.out, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output folder {spec.out}: {exc.strerror}") from None
    return status


class _Progress:
    """Counts finished and failed runs, says each one, keeps the sitting's log."""

    def __init__(self, total: int, sitting: "_Sitting") -> None:
        self.total, self.sitting = total, sitting
        self.done = 0
        self.failed: List[Tuple[Run, str]] = []
        self.busy: List[Run] = []  # held by another sitting: left to it

    @property
    def ended(self) -> int:
        return self.done + len(self.failed) + len(self.busy)

    def left(self, r: Run, error: str) -> None:
        self.busy.append(r)
        say(f"  left to another sitting: {_tag(r)}: {error}")

    def finished(self, r: Run, result: Optional[Dict[str, Any]], error: Optional[str]) -> None:
        tag = _tag(r)
        if error is not None or result is None:
            error = error or "no result"
            self.failed.append((r, error))
            say(f"  failed: {tag}: {error}")
        else:
            self.done += 1
            mae = result.get("test_mae_meV", result.get("test_mae", float("nan")))
            say(
                f"  [{self.ended}/{self.total}] {tag}: test MAE {mae:.4g} "
                f"{'meV' if 'test_mae_meV' in result else result.get('unit', '')}, "
                f"{result.get('epochs')} epochs ({result.get('stop_reason')}), "
                f"{result.get('wall_seconds', 0):.0f} s"
            )
        self.sitting.update(self.done, len(self.failed))


def _tag(r: Run) -> str:
    return f"{r.target} {r.variant} n={r.size} seed {r.seed}"


def _train_here(studies: Sequence[_Study]) -> None:
    """The runs one after another in this process."""
    for study in studies:
        for r in study.todo:
            study.progress.sitting.started(time.time())
            try:
                study.finished(r, execute_run(*study.job(r)), None)
            except RunInUse as exc:
                study.left(r, str(exc))
            except UserError as exc:
                study.finished(r, None, str(exc))


def _error_line(exc: BaseException) -> str:
    """An unexpected exception as one line: its type and its message's first line."""
    first_line = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first_line}"


def _execute_in_worker(
    cfg_dict: Dict[str, Any], status: str, keep_weights: bool
) -> Tuple[float, Optional[Dict[str, Any]], Optional[str], bool]:
    """``execute_run`` in a worker: its start time (time.time()) with its
    metrics or its one-line error (so a failed run counts in the sitting's
    wall time too), and whether another sitting holds the run."""
    started = time.time()
    try:
        return started, execute_run(cfg_dict, status, keep_weights), None, False
    except RunInUse as exc:
        return started, None, str(exc), True
    except UserError as exc:
        return started, None, str(exc), False
    except Exception as exc:  # a bug in one run: the others go on
        return started, None, _error_line(exc), False


def _train_in_workers(studies: Sequence[_Study], jobs: int) -> None:
    """Every study's runs in ``jobs`` spawned worker processes, one thread
    each, taken in queue order; a worker that dies fails its run, not the
    others."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        jobs, mp_context=ctx, initializer=_worker_init, initargs=(os.getpid(),)
    ) as pool:
        futures = {
            pool.submit(_execute_in_worker, *study.job(r, threads=1)): (study, r)
            for study in studies
            for r in study.todo
        }
        for fut in as_completed(futures):
            study, r = futures[fut]
            try:
                started, result, error, busy = fut.result()
            except Exception as exc:  # the worker died (killed, out of memory)
                study.finished(r, None, _error_line(exc))
            else:
                study.progress.sitting.started(started)
                if busy:
                    study.left(r, error or "")
                else:
                    study.finished(r, result, error)
