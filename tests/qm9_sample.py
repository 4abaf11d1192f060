"""A small QM9 sample for the unit tests, and the reference conversion of
qm9pack's CSV rows that the data tests check the package against.

The sample is about 980 QM9 molecules spread over the whole set (every 133rd
index), written as a raw folder in PyG's download format and built through the
``pyg`` source (PyG's own processing): unit tests train on it in a fraction of
the time the full 130,831-molecule cache takes to load, and only the data
tests open the full cache. It is built once per checkout (under
``data/qm9_sample``, ignored by git) by the first test session that needs it.
"""

import ast
import csv
import importlib.util
import os
import os.path as osp
import shutil
import tempfile

import numpy as np

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SAMPLE_ROOT = os.environ.get("PYG_SCHNET_TEST_SAMPLE", osp.join(REPO, "data", "qm9_sample"))
SAMPLE_SOURCE = "pyg"
SAMPLE_INDICES = set(range(1, 133_886, 133))  # 1-based QM9 indices; uncharacterized ones drop

HARTREE_EV = 27.211386246
REF = {
    "H": (-0.500273, -0.498857, -0.497912, -0.510927),
    "C": (-37.846772, -37.845355, -37.844411, -37.861317),
    "N": (-54.583861, -54.582445, -54.581501, -54.598897),
    "O": (-75.064579, -75.063163, -75.062219, -75.079532),
    "F": (-99.718730, -99.717314, -99.716370, -99.733544),
}
Z = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}


def csv_rows(wanted):
    """Rows of the qm9pack CSVs whose Index is in ``wanted`` (1-based)."""
    folder = osp.join(
        list(importlib.util.find_spec("qm9pack").submodule_search_locations)[0], "data"
    )
    csv.field_size_limit(1 << 30)
    rows = {}
    for part in (1, 2, 3):
        with open(osp.join(folder, f"qm9_part{part}.csv"), newline="") as f:
            for row in csv.DictReader(f):
                if int(row["Index"]) in wanted:
                    rows[int(row["Index"])] = row
    return rows


def expected(row):
    """Our own conversion of one CSV row to PyG's 19 targets."""
    elements = ast.literal_eval(row["Elements"])
    energies = [
        float(row[k])
        for k in (
            "InternalEnergy_0K_au",
            "InternalEnergy_298K_au",
            "Enthalphy_298K_au",
            "GibbsFreeEnergy_298K_au",
        )
    ]
    atomization = [
        (e - sum(REF[el][k] for el in elements)) * HARTREE_EV for k, e in enumerate(energies)
    ]
    y = (
        [
            float(row["Dipole_debye"]),
            float(row["Polarizability_bohr3"]),
            float(row["HOMO_au"]) * HARTREE_EV,
            float(row["LUMO_au"]) * HARTREE_EV,
            float(row["HOMO_LUMO_gap_au"]) * HARTREE_EV,
            float(row["R2_bohr2"]),
            float(row["ZPVE_au"]) * HARTREE_EV,
        ]
        + [e * HARTREE_EV for e in energies]
        + [float(row["Heatcapacity_Cv_cal_mol_K"])]
        + atomization
        + [float(row["RotA_GHz"]), float(row["RotB_GHz"]), float(row["RotC_GHz"])]
    )
    z = [Z[e] for e in elements]
    pos = ast.literal_eval(row["XYZ_Ang"])
    return np.array(y), np.array(z), np.array(pos)


KCAL_EV = 0.04336414  # PyG's kcal/mol -> eV factor


def write_pyg_raw(raw, rows, skip_index):
    os.makedirs(raw, exist_ok=True)
    with open(osp.join(raw, "gdb9.sdf"), "w") as f:
        for index, row in sorted(rows.items()):
            elements = ast.literal_eval(row["Elements"])
            pos = ast.literal_eval(row["XYZ_Ang"])
            f.write(f"gdb_{index}\n     test\n\n")
            f.write(f"{len(elements):3d}  0  0  0  0  0  0  0  0  0999 V2000\n")
            for el, (x, y, z) in zip(elements, pos, strict=False):
                f.write(f"{x:10.4f}{y:10.4f}{z:10.4f} {el:<3} 0  0  0  0  0  0  0  0  0  0  0  0\n")
            f.write("M  END\n$$$$\n")
    header = (
        "mol_id,A,B,C,mu,alpha,homo,lumo,gap,r2,zpve,u0,u298,h298,g298,cv,"
        "u0_atom,u298_atom,h298_atom,g298_atom"
    )
    with open(osp.join(raw, "gdb9.sdf.csv"), "w") as f:
        f.write(header + "\n")
        for index, row in sorted(rows.items()):
            y, _, _ = expected(row)
            # PyG stores U0_atom etc. in kcal/mol and converts with KCAL_EV
            vals = (
                [y[16], y[17], y[18], y[0], y[1]]
                + [float(row[k]) for k in ("HOMO_au", "LUMO_au", "HOMO_LUMO_gap_au")]
                + [y[5], float(row["ZPVE_au"])]
                + [
                    float(row[k])
                    for k in (
                        "InternalEnergy_0K_au",
                        "InternalEnergy_298K_au",
                        "Enthalphy_298K_au",
                        "GibbsFreeEnergy_298K_au",
                    )
                ]
                + [y[11]]
                + [v / KCAL_EV for v in y[12:16]]
            )
            f.write(f"gdb_{index}," + ",".join(repr(float(v)) for v in vals) + "\n")
    with open(osp.join(raw, "uncharacterized.txt"), "w") as f:
        f.write("header\n" * 9)  # PyG skips 9 header lines and 2 trailing ones
        f.write(f"  {skip_index}  0  0  0\n")
        f.write("trailer\n")


def ensure_sample(root: str = SAMPLE_ROOT) -> str:
    """Build the sample root once: raw files written to a temporary folder
    and renamed into place (so concurrent test workers never see half a
    folder), then processed by the ``pyg`` source under its build lock."""
    from pyg_schnet.data import QM9

    if not osp.isdir(osp.join(root, "raw")):
        parent = osp.dirname(root)
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".qm9_sample_", dir=parent)
        write_pyg_raw(osp.join(tmp, "raw"), csv_rows(SAMPLE_INDICES), skip_index=0)
        try:
            os.rename(tmp, root)
        except OSError:  # another worker was first
            shutil.rmtree(tmp, ignore_errors=True)
    QM9(root, source=SAMPLE_SOURCE)
    return root
