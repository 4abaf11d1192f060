"""Kill a real training run with SIGKILL at several points, resume it, and
check that it ends with exactly the metrics of an uninterrupted run and that
no checkpoint is ever unreadable."""

import csv
import glob
import json
import os.path as osp

import pytest
import torch

from helpers import assert_one_line_error, cli, write_config

COMMON = dict(epochs=4, max_molecules=300, patience=10)

# (fault spec, what it interrupts); checkpoint writes are numbered from 1:
# last.pt of epoch 0, then best.pt and last.pt of each improving epoch.
FAULTS = [
    ("batch:3", "during the first epoch"),
    ("batch:19", "during the third epoch"),
    ("checkpoint:2", "during a best.pt write"),
    ("checkpoint:5", "during a last.pt write"),
    ("evaluate:1", "during the final test evaluation"),
]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("ref")
    cfg = write_config(d / "c.yaml", out=str(d / "run"), **COMMON)
    proc = cli("train", "--config", cfg, "--quiet")
    assert proc.returncode == 0, proc.stderr
    return d / "run"


def _val_maes(run):
    with open(osp.join(run, "log.csv")) as f:
        return [r["val_mae"] for r in csv.DictReader(f)]


def _checkpoints_readable(run):
    for path in glob.glob(osp.join(run, "*.pt")):
        torch.load(path, weights_only=True)


@pytest.mark.parametrize("fault,where", FAULTS, ids=[f[0] for f in FAULTS])
def test_kill_and_resume(reference, tmp_path, fault, where):
    cfg = write_config(tmp_path / "c.yaml", out=str(tmp_path / "run"), **COMMON)
    proc = cli("train", "--config", cfg, "--quiet", extra_env={"PYG_SCHNET_FAULT": fault})
    assert proc.returncode == -9, f"not killed {where}: {proc.returncode} {proc.stderr}"
    run = tmp_path / "run"
    assert not osp.exists(run / "metrics.json")
    _checkpoints_readable(run)
    assert osp.isfile(run / "last.pt")
    proc = cli("train", "--resume", run, "--quiet")
    assert proc.returncode == 0, proc.stderr
    _checkpoints_readable(run)
    want = json.load(open(reference / "metrics.json"))
    got = json.load(open(run / "metrics.json"))
    for key in ("test_mae", "test_rmse", "best_val_mae", "best_epoch", "epochs"):
        assert got[key] == want[key], key
    assert _val_maes(run) == _val_maes(reference)
    assert not glob.glob(osp.join(run, "*.tmp*")), "temporary files left behind"


@pytest.mark.slow
def test_killed_before_first_checkpoint(reference, tmp_path):
    """Killed while writing the very first checkpoint: nothing to resume from
    (one clear error), and --overwrite starts the run again from scratch."""
    cfg = write_config(tmp_path / "c.yaml", out=str(tmp_path / "run"), **COMMON)
    proc = cli("train", "--config", cfg, "--quiet", extra_env={"PYG_SCHNET_FAULT": "checkpoint:1"})
    assert proc.returncode == -9
    assert not osp.exists(tmp_path / "run" / "last.pt")
    assert_one_line_error(cli("train", "--resume", tmp_path / "run"), "no checkpoint")
    proc = cli("train", "--config", cfg, "--quiet", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    got = json.load(open(tmp_path / "run" / "metrics.json"))
    assert got["test_mae"] == json.load(open(reference / "metrics.json"))["test_mae"]
    assert not glob.glob(str(tmp_path / "run" / "*.tmp*"))


def test_failed_checkpoint_write_stops_and_keeps_previous(tmp_path):
    """Disk full at the third checkpoint write (last.pt of epoch 1)."""
    cfg = write_config(tmp_path / "c.yaml", out=str(tmp_path / "run"), **COMMON)
    proc = cli("train", "--config", cfg, "--quiet", extra_env={"PYG_SCHNET_FAULT": "enospc:3"})
    assert_one_line_error(proc, "No space left on device")
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert last["state"]["epoch"] == 0  # the previous checkpoint, intact
    assert torch.load(tmp_path / "run" / "best.pt", weights_only=True)["state"]["epoch"] == 1
    assert not glob.glob(str(tmp_path / "run" / "*.tmp*"))
