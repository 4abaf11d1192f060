"""Durable file writes: the one temporary-file-and-rename implementation.

Every file pyg_schnet writes (checkpoints, logs, configs, splits, caches,
plots, reports) goes through :func:`atomic_write`: the data go to a temporary
file beside the target, are flushed and fsynced, the temporary file is renamed
over the target, and the directory is fsynced so the rename itself survives a
power cut. A kill at any moment leaves the old file or the new one, never a
torn one; a failed write (disk full) removes its temporary file and leaves
the old file in place.
"""
from __future__ import annotations

import csv
import json
import os
import os.path as osp
from contextlib import contextmanager
from typing import IO, Any, Callable, Dict, Iterator, Optional, Sequence

#: Marker in the names of temporary files (``<name>.tmp<pid>``), so a run
#: directory can recognise and remove those a kill left behind.
TMP_MARK = ".tmp"


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder or ".", os.O_RDONLY)
    except OSError:  # a platform without directory descriptors
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_write(path: str, mode: str = "w", newline: Optional[str] = None,
                 before_commit: Optional[Callable[[], None]] = None) -> Iterator[IO[Any]]:
    """Open a temporary file for ``path``; on a clean exit of the block it
    replaces ``path`` durably, on an exception it is removed.

    Args:
        path (str): The file to write.
        mode (str): ``"w"`` (text) or ``"wb"`` (binary). (default: :obj:`"w"`)
        newline (str, optional): As for :func:`open` (``""`` for csv).
        before_commit (callable, optional): Called after the data are flushed,
            before the fsync and rename (a test hook: a kill there leaves a
            complete temporary file and the old target).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', got {mode!r}")
    tmp = f"{path}{TMP_MARK}{os.getpid()}"
    try:
        with open(tmp, mode, newline=newline, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            f.flush()
            if before_commit is not None:
                before_commit()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(osp.dirname(osp.abspath(path)))


def write_text(path: str, text: str) -> None:
    with atomic_write(path) as f:
        f.write(text)


def write_json(path: str, obj: Dict[str, Any]) -> None:
    with atomic_write(path) as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def write_csv(path: str, fields: Sequence[str], rows: Sequence[Dict[str, Any]]) -> None:
    """Rows as csv with a header; keys outside ``fields`` are left out."""
    with atomic_write(path, newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)


def save_figure(fig: Any, path: str) -> None:
    """A matplotlib figure as PNG."""
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png")
