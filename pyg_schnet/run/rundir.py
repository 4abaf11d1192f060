"""A run directory: what one training run leaves behind, and what state it is in.

One abstraction for ``train`` (prepare, resume), ``evaluate`` (load) and the
study runner (status, settings check, results)::

    config.yaml   the resolved Config (reproduces the run with split.npz)
    split.npz     the split (schnetpack's key names)
    log.csv       one row per epoch
    best.pt       the best-validation model and its state (no optimizer state)
    last.pt       newest checkpoint, for --resume
    metrics.json  written last: the run is finished

``train --overwrite`` replaces a directory holding a run whole and only when
the new run is complete: the new run is built in a hidden sibling
(:meth:`RunDir.staging`) and swapped in by :func:`pyg_schnet.io.replace_dir`.
"""

from __future__ import annotations

import csv
import json
import os
import os.path as osp
import shutil
import socket
import time
from contextlib import ExitStack, contextmanager
from typing import Any, Dict, Iterator, List, Optional

from pyg_schnet.errors import RunInUse, UserError
from pyg_schnet.io import TMP_MARK, locked, staging_path
from pyg_schnet.run.config import load_run_config

CONFIG_FILE = "config.yaml"
SPLIT_FILE = "split.npz"
LOG_FILE = "log.csv"
BEST_FILE = "best.pt"
LAST_FILE = "last.pt"
METRICS_FILE = "metrics.json"
#: Model-only weights of a run's best model (no optimizer state;
#: :func:`pyg_schnet.run.checkpoint.export_weights`).
WEIGHTS_FILE = "model.pt"
#: A run's cached rotation measurements (:func:`~pyg_schnet.study.runner.symmetry_metrics`).
SYMMETRY_FILE = "symmetry.json"
#: Files of a run directory (the trainer writes them; other files are left alone).
RUN_FILES = (CONFIG_FILE, SPLIT_FILE, LOG_FILE, BEST_FILE, LAST_FILE, METRICS_FILE)
#: Config keys that may differ between a saved run and a request for the same
#: run (where files live, how many threads, how W&B files it): not a different
#: experiment.
IGNORED_KEYS = frozenset(
    {"out", "root", "num_threads", "device"}
    | {"wandb", "wandb_project", "wandb_entity", "wandb_name", "wandb_group"}
    | {"wandb_tags", "wandb_job_type"}
)

NEW, FINISHED, INTERRUPTED, STALE = "new", "finished", "interrupted", "stale"
#: The lock file; the lock itself is the OS's (flock), so a killed holder frees it.
LOCK_FILE = ".lock"
_HELD: Dict[str, int] = {}  # run directories this process holds: path -> file descriptor


class RunDir:
    """The run directory at ``path``."""

    def __init__(self, path: str) -> None:
        self.path = str(path)

    def file(self, name: str) -> str:
        return osp.join(self.path, name)

    def has(self, name: str) -> bool:
        return osp.isfile(self.file(name))

    # -- its files -------------------------------------------------------------------
    @property
    def config_path(self) -> str:
        return self.file(CONFIG_FILE)

    @property
    def split_path(self) -> str:
        return self.file(SPLIT_FILE)

    @property
    def log_path(self) -> str:
        return self.file(LOG_FILE)

    @property
    def best_path(self) -> str:
        return self.file(BEST_FILE)

    @property
    def last_path(self) -> str:
        return self.file(LAST_FILE)

    @property
    def metrics_path(self) -> str:
        return self.file(METRICS_FILE)

    @property
    def weights_path(self) -> str:
        return self.file(WEIGHTS_FILE)

    @property
    def symmetry_path(self) -> str:
        return self.file(SYMMETRY_FILE)

    # -- state --------------------------------------------------------------------
    def status(self) -> str:
        """``new`` (no run files), ``finished`` (metrics.json), ``interrupted``
        (config, split and last.pt: resumable) or ``stale`` (some files,
        nothing to resume)."""
        if not osp.isdir(self.path) or not any(self.has(f) for f in RUN_FILES):
            return NEW
        if self.has(METRICS_FILE):
            return FINISHED
        if all(self.has(f) for f in (CONFIG_FILE, SPLIT_FILE, LAST_FILE)):
            return INTERRUPTED
        return STALE

    def config(self):
        """The saved :class:`~pyg_schnet.run.config.Config` (``out`` set to this directory)."""
        if not osp.isdir(self.path):
            raise UserError(f"run directory {self.path} does not exist")
        if not self.has(CONFIG_FILE):
            raise UserError(f"{self.path} is not a run directory (no config.yaml)")
        cfg = load_run_config(self.config_path)
        cfg.out = self.path
        return cfg

    def metrics(self) -> Optional[Dict[str, Any]]:
        if not self.has(METRICS_FILE):
            return None
        try:
            with open(self.metrics_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            raise UserError(f"{self.metrics_path} is unreadable") from None

    def log(self) -> List[Dict[str, float]]:
        """The epochs of ``log.csv`` (empty if there is none); a file that is
        not such a table (every value a number, an ``epoch`` column) is a
        UserError naming it."""
        if not self.has(LOG_FILE):
            return []
        try:
            with open(self.log_path, newline="") as f:
                reader = csv.DictReader(f)
                rows = [{k: float(v) for k, v in row.items()} for row in reader]
                if "epoch" not in (reader.fieldnames or []):
                    raise ValueError("no epoch column")
        except (OSError, ValueError, TypeError, csv.Error):  # a torn or foreign file
            raise UserError(
                f"{self.log_path} is unreadable (not a log of epochs); restore it, or "
                "remove its run directory to train the run again"
            ) from None
        return rows

    def differences(self, cfg) -> List[str]:
        """Config keys in which the saved run differs from ``cfg``
        (:func:`config_differences`). An unreadable config.yaml differs in
        everything."""
        try:
            saved = load_run_config(self.config_path)
        except UserError:
            return ["config.yaml (unreadable)"]
        return config_differences(saved, cfg)

    def resume_config(self):
        """The saved configuration of an interrupted run."""
        if not osp.isdir(self.path):
            raise UserError(f"run directory {self.path} does not exist")
        if not self.has(LAST_FILE):
            raise UserError(f"{self.path} holds no checkpoint (last.pt) to resume from")
        return self.config()

    # -- the lock ------------------------------------------------------------------
    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run directory exclusively (train, resume, overwrite,
        evaluate, study runs). A second process gets one UserError naming the
        holder and changes nothing; a killed holder's lock is free at once
        (``flock`` dies with its process). Re-entrant within a process. The
        directory is created if it does not exist."""
        key = osp.realpath(self.path)
        if key in _HELD:
            yield
            return
        if osp.exists(self.path) and not osp.isdir(self.path):
            raise UserError(f"run directory {self.path} is a file")
        with ExitStack() as stack:
            try:
                os.makedirs(self.path, exist_ok=True)
                fd = stack.enter_context(locked(self.file(LOCK_FILE), wait=False))
            except BlockingIOError:
                raise self._in_use(self._holder()) from None
            except OSError as exc:
                raise UserError(
                    f"cannot create run directory {self.path}: {exc.strerror or exc}"
                ) from None
            os.ftruncate(fd, 0)
            os.write(
                fd,
                f"pid {os.getpid()} on {socket.gethostname()} since "
                f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(),
            )
            _HELD[key] = fd
            try:
                yield
            finally:
                del _HELD[key]
                os.ftruncate(fd, 0)  # the file stays, empty and unlocked

    def _holder(self) -> str:
        """Who holds the lock, as its holder wrote it."""
        try:
            with open(self.file(LOCK_FILE), errors="replace") as f:
                return f.read(400).strip() or "another process"
        except OSError:
            return "another process"

    def _in_use(self, holder: str) -> RunInUse:
        return RunInUse(
            f"run directory {self.path} is in use by {holder}; "
            f"wait for it to finish or use another directory"
        )

    def check_free(self) -> None:
        """Raise :meth:`lock`'s error if another process holds the directory
        now; changes and creates nothing. For a launcher, before it starts
        processes that would each load torch only to be refused."""
        if osp.realpath(self.path) in _HELD or not self.has(LOCK_FILE):
            return  # this process holds it, or there is no lock file: nobody does
        try:
            with locked(self.file(LOCK_FILE), exclusive=False, wait=False):
                pass
        except BlockingIOError:
            raise self._in_use(self._holder()) from None
        except OSError:
            return  # unreadable lock file: the lock itself will tell

    # -- changes -------------------------------------------------------------------
    def staging(self) -> "RunDir":
        """The hidden sibling ``.NAME.replacing`` a replacement of this run
        is built in (:func:`pyg_schnet.io.staging_path`); never a run of its
        own: one a kill left behind is removed by :meth:`remove_temporary`."""
        return RunDir(staging_path(self.path))

    def remove_temporary(self) -> None:
        """Temporary files of writes cut short by a kill, and the
        :meth:`staging` directory of a replacement cut short. Call it holding
        the lock: nothing else writes there then."""
        for f in os.listdir(self.path):
            if TMP_MARK in f and f.split(TMP_MARK)[0] in RUN_FILES:
                os.remove(self.file(f))
        shutil.rmtree(self.staging().path, ignore_errors=True)

    def prepare(self, overwrite: bool) -> "RunDir":
        """Where a new run in this directory is written; refuses before
        anything is changed. A directory holding no run (absent, empty, other
        files only) is itself the answer: created, checked writable. One
        holding a run is refused unless ``overwrite``; with it, the answer is
        an empty :meth:`staging` directory: the new run is built there and
        swapped in whole when complete (:func:`pyg_schnet.io.replace_dir`,
        which replaces the whole directory, files not of the run included),
        so until then the old run stays as it was, and a refused, failed or
        killed run leaves it so."""
        out, where = self.path, self
        if osp.exists(out) and not osp.isdir(out):
            raise UserError(f"run directory {out} is a file")
        if osp.isdir(out):
            present = [f for f in RUN_FILES if self.has(f)]
            if present and not overwrite:
                status = self.status()
                missing = [f for f in (CONFIG_FILE, SPLIT_FILE, LAST_FILE) if not self.has(f)]
                state = {
                    FINISHED: "a finished run",
                    INTERRUPTED: "an unfinished run",
                }.get(status, f"an unfinished run without {', '.join(missing)} to resume from")
                raise UserError(
                    f"{out} already holds {state}; pass --overwrite to replace it"
                    + (" or --resume to continue it" if status == INTERRUPTED else "")
                )
            self.remove_temporary()
            if present:
                where = self.staging()
            elif overwrite and osp.isdir(self.file("wandb")):
                shutil.rmtree(self.file("wandb"), ignore_errors=True)
        try:
            os.makedirs(where.path, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create run directory {where.path}: {exc.strerror}") from None
        if not os.access(where.path, os.W_OK):
            raise UserError(f"run directory {where.path} is not writable")
        return where

    def __repr__(self) -> str:
        return f"RunDir({self.path!r})"


def config_differences(saved, wanted) -> List[str]:
    """Config keys in which two configurations differ, keys of
    :data:`IGNORED_KEYS` aside, ``split_file`` by file name."""
    a, b = saved.to_dict(), wanted.to_dict()
    for d in (a, b):
        if d.get("split_file"):
            d["split_file"] = osp.basename(d["split_file"])
    keys = sorted((set(a) | set(b)) - IGNORED_KEYS)
    return [k for k in keys if a.get(k) != b.get(k)]
