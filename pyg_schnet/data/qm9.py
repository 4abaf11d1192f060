"""QM9 as a PyG :class:`~torch_geometric.data.InMemoryDataset`.

Two sources give the same 130,831 molecules in QM9 index order, with PyG's
19 targets in PyG's order and units:

* ``"qm9pack"`` (default, offline): the CSV files shipped by the ``qm9pack``
  package (geometries in Å, energies in Hartree), parsed column-wise.
* ``"pyg"``: :class:`torch_geometric.datasets.QM9`'s own raw files, download
  and processing (works offline when ``root/raw`` already holds them).
"""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import os
import os.path as osp
import re
import time
import warnings
from contextlib import ExitStack, contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, cast

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data, InMemoryDataset

from pyg_schnet.data.targets import (
    ATOM_REF_HARTREE,
    ELEMENTS,
    HAR2EV,
    NUM_MOLECULES,
    SOURCES,
    TARGETS,
    default_root,
)
from pyg_schnet.errors import UserError
from pyg_schnet.io import locked, save_torch

FORMAT_VERSION = 1


def qm9pack_data_dir() -> str:
    """Folder of the ``qm9pack`` CSV files, found without importing the package
    (its ``__init__`` needs ``pkg_resources``)."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the 'qm9pack' package is not installed (pip install qm9pack)")
    folder = osp.join(list(spec.submodule_search_locations)[0], "data")
    if not osp.isfile(osp.join(folder, "qm9_part1.csv")):
        raise UserError(f"qm9pack data files not found in {folder}")
    return folder


_QM9PACK_COLUMNS = [
    "Index",
    "SMILES",
    "N_atoms",
    "Elements",
    "XYZ_Ang",
    "RotA_GHz",
    "RotB_GHz",
    "RotC_GHz",
    "Dipole_debye",
    "Polarizability_bohr3",
    "HOMO_au",
    "LUMO_au",
    "HOMO_LUMO_gap_au",
    "R2_bohr2",
    "ZPVE_au",
    "InternalEnergy_0K_au",
    "InternalEnergy_298K_au",
    "Enthalphy_298K_au",
    "GibbsFreeEnergy_298K_au",
    "Heatcapacity_Cv_cal_mol_K",
]


def read_qm9pack(folder: Optional[str] = None) -> Dict[str, object]:
    """Parse the qm9pack CSV files column-wise into flat arrays.

    Returns a dict with ``z`` [num_atoms] int64, ``pos`` [num_atoms, 3] float64,
    ``counts`` [N], ``y`` [N, 19] float64 in PyG units, ``idx`` [N] (0-based
    QM9 index), ``smiles`` (list of str).
    """
    import pandas as pd

    folder = folder or qm9pack_data_dir()
    parts = [
        pd.read_csv(osp.join(folder, f"qm9_part{k}.csv"), usecols=_QM9PACK_COLUMNS, engine="c")
        for k in (1, 2, 3)
    ]
    df = pd.concat(parts, ignore_index=True)
    df = df.sort_values("Index", kind="stable").reset_index(drop=True)
    counts = df["N_atoms"].to_numpy(np.int64)

    # Geometries: "[[x,y,z],[x,y,z]]" per molecule -> one float parse.
    text = ",".join(df["XYZ_Ang"].tolist()).translate(str.maketrans("[]", "  "))
    pos = np.array(text.split(","), dtype=np.float64).reshape(-1, 3)
    # Elements: "['C','H']" per molecule.
    text = ",".join(df["Elements"].tolist()).translate(str.maketrans("", "", "[]' "))
    symbols, inverse = np.unique(np.array(text.split(",")), return_inverse=True)
    unknown = [s for s in symbols if s not in ELEMENTS]
    if unknown:
        raise UserError(f"qm9pack data holds unexpected elements {unknown}")
    z = np.array([ELEMENTS[s] for s in symbols], dtype=np.int64)[inverse]
    if len(z) != counts.sum() or len(pos) != counts.sum():
        raise UserError("qm9pack data is inconsistent: atom counts do not match geometries")

    # Targets, converted to PyG's units.
    h = HAR2EV
    energies = df[
        [
            "InternalEnergy_0K_au",
            "InternalEnergy_298K_au",
            "Enthalphy_298K_au",
            "GibbsFreeEnergy_298K_au",
        ]
    ].to_numpy(np.float64)
    refs = np.zeros((10, 4))
    for el, r in ATOM_REF_HARTREE.items():
        refs[el] = r
    mol_of_atom = np.repeat(np.arange(len(counts)), counts)
    ref_sum = np.zeros((len(counts), 4))
    np.add.at(ref_sum, mol_of_atom, refs[z])
    y = np.stack(
        [
            df["Dipole_debye"],
            df["Polarizability_bohr3"],
            df["HOMO_au"] * h,
            df["LUMO_au"] * h,
            df["HOMO_LUMO_gap_au"] * h,
            df["R2_bohr2"],
            df["ZPVE_au"] * h,
            *(energies[:, k] * h for k in range(4)),
            df["Heatcapacity_Cv_cal_mol_K"],
            *((energies[:, k] - ref_sum[:, k]) * h for k in range(4)),
            df["RotA_GHz"],
            df["RotB_GHz"],
            df["RotC_GHz"],
        ],
        axis=1,
    ).astype(np.float64)
    return {
        "z": z,
        "pos": pos,
        "counts": counts,
        "y": y,
        "idx": df["Index"].to_numpy(np.int64) - 1,
        "smiles": df["SMILES"].tolist(),
    }


def _storage_from_arrays(
    z: Tensor,
    pos: Tensor,
    counts: Tensor,
    y: Tensor,
    idx: Tensor,
    name: List[str],
    smiles: List[str],
) -> Tuple[Data, Dict[str, Tensor]]:
    """Build InMemoryDataset storage (one big Data plus slices) directly,
    without creating 130k Data objects and collating them."""
    n = len(counts)
    atom_slices = torch.zeros(n + 1, dtype=torch.long)
    atom_slices[1:] = torch.cumsum(counts, 0)
    mol_slices = torch.arange(n + 1, dtype=torch.long)
    data = Data(z=z, pos=pos, y=y, idx=idx, name=name, smiles=smiles)
    slices = {
        "z": atom_slices,
        "pos": atom_slices.clone(),
        "y": mol_slices,
        "idx": mol_slices.clone(),
        "name": mol_slices.clone(),
        "smiles": mol_slices.clone(),
    }
    return data, slices


class QM9(InMemoryDataset):
    r"""The QM9 data set (`Ramakrishnan et al. 2014
    <https://doi.org/10.1038/sdata.2014.22>`_) of 130,831 molecules with PyG's
    19 regression targets (see :data:`TARGETS` and :data:`UNITS`).

    Every molecule has ``z`` (long), ``pos`` (float32, Å), ``y`` ``[1, 19]``,
    ``idx`` (0-based QM9 index), ``name`` (``gdb_<index>``) and ``smiles``.

    Args:
        root (str, optional): Root directory; ``root/raw`` holds PyG's raw
            files for ``source="pyg"``, ``root/processed`` the cache.
            (default: :func:`default_root`, the same from every directory)
        source (str, optional): ``"qm9pack"`` (offline CSVs) or ``"pyg"``
            (PyG's download and processing). (default: :obj:`"qm9pack"`)
        max_molecules (int, optional): Keep a deterministic random subset of
            this many molecules (seed 0, kept in index order). (default: :obj:`None`)
        transform (callable, optional): PyG transform applied on access.
            (default: :obj:`None`)
        pre_transform (callable, optional): PyG transform applied to every
            molecule once, before it is cached. (default: :obj:`None`)
        pre_filter (callable, optional): Keeps the molecules for which it
            returns :obj:`True`, before they are cached. (default: :obj:`None`)
        force_reload (bool, optional): Rebuild the cache (with a
            ``pre_transform`` or ``pre_filter``: their cache only).
            (default: :obj:`False`)

    With a ``pre_transform`` or ``pre_filter``, the molecules of the plain
    cache (built first if need be) go through them into a cache of their
    own, ``processed/pre_<key>/``, keyed by their names (a function's module
    and qualified name, a transform's ``repr``): another pre-processing
    never reuses it, and the plain cache every run trains on is never
    replaced. After editing a function's code under the same name (or
    swapping one lambda for another), pass ``force_reload=True``, as in PyG.
    ``max_molecules`` then draws its subset from the molecules kept.
    """

    def __init__(
        self,
        root: Optional[str] = None,
        source: str = "qm9pack",
        max_molecules: Optional[int] = None,
        transform: Optional[Callable] = None,
        pre_transform: Optional[Callable] = None,
        pre_filter: Optional[Callable] = None,
        force_reload: bool = False,
        log: bool = False,
    ) -> None:
        root = default_root() if root is None else root
        if source not in SOURCES:
            raise UserError(f"unknown QM9 source {source!r}; choose one of: {', '.join(SOURCES)}")
        _check_root(root)
        self.source = source
        #: What names the pre-processing ("" for none): :func:`describe_callable`
        #: of ``pre_transform`` and ``pre_filter``.
        self.pre_key = (
            ""
            if pre_transform is None and pre_filter is None
            else f"pre_transform={describe_callable(pre_transform)}; "
            f"pre_filter={describe_callable(pre_filter)}"
        )
        self.build_seconds: Optional[float] = None
        self.load_seconds: Optional[float] = None
        folder = _processed_dir(root, self.pre_key)
        with _build_lock(folder):  # one builder at a time
            self._drop_unreadable(folder)
            super().__init__(
                root, transform, pre_transform, pre_filter, log=log, force_reload=force_reload
            )
            t0 = time.perf_counter()
            try:
                self._load_cache(self.processed_paths[0])
            except Exception as exc:  # truncated or corrupt cache: warn and rebuild
                warnings.warn(
                    f"QM9 cache {self.processed_paths[0]} is unreadable "
                    f"({type(exc).__name__}); rebuilding it",
                    stacklevel=2,
                )
                os.remove(self.processed_paths[0])
                self._process()
                self._load_cache(self.processed_paths[0])
        self.load_seconds = time.perf_counter() - t0
        if max_molecules is not None:
            if max_molecules <= 0:
                raise UserError(f"max_molecules must be positive, got {max_molecules}")
            if max_molecules < len(self):
                gen = torch.Generator().manual_seed(0)
                keep = torch.randperm(len(self), generator=gen)[:max_molecules].sort().values
                self._indices = keep.tolist()

    def _drop_unreadable(self, folder: str) -> None:
        """Any other ``.pt`` file of the cache folder (PyG's ``pre_filter.pt``,
        ``pre_transform.pt``, its own processed QM9) that is not an intact
        torch zip archive: warn once, remove it and this source's cache, so
        both are rebuilt (the cache itself is checked when it is loaded)."""
        import zipfile

        main = osp.join(folder, cast(str, self.processed_file_names))
        bad = []
        for path in sorted(glob.glob(osp.join(folder, "*.pt"))):  # pre_*/: their own caches
            if path == main:
                continue
            try:
                with zipfile.ZipFile(path) as z:
                    intact = z.testzip() is None
            except (OSError, zipfile.BadZipFile):
                intact = False
            if not intact:
                bad.append(path)
        if bad:
            warnings.warn(
                f"QM9 cache files {', '.join(osp.relpath(p, folder) for p in bad)} "
                f"are unreadable; rebuilding the cache",
                stacklevel=3,
            )
            for path in bad + ([main] if osp.exists(main) else []):
                os.remove(path)

    # -- PyG hooks ---------------------------------------------------------
    @property
    def processed_dir(self) -> str:
        return _processed_dir(self.root, self.pre_key)

    @property
    def raw_file_names(self) -> List[str]:
        if self.source == "pyg":
            return ["gdb9.sdf", "gdb9.sdf.csv", "uncharacterized.txt"]
        return []

    @property
    def processed_file_names(self) -> str:
        return f"qm9_{self.source}_v{FORMAT_VERSION}.pt"

    def download(self) -> None:
        if self.source == "pyg":
            from torch_geometric.datasets import QM9 as PyGQM9

            PyGQM9.download(self)  # same raw_dir layout and URLs as PyG

    def process(self) -> None:
        t0 = time.perf_counter()
        if self.pre_key:
            self._process_pre()
        elif self.source == "qm9pack":
            arrays = read_qm9pack()
            z = torch.tensor(arrays["z"])
            pos = torch.tensor(arrays["pos"]).float()
            counts = torch.tensor(arrays["counts"])
            y = torch.tensor(arrays["y"]).float()
            idx = torch.tensor(arrays["idx"])
            smiles = list(cast(Sequence[str], arrays["smiles"]))
        else:
            z, pos, counts, y, idx, smiles = self._process_pyg()
        if not self.pre_key:
            name = [f"gdb_{int(i) + 1}" for i in idx]
            data, slices = _storage_from_arrays(z, pos, counts, y, idx, name, smiles)
            self._save(data, slices)
        self.build_seconds = time.perf_counter() - t0

    def _process_pre(self) -> None:
        """The plain cache's molecules through ``pre_filter`` and
        ``pre_transform``, collated into this cache."""
        plain = QM9(self.root, source=self.source)  # built under its own lock if need be
        data_list = [plain[i] for i in range(len(plain))]
        if self.pre_filter is not None:
            data_list = [d for d in data_list if self.pre_filter(d)]
        if not data_list:
            raise UserError("pre_filter kept no QM9 molecule")
        if self.pre_transform is not None:
            data_list = [self.pre_transform(d) for d in data_list]
        self._save(*self.collate(data_list))

    def _save(self, data: Data, slices: Dict[str, Tensor]) -> None:
        num_molecules = len(slices["z"]) - 1
        save_torch(
            {
                "format": FORMAT_VERSION,
                "source": self.source,
                "pre": self.pre_key,
                "num_molecules": num_molecules,
                "num_atoms": int(slices["z"][-1]),
                "data": data.to_dict(),
                "slices": slices,
            },
            self.processed_paths[0],
        )

    def _process_pyg(self):
        """Run PyG's own QM9 processing on ``root/raw`` and keep our fields."""
        from torch_geometric.datasets import QM9 as PyGQM9

        class _Raw(PyGQM9):  # PyG's processing, our root, its own cache file
            @property
            def processed_file_names(self) -> str:
                return "pyg_qm9_data_v3.pt"

            @classmethod
            def save(cls, data_list: Sequence[Any], path: str) -> None:
                """PyG's save, written atomically: a full disk or a kill leaves
                no truncated cache behind."""
                data, slices = cls.collate(data_list)
                save_torch((data.to_dict(), slices, data.__class__), path)

        ds = _Raw(self.root)
        store = ds._data
        counts = ds.slices["z"].diff()
        return (
            store.z,
            store.pos.float(),
            counts,
            store.y.float(),
            torch.as_tensor(store.idx, dtype=torch.long).view(-1),
            list(store.smiles),
        )

    # -- cache ---------------------------------------------------------------
    def _load_cache(self, path: str) -> None:
        out = torch.load(path, weights_only=True)
        if (
            not isinstance(out, dict)
            or out.get("format") != FORMAT_VERSION
            or out.get("source") != self.source
            or out.get("pre", "") != self.pre_key
        ):
            raise ValueError("wrong format version, source or pre-processing")
        data = Data.from_dict(out["data"])
        slices = out["slices"]
        n = out["num_molecules"]
        if (
            data.y.shape[0] != n
            or (not self.pre_key and data.y.shape[1] != len(TARGETS))
            or data.z.numel() != out["num_atoms"]
            or data.pos.shape != (out["num_atoms"], 3)
            or len(data.name) != n
            or int(slices["z"][-1]) != out["num_atoms"]
            or len(slices["y"]) != n + 1
        ):
            raise ValueError("inconsistent array sizes")
        if self.source == "qm9pack" and not self.pre_key and n != NUM_MOLECULES:
            raise ValueError(f"{n} molecules, expected {NUM_MOLECULES}")
        self.data, self.slices = data, slices
        self._indices = None  # type: ignore[assignment]  # PyG types it as a list

    def num_atoms(self) -> Tensor:
        """Atoms per molecule of this (possibly subset) data set ``[len(self)]``."""
        counts = self.slices["z"].diff()
        return counts if self._indices is None else counts[torch.as_tensor(self._indices)]

    def num_heavy_atoms(self) -> Tensor:
        """Heavy atoms (C, N, O, F) per molecule of this (possibly subset) data set
        ``[len(self)]``."""
        counts = self.slices["z"].diff()
        owner = torch.repeat_interleave(torch.arange(counts.numel()), counts)
        heavy = torch.zeros(counts.numel(), dtype=torch.long)
        heavy.index_add_(0, owner, (self._data.z > 1).long())
        return heavy if self._indices is None else heavy[torch.as_tensor(self._indices)]

    def targets(self) -> Tensor:
        """All targets of this (possibly subset) data set ``[len(self), 19]``."""
        y = self._data.y
        return y if self._indices is None else y[torch.as_tensor(self._indices)]

    def __repr__(self) -> str:
        return f"QM9({len(self)}, source={self.source!r})"


def describe_callable(fn: Optional[Callable]) -> str:
    """A pre-processing step's name, the same in every process: a
    function's (or method's) module and qualified name, else the object's
    ``repr`` (a PyG transform's holds its arguments) without memory addresses."""
    if fn is None:
        return "None"
    name = getattr(fn, "__qualname__", None)
    if isinstance(name, str):
        return f"{getattr(fn, '__module__', None)}.{name}"
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(fn))


def _processed_dir(root: str, pre_key: str) -> str:
    """``root/processed``, or for a pre-processing its own folder in it."""
    folder = osp.join(root, "processed")
    if not pre_key:
        return folder
    return osp.join(folder, "pre_" + hashlib.sha1(pre_key.encode()).hexdigest()[:12])


@contextmanager
def _build_lock(folder: str) -> Iterator[None]:
    """An exclusive lock on ``folder/.lock`` while the cache is checked or
    built, so parallel processes (DDP ranks, test workers) build it once; in
    a read-only cache folder (nothing will be built there) no lock."""
    with ExitStack() as stack:
        try:
            os.makedirs(folder, exist_ok=True)
            stack.enter_context(locked(osp.join(folder, ".lock")))
        except OSError:
            pass
        yield


def _check_root(root: str) -> None:
    if osp.exists(root) and not osp.isdir(root):
        raise UserError(f"data root {root} is a file, not a directory")
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create data root {root}: {exc.strerror}") from None
    if not os.access(root, os.W_OK | os.X_OK):
        processed = osp.join(root, "processed")
        if not osp.isdir(processed):
            raise UserError(f"data root {root} is not writable")
