"""pyg_schnet.analysis.probes: the filter-shape measures on filters of known
shape, the probes on a committed study run from outside the repository, and
the command's bad inputs."""

import csv
import glob
import math
import os.path as osp
import shutil

import pytest
import torch

from helpers import assert_one_line_error, cli, run_here
from pyg_schnet.analysis.probes import BANDWIDTH_POWER, filter_shape
from pyg_schnet.nn.filters import RadialFilter


class _Known(RadialFilter):
    """A radial filter whose channels are given functions (no envelope)."""

    name = "known"

    def __init__(self, fns, cutoff=5.0):
        super().__init__(len(fns), cutoff)
        self.fns = fns

    @property
    def feature_width(self):
        return 0.1

    def forward(self, edge_vec, dist):
        return torch.stack([fn(dist) for fn in self.fns], dim=-1)


def test_bandwidth_and_total_variation_of_known_channels():
    slow = _Known([lambda d: d])  # monotone: total variation 1, power at low frequency
    band_slow, tv_slow = filter_shape(slow)
    assert tv_slow == pytest.approx(1.0, rel=1e-6) and band_slow < 0.5
    wave = _Known([lambda d: torch.sin(2 * math.pi * 3.0 * d)])  # 3 cycles per Å
    band, tv = filter_shape(wave)
    assert 2.7 <= band <= 3.3, band  # the 95% point sits at the one frequency
    # 3 cycles/Å over 4.04 Å: 12.1 cycles of two full-range swings each
    assert tv == pytest.approx(2 * 3.0 * (5.0 - 0.958), rel=0.02)
    assert 0 < BANDWIDTH_POWER < 1


@pytest.mark.slow
def test_probes_of_committed_runs_from_outside_the_repository(qm9, tmp_path):
    """A committed mechanism run of each kind (radial and not) probed from
    another directory: every probe that applies, written as CSV."""
    from conftest import DATA_ROOT, REPO

    runs = osp.join(REPO, "experiments", "studies", "mechanism_time", "runs", "U0")
    copies = []
    for variant in ("gaussian", "coords_rot"):
        dst = tmp_path / variant
        shutil.copytree(osp.join(runs, variant, "n20000_seed0"), dst)
        copies.append(dst)
    out = tmp_path / "probes.csv"
    proc = cli("probes", *copies, "--root", DATA_ROOT, "--limit", 40, "--out", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(open(out)))
    got = {(osp.basename(r["subject"]), r["probe"], r["setting"]): float(r["value"]) for r in rows}
    probes = {(s, p) for s, p, _ in got}
    assert probes == {
        ("gaussian", p)
        for p in (
            "mae",
            "rounding",
            "noise",
            "rot_change",
            "forces",
            "bandwidth",
            "total_variation",
        )
    } | {("coords_rot", p) for p in ("mae", "noise", "rot_change", "rotation_average", "forces")}
    g = lambda *k: got[("gaussian",) + k]  # noqa: E731
    c = lambda *k: got[("coords_rot",) + k]  # noqa: E731
    assert g("rot_change", "1 rotation") < 0.1  # invariant: float noise only
    assert c("rot_change", "1 rotation") > 10.0  # not invariant: tens of meV
    # rounding at test time only costs, more for wider bins; noise moves more, the larger
    assert g("mae", "") < g("rounding", "0.1 Å") and g("rounding", "0.01 Å") < g(
        "rounding", "0.1 Å"
    )
    assert g("noise", "0.002 Å") < g("noise", "0.01 Å") < g("noise", "0.03 Å")
    averaged = [c("rotation_average", f"{k} rotation{'s' * (k > 1)}") for k in (1, 4, 16, 64)]
    assert all(math.isfinite(v) for v in averaged) and averaged[0] != c("mae", "")
    assert g("total_variation", "block 1") >= 1.0 and g("forces", "mean |F| per atom") > 0
    assert "rounding (0.05 Å)" in proc.stdout and "wrote" in proc.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        ((), "needs run directories or --model"),
        (("--model", "qm9-nothing"), "qm9-nothing"),
        (("/nonexistent/run",), "/nonexistent/run"),
        (("--model", "qm9-U0", "--limit", "0"), "--limit: must be at least 1"),
    ],
)
def test_bad_probes_inputs_are_one_line(args, message, tmp_path):
    proc = run_here("probes", *args, cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr
    assert_one_line_error(proc, message)


@pytest.mark.parametrize("fast", [False, True])
def test_the_force_probe_of_a_model_constant_between_bins_is_zero(fast, sample):
    """0.1 Å bins with the envelope at the bin centre: the prediction never
    sees a position, so its gradient is zero (the fast mode's table lookup
    leaves no graph to differentiate at all; that was an internal error)."""
    from pyg_schnet.analysis.probes import _mean_force
    from pyg_schnet.data.loader import MoleculeLoader
    from pyg_schnet.nn.fast import eager_kernels
    from pyg_schnet.nn.schnet import build_model

    torch.manual_seed(0)
    spec = {"name": "gaussian", "distance_bin_width": 0.1, "discrete_envelope": True}
    model = build_model(filter=spec, hidden_channels=8, num_filters=8, num_interactions=1,
                        cutoff=4.0, fast=fast).eval()  # fmt: skip
    batches = list(MoleculeLoader(sample, torch.arange(8), 8, target=7))
    with eager_kernels():
        assert _mean_force(model, batches) == 0.0
    smooth = build_model(hidden_channels=8, num_filters=8, num_interactions=1, cutoff=4.0)
    assert _mean_force(smooth.eval(), batches) > 0.0


def test_committed_probe_tables_name_models_that_exist():
    """Every committed probes table traces to its models: each subject is a
    shipped model or a run directory of the repository that keeps its weights."""
    from conftest import REPO
    from pyg_schnet.hub import available

    tables = sorted(glob.glob(osp.join(REPO, "experiments", "results", "probes", "*.csv")))
    assert tables
    for table in tables:
        with open(table) as f:
            subjects = {row["subject"] for row in csv.DictReader(f)}
        assert subjects, table
        for subject in subjects:
            found = subject in available() or osp.isfile(osp.join(REPO, subject, "model.pt"))
            assert found, f"{osp.basename(table)}: {subject}"
