"""Train/validation/test splits: random or nested (a smaller training set is
a subset of a larger one, for paired comparisons), saved and read in
schnetpack's ``split.npz`` form."""

from __future__ import annotations

import os.path as osp
import re
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from pyg_schnet.errors import UserError
from pyg_schnet.io import atomic_write


@dataclass
class Split:
    """Train/validation/test indices into a data set of ``num_molecules``."""

    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray

    def save(self, path: str, num_molecules: int) -> None:
        with atomic_write(path, "wb") as f:
            np.savez(
                f,
                train_idx=self.train_idx,
                val_idx=self.val_idx,
                test_idx=self.test_idx,
                num_molecules=np.int64(num_molecules),
            )


def _count(size: Union[int, float], n: int, what: str) -> int:
    """A split size: a float below 1 is a fraction of ``n``, anything else a count."""
    if isinstance(size, float) and size < 1:
        if size < 0:
            raise UserError(f"{what} fraction must be in [0, 1), got {size}")
        return int(round(size * n))
    if float(size) != int(size):
        raise UserError(f"{what} size must be a whole number or a fraction below 1, got {size}")
    if size < 0:
        raise UserError(f"{what} size must be non-negative, got {size}")
    return int(size)


def random_split(
    n: int,
    train: Union[int, float],
    val: Union[int, float],
    test: Union[int, float, None] = None,
    seed: int = 0,
) -> Split:
    """Seeded random split by counts (ints) or fractions (floats below 1).
    ``test=None`` takes every molecule left over."""
    n_train, n_val = _count(train, n, "train"), _count(val, n, "val")
    n_test = n - n_train - n_val if test is None else _count(test, n, "test")
    if n_train < 1 or n_val < 1 or n_test < 0 or n_train + n_val + n_test > n:
        raise UserError(
            f"split sizes train={n_train}, val={n_val}, test={n_test} do not fit {n} molecules"
        )
    perm = np.random.default_rng(seed).permutation(n)
    return Split(
        np.sort(perm[:n_train]),
        np.sort(perm[n_train : n_train + n_val]),
        np.sort(perm[n_train + n_val : n_train + n_val + n_test]),
    )


def nested_split(n: int, train: int, val: int, test: int, seed: int = 0) -> Split:
    """Seeded split for learning curves: one permutation per seed, test set
    first, then validation, then training molecules. For a given ``(n, val,
    test, seed)`` the test and validation sets do not depend on ``train``, and
    a smaller training set is a subset of a larger one."""
    if min(train, val) < 1 or test < 0 or train + val + test > n:
        raise UserError(
            f"split sizes train={train}, val={val}, test={test} do not fit {n} molecules"
        )
    perm = np.random.default_rng(seed).permutation(n)
    return Split(
        np.sort(perm[test + val : test + val + train]),
        np.sort(perm[test : test + val]),
        np.sort(perm[:test]),
    )


def load_split(path: str, n: int) -> Split:
    """Load and check a split file (ours or schnetpack's ``split.npz``)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = set(f.files)
            missing = {"train_idx", "val_idx", "test_idx"} - keys
            if missing:
                raise UserError(f"split file {path} lacks {sorted(missing)} (has {sorted(keys)})")
            arrays = {k: np.asarray(f[k]).reshape(-1) for k in ("train_idx", "val_idx", "test_idx")}
            stored_n = int(f["num_molecules"]) if "num_molecules" in keys else None
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"cannot read split file {path}: {exc}") from None
    if stored_n is not None and stored_n != n:
        raise UserError(f"split file {path} was made for {stored_n} molecules, data set has {n}")
    for k, a in arrays.items():
        if a.size and not np.issubdtype(a.dtype, np.integer):
            raise UserError(f"split file {path}: {k} is not integer")
        if a.size and (a.min() < 0 or a.max() >= n):
            raise UserError(f"split file {path}: {k} has indices outside 0..{n - 1}")
        if len(np.unique(a)) != len(a):
            raise UserError(f"split file {path}: {k} has repeated indices")
    allidx = np.concatenate(list(arrays.values()))
    if len(np.unique(allidx)) != len(allidx):
        raise UserError(f"split file {path}: train, val and test overlap")
    if len(arrays["train_idx"]) == 0 or len(arrays["val_idx"]) == 0:
        raise UserError(f"split file {path}: empty train or val set")
    return Split(*(arrays[k].astype(np.int64) for k in ("train_idx", "val_idx", "test_idx")))


def get_split(
    path: str,
    n: int,
    train: Union[int, float],
    val: Union[int, float],
    test: Union[int, float, None],
    seed: int,
) -> Split:
    """Reuse ``path`` if it exists, else make a seeded split and save it there."""
    if osp.exists(path):
        return load_split(path, n)
    split = random_split(n, train, val, test, seed)
    split.save(path, n)
    return split


def nested_split_name(train: int, val: int, test: int, seed: int) -> str:
    """The file name a study gives the nested split ``(train, val, test, seed)``."""
    return f"seed{seed}_train{train}_val{val}_test{test}.npz"


_NESTED_NAME = re.compile(r"^seed(\d+)_train(\d+)_val(\d+)_test(\d+)\.npz$")


def split_from_name(path: str, n: int) -> Optional[Split]:
    """The split a file named by :func:`nested_split_name` holds, rebuilt from
    its name alone (its seed and sizes) for a data set of ``n`` molecules; None
    for any other name. A study's committed runs keep no split files: this is
    how they are evaluated on another machine."""
    m = _NESTED_NAME.match(osp.basename(path))
    if m is None:
        return None
    seed, train, val, test = (int(g) for g in m.groups())
    return nested_split(n, train, val, test, seed)
