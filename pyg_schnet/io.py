"""Durable file writes, the one temporary-file-and-rename implementation, and
the one lock helper (:func:`locked`), and the one way a directory (a run,
an exported model) is replaced whole (:func:`replace_dir`).

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
import errno
import fcntl
import json
import math
import os
import os.path as osp
import shutil
from contextlib import contextmanager
from typing import IO, Any, Callable, Dict, Iterator, Optional, Sequence

from pyg_schnet.errors import UserError

#: Marker in the names of temporary files (``<name>.tmp<pid>``), so a run
#: directory can recognise and remove those a kill left behind.
TMP_MARK = ".tmp"
#: Ending of the hidden sibling a replacement of a directory is built in
#: (:func:`staging_path`); never a run or a model of its own.
STAGING_MARK = ".replacing"


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
def atomic_write(
    path: str,
    mode: str = "w",
    newline: Optional[str] = None,
    before_commit: Optional[Callable[[], None]] = None,
) -> Iterator[IO[Any]]:
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
    except BaseException as exc:
        try:
            os.remove(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = path  # a failed write() names no file: name the target
        raise
    _fsync_dir(osp.dirname(osp.abspath(path)))


def save_torch(obj: Any, path: str, before_commit: Optional[Callable[[], None]] = None) -> None:
    """``torch.save`` through :func:`atomic_write`, serialised in memory
    first: a full disk or ``ulimit -f`` then surfaces as the :class:`OSError`
    it is (``torch.save`` into a file reports it as a bare RuntimeError)."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_write(path, "wb", before_commit=before_commit) as f:
        f.write(buffer.getbuffer())


def write_text(path: str, text: str) -> None:
    with atomic_write(path) as f:
        f.write(text)


def _finite(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float as None (JSON has no NaN)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json(path: str, obj: Dict[str, Any]) -> None:
    """``obj`` as strict JSON: a NaN or infinite value is written as null."""
    with atomic_write(path) as f:
        json.dump(_finite(obj), f, indent=2, allow_nan=False)
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


def copy_file(src: str, dst: str) -> None:
    """Copy ``src`` to ``dst`` through :func:`atomic_write` (a kill or a full
    disk leaves the old ``dst`` or the whole new one, never a stub)."""
    with open(src, "rb") as fin, atomic_write(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout)


@contextmanager
def locked(path: str, exclusive: bool = True, wait: bool = True) -> Iterator[int]:
    """Hold the operating system's lock (``flock``) on ``path``: a directory,
    or a lock file, created if absent. The lock is released when the block
    ends or the process dies (a killed holder frees it at once). Yields the
    open file descriptor (a lock file's holder may write into it).

    Args:
        path (str): The directory or lock file.
        exclusive (bool): An exclusive lock, else a shared one. (default: :obj:`True`)
        wait (bool): Wait for the lock; else raise :class:`BlockingIOError`
            at once when another process holds it. (default: :obj:`True`)

    Raises :class:`OSError` when ``path`` cannot be opened or created.
    """
    flags = os.O_RDONLY if osp.isdir(path) else os.O_RDWR | os.O_CREAT
    fd = os.open(path, flags, 0o644)
    try:
        fcntl.flock(
            fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB)
        )
    except OSError:
        os.close(fd)
        raise
    try:
        yield fd
    finally:
        os.close(fd)  # releases the lock


def check_output_file(path: str, overwrite: bool = True, what: str = "output") -> None:
    """Refuse, before any work, an output file that cannot be written: a
    folder, an existing file without ``overwrite``, a missing or read-only
    parent folder (:class:`~pyg_schnet.errors.UserError`, one line)."""
    folder = osp.dirname(osp.abspath(path))
    if osp.isdir(path):
        raise UserError(f"{what} {path} is a directory")
    if osp.exists(path) and not overwrite:
        raise UserError(f"{what} {path} exists; pass --overwrite to replace it")
    if not osp.isdir(folder):
        kind = "is a file" if osp.exists(folder) else "does not exist"
        raise UserError(f"{what} {path}: its folder {folder} {kind}")
    if not os.access(folder, os.W_OK):
        raise UserError(f"{what} {path}: its folder {folder} is not writable")


def staging_path(path: str) -> str:
    """The hidden sibling ``.NAME.replacing`` in which a replacement of the
    directory ``path`` is built before :func:`replace_dir` puts it in place.
    One name per directory, so a staging directory a kill left behind is found
    (and removed) by the next replacement."""
    parent, name = osp.split(osp.normpath(osp.abspath(path)))
    return osp.join(parent, f".{name}{STAGING_MARK}")


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2  # <fcntl.h>, <linux/fs.h>


def exchange(a: str, b: str) -> None:
    """Swap the paths ``a`` and ``b`` in one atomic step (Linux
    ``renameat2(RENAME_EXCHANGE)``). Raises :class:`OSError`; ``ENOSYS`` or
    ``EINVAL`` where the system or the file system cannot."""
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        raise OSError(errno.ENOSYS, "renameat2 is not available") from None
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), b)


def replace_dir(staged: str, path: str, step: Optional[Callable[[], None]] = None) -> None:
    """Put the complete directory ``staged`` (:func:`staging_path` of ``path``)
    in place of the directory ``path``, whole. An existing ``path`` is
    exchanged with ``staged`` in one atomic step (:func:`exchange`) and then
    removed from under ``staged``'s name; a new one is renamed in. A kill at
    any moment leaves ``path`` as it was or as ``staged`` was, never a mix,
    and at most a leftover under ``staged``'s name. Where the file system
    cannot exchange two directories (some network file systems), a
    :class:`~pyg_schnet.errors.UserError` says so and both stay as they are.

    Args:
        staged (str): The complete new directory.
        path (str): The directory to replace (or create).
        step (callable, optional): Called before the swap and after it,
            before the old directory is removed (a test's kill points).
    """
    if step is not None:
        step()
    existed = osp.lexists(path)
    try:
        if existed:
            exchange(staged, path)
        else:
            os.rename(staged, path)
    except OSError as exc:
        raise UserError(
            f"cannot replace {path} ({exc.strerror or exc}); it is unchanged, and its "
            f"replacement is complete in {staged}"
        ) from None
    _fsync_dir(osp.dirname(osp.abspath(path)))
    if step is not None:
        step()
    if existed:
        shutil.rmtree(staged)
