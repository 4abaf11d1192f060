"""Issue 30 in study and sweep folders: a sweep run that did not finish is
resumed or retried (never counted as run), a corrupt file in a study or sweep
folder is one error line naming it with nothing changed, and a finished run
that another sitting holds does not stop this one."""

import json
import os
import os.path as osp
import shutil

import pytest
import yaml

from conftest import SAMPLE_ARGS
from helpers import assert_one_line_error, run_here, snapshot, write_config

SPEC = dict(
    name="tiny",
    base=dict(
        hidden_channels=8,
        num_filters=8,
        num_interactions=1,
        cutoff=4.0,
        num_gaussians=8,
        batch_size=50,
        epochs=1,
        fast=False,  # no compile step in each training process
    ),
    variants={"a": {}},
    targets=["gap"],
    seeds=[0],
    train_sizes=[100],
    val_size=50,
    test_size=50,
)
RUN = osp.join("runs", "gap", "a", "n100_seed0")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A finished one-run study (about 3 s)."""
    d = tmp_path_factory.mktemp("study")
    (d / "s.yaml").write_text(yaml.safe_dump(SPEC))
    proc = run_here("study", "run", d / "s.yaml", "--out", d / "out", *SAMPLE_ARGS)
    assert proc.returncode == 0, proc.stderr
    return d


CORRUPT_STUDY = [
    ("log-values", osp.join(RUN, "log.csv"), "epoch,train_loss\n1,abc,7\n"),
    ("log-binary", osp.join(RUN, "log.csv"), "\0\0garbage"),
    ("metrics", osp.join(RUN, "metrics.json"), "{torn"),
    ("sittings", "sittings.csv", "started,wall_seconds\n2020,x\n"),
]


@pytest.mark.parametrize("action", ["run", "report"])
@pytest.mark.parametrize(
    "rel,text", [c[1:] for c in CORRUPT_STUDY], ids=[c[0] for c in CORRUPT_STUDY]
)
def test_a_corrupt_file_in_a_study_folder_is_one_error(study, tmp_path, action, rel, text):
    out = tmp_path / "out"
    shutil.copytree(study / "out", out)
    (out / rel).write_text(text)
    before = snapshot(str(out))
    proc = run_here(
        "study", action, study / "s.yaml", "--out", out, *(SAMPLE_ARGS if action == "run" else [])
    )
    assert_one_line_error(proc, str(out / rel))
    assert snapshot(str(out)) == before


def test_a_finished_run_held_by_another_sitting_does_not_stop_this_one(study, tmp_path):
    """A sitting measures the symmetry of finished runs that lack it; one
    whose directory another sitting holds (measuring it now) is left to that
    one: the sitting stopped with "is in use" before."""
    from pyg_schnet.io import locked

    out = tmp_path / "out"
    shutil.copytree(study / "out", out)
    os.remove(out / RUN / "symmetry.json")
    with locked(str(out / RUN / ".lock"), wait=False):  # as another process would hold it
        proc = run_here("study", "run", study / "s.yaml", "--out", out, *SAMPLE_ARGS)
    assert proc.returncode == 0, proc.stderr
    assert "(1 finished, 0 to train)" in proc.stdout


# -- sweeps ---------------------------------------------------------------------------------


def _grid(tmp_path):
    """A grid sweep over three seeds of the tiny config, one epoch each."""
    base = write_config(tmp_path / "base.yaml", epochs=1)
    sweep = dict(
        name="g",
        method="grid",
        metric={"name": "val_mae", "goal": "minimize"},
        parameters={"seed": {"values": [0, 1, 2]}},
        command=["${env}", "pyg-schnet", "train", "--config", base, "${args}"],
    )
    (tmp_path / "g.yaml").write_text(yaml.safe_dump(sweep))
    return tmp_path / "g.yaml", base


def _point(out, run_id, seed, metrics=None):
    """A run directory of the sweep as ``pyg-schnet sweep`` starts it."""
    d = out / run_id
    d.mkdir(parents=True)
    (d / "sweep.json").write_text(
        json.dumps({"config": {"seed": {"value": seed}}, "run_id": run_id})
    )
    if metrics is not None:
        (d / "metrics.json").write_text(json.dumps(metrics))
    return d


@pytest.mark.slow
def test_a_sweep_run_that_did_not_finish_is_resumed_or_retried(tmp_path):
    """Killed grid points were "run" for the engine: never resumed or retried,
    and the sweep called itself complete. Now a point without metrics.json is
    resumed from its last.pt, or started over, before new points are drawn;
    a failure counts, and the grid is complete only when every point finished."""
    grid, base = _grid(tmp_path)
    out = tmp_path / "sweep"
    _point(out, "done0000", 0, {"best_val_mae": 1.0})
    killed = _point(out, "kill0001", 1)  # killed in its final evaluation: last.pt, no metrics
    assert run_here("train", "--config", base, "--seed", "1", "--out", killed).returncode == 0
    os.remove(killed / "metrics.json")
    log = (killed / "log.csv").read_text()
    failed = _point(out, "fail0002", 2)  # failed before its first checkpoint: nothing to resume
    shutil.copy(killed / "config.yaml", failed / "config.yaml")
    _point(out, "bad00003", "many")  # fails again: counted
    proc = run_here("sweep", grid, "--count", "4", "--out", out, "--wandb", "disabled")
    assert_one_line_error(proc, "1 sweep run(s) failed")
    assert "4 earlier run(s) in" in proc.stdout and "3 of them unfinished" in proc.stdout
    assert "kill0001 {'seed': 1} (resumed): val_mae " in proc.stdout
    assert "fail0002 {'seed': 2} (retried): val_mae " in proc.stdout
    assert "bad00003 {'seed': 'many'} (retried): failed" in proc.stdout
    assert "1 run(s) did not finish (bad00003)" in proc.stdout
    assert "the sweep is complete" not in proc.stdout
    assert (killed / "log.csv").read_text() == log  # resumed, not trained again
    for d in (killed, failed):
        assert json.loads((d / "metrics.json").read_text())["best_val_mae"] > 0
    shutil.rmtree(out / "bad00003")
    proc = run_here("sweep", grid, "--out", out, "--wandb", "disabled")
    assert proc.returncode == 0, proc.stderr
    assert "the sweep is complete (every grid point has run)" in proc.stdout


CORRUPT_SWEEP = [
    ("sweep-json", "sweep.json", "{torn"),
    ("sweep-json-list", "sweep.json", "[1, 2]"),
    ("metrics", "metrics.json", "{torn"),
]


@pytest.mark.parametrize(
    "name,text", [c[1:] for c in CORRUPT_SWEEP], ids=[c[0] for c in CORRUPT_SWEEP]
)
def test_a_corrupt_file_in_a_sweep_folder_is_one_error(tmp_path, name, text):
    grid, _ = _grid(tmp_path)
    out = tmp_path / "sweep"
    d = _point(out, "done0000", 0, {"best_val_mae": 1.0})
    (d / name).write_text(text)
    before = snapshot(str(out))
    proc = run_here("sweep", grid, "--out", out, "--wandb", "disabled")
    assert_one_line_error(proc, str(d / name))
    assert snapshot(str(out)) == before
