"""Replacing is all or nothing (issue 30): ``train --overwrite`` of a run and
``export --overwrite`` of a model leave the old one whole until the new one
is complete; ``--resume``, ``evaluate``, ``predict`` and ``export`` refuse a
``config.yaml`` that differs from the checkpoint's settings."""

import json
import os
import os.path as osp
import resource
import shutil

import numpy as np
import pytest
import torch
import yaml

from helpers import assert_one_line_error, cli, run_here, snapshot, train_tiny, write_config

#: The replacing run: another target, one epoch.
GAP = ("--target", "gap", "--epochs", "1")


def _finished(folder, **overrides):
    """A finished run holding its model-only weights (model.pt, as a study
    keeps them, and as export leaves them)."""
    from pyg_schnet.run.checkpoint import export_weights
    from pyg_schnet.run.rundir import RunDir

    run, _ = train_tiny(folder, **overrides)
    export_weights(RunDir(str(run)))
    return run


@pytest.fixture(scope="module")
def u0(tmp_path_factory):
    """A finished U0 run (never changed: tests copy it)."""
    return _finished(tmp_path_factory.mktemp("u0"), epochs=2)


@pytest.fixture(scope="module")
def gap(tmp_path_factory):
    """A finished gap run (never changed)."""
    return _finished(tmp_path_factory.mktemp("gap"), epochs=1, target="gap")


def _copy(run, tmp_path):
    """A copy of a fixture's run, its config file beside it, pointing at it."""
    shutil.copytree(run, tmp_path / "r")
    cfg = yaml.safe_load(open(tmp_path / "r" / "config.yaml"))
    cfg.update(out=str(tmp_path / "r"), split_file=None)
    with open(tmp_path / "c.yaml", "w") as f:
        yaml.safe_dump(cfg, f)
    return tmp_path / "r", str(tmp_path / "c.yaml")


def _files(folder):
    """What a run or model folder holds (the lock file's holder line aside)."""
    return {p: h for p, h in snapshot(str(folder)).items() if osp.basename(p) != ".lock"}


def _target(path):
    """The target the weights at ``path`` were trained for."""
    return torch.load(path, weights_only=True)["config"]["target"]


def _no_leftovers(folder):
    parent = osp.dirname(str(folder))
    assert [f for f in os.listdir(parent) if f.endswith(".replacing")] == []


def test_overwrite_replaces_the_whole_directory(u0, tmp_path):
    """Defect 1: files of the old run the trainer does not write (model.pt,
    symmetry.json, plots) went on; export then paired the old U0 weights
    with a gap card."""
    run, cfg = _copy(u0, tmp_path)
    assert (run / "model.pt").is_file()
    (run / "symmetry.json").write_text("{}\n")
    (run / "parity_test.png").write_bytes(b"png")
    proc = run_here("train", "--config", cfg, "--quiet", "--overwrite", *GAP)
    assert proc.returncode == 0, proc.stderr
    left = sorted(os.listdir(run))
    assert left == sorted(
        [".lock", "best.pt", "config.yaml", "last.pt", "log.csv", "metrics.json", "split.npz"]
    )
    _no_leftovers(run)
    proc = run_here("export", run, "--name", "m", "--to", tmp_path / "models")
    assert proc.returncode == 0, proc.stderr
    card = json.load(open(tmp_path / "models" / "m" / "card.json"))
    assert card["target"] == _target(tmp_path / "models" / "m" / "model.pt") == "gap"


def _split_file(tmp_path, kind):
    train = {"float": np.arange(200) + 0.5, "outside": np.arange(200) + 10_000}[kind]
    path = tmp_path / f"{kind}.npz"
    np.savez(path, train_idx=train, val_idx=np.arange(200, 250), test_idx=np.arange(250, 300))
    return ["--split-file", path]


BAD_SETTINGS = {
    "split-file-float-indices": lambda t: _split_file(t, "float"),
    "split-file-index-out-of-range": lambda t: _split_file(t, "outside"),
    "train-size-above-the-data": lambda t: ["--train-size", "100000"],
    "negative-seed": lambda t: ["--seed", "-1"],
}


@pytest.mark.parametrize("case", BAD_SETTINGS, ids=list(BAD_SETTINGS))
def test_bad_settings_leave_the_old_run_whole(u0, tmp_path, case):
    """Defect 2: the old run was removed before the new settings were checked."""
    run, cfg = _copy(u0, tmp_path)
    flags = BAD_SETTINGS[case](tmp_path)
    before = _files(run)
    assert_one_line_error(run_here("train", "--config", cfg, "--quiet", "--overwrite", *flags))
    assert _files(run) == before
    _no_leftovers(run)


def test_export_under_a_file_size_limit_keeps_the_old_model(u0, gap, tmp_path):
    """Defect 3: a write cut short by a file-size limit was an internal error;
    it is one error line, exit 2, the old model whole and nothing left."""
    models = tmp_path / "models"
    assert run_here("export", u0, "--name", "m", "--to", models).returncode == 0
    before = _files(models)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    assert os.path.getsize(gap / "model.pt") > 20_000
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, hard))
    try:
        proc = run_here("export", gap, "--name", "m", "--to", models, "--overwrite")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert proc.returncode == 2, proc.stderr
    assert_one_line_error(proc, "File too large; the previous one is kept")
    assert _files(models) == before


# Kills of the replacing command (a real process each, ~8 s) at each kind of
# step: while the new run or model is being built (a checkpoint write; the
# export between its weights and its card), with the new one complete just
# before the swap, and just after the swap with the old one not yet removed.
# The swap is one function (io.replace_dir) for both commands, so each of its
# two points is killed once, in one command. Afterwards the folder is the old
# one whole or the new one whole, and the next replacement cleans what the
# kill left.
TRAIN_KILLS = [("checkpoint:3", "old"), ("swap:1", "old")]
EXPORT_KILLS = [("export:1", "old"), ("swap:2", "new")]


@pytest.mark.parametrize("fault,state", TRAIN_KILLS, ids=[k[0] for k in TRAIN_KILLS])
def test_overwrite_killed_at_every_step(u0, tmp_path, fault, state):
    run, cfg = _copy(u0, tmp_path)
    before = _files(run)
    proc = cli(
        "train", "--config", cfg, "--quiet", "--overwrite", *GAP,
        extra_env={"PYG_SCHNET_FAULT": fault},
    )  # fmt: skip
    assert proc.returncode == -9, proc.stderr
    if state == "old":
        assert _files(run) == before
    else:
        assert json.load(open(run / "metrics.json"))["target"] == "gap"
        assert _target(run / "best.pt") == _target(run / "last.pt") == "gap"
    proc = run_here("evaluate", run)
    assert proc.returncode == 0, proc.stderr
    proc = run_here("train", "--config", cfg, "--quiet", "--overwrite", *GAP)
    assert proc.returncode == 0, proc.stderr
    _no_leftovers(run)


@pytest.mark.parametrize("fault,state", EXPORT_KILLS, ids=[k[0] for k in EXPORT_KILLS])
def test_export_killed_at_every_step(u0, gap, tmp_path, fault, state):
    """Defect 4: a kill between the weights and the card left a U0 card
    beside gap weights."""
    models = tmp_path / "models"
    assert run_here("export", u0, "--name", "m", "--to", models).returncode == 0
    before = _files(models / "m")
    proc = cli(
        "export", gap, "--name", "m", "--to", models, "--overwrite",
        extra_env={"PYG_SCHNET_FAULT": fault},
    )  # fmt: skip
    assert proc.returncode == -9, proc.stderr
    if state == "old":
        assert _files(models / "m") == before
    card = json.load(open(models / "m" / "card.json"))
    assert (
        card["target"] == _target(models / "m" / "model.pt") == ("U0" if state == "old" else "gap")
    )
    proc = run_here("predict", "--model", models / "m", "--smiles", "C")
    assert proc.returncode == 0 and card["target"] in proc.stdout.splitlines()[0], proc.stderr
    assert run_here("export", gap, "--name", "m", "--to", models, "--overwrite").returncode == 0
    assert _target(models / "m" / "model.pt") == "gap"
    assert sorted(os.listdir(models)) == ["m"]


def _edit_config(run, **values):
    path = run / "config.yaml"
    cfg = yaml.safe_load(open(path))
    cfg.update(values)
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)


READERS = {
    "resume": lambda r: ["train", "--resume", r],
    "evaluate": lambda r: ["evaluate", r],
    "predict": lambda r: ["predict", r, "--smiles", "C"],
    "export": lambda r: ["export", r, "--name", "m", "--to", r.parent / "models"],
}


@pytest.mark.parametrize("reader", READERS, ids=list(READERS))
def test_a_config_that_differs_from_the_checkpoint_is_refused(u0, tmp_path, reader):
    """Defect 5: resuming with an edited target reported a gap MAE for a U0
    model, and evaluate and predict used the edited file."""
    run, _ = _copy(u0, tmp_path)
    if reader == "resume":
        os.remove(run / "metrics.json")  # an interrupted run
    _edit_config(run, target="gap", lr=0.01)
    before = _files(tmp_path)
    proc = run_here(*READERS[reader](run))
    assert_one_line_error(proc, "config.yaml differs from the settings")
    assert "(lr, target)" in proc.stderr and proc.returncode == 2
    assert _files(tmp_path) == before


def test_a_config_may_move_its_files(u0, tmp_path):
    """Keys that say where files live or how the run is executed may change."""
    run, _ = _copy(u0, tmp_path)
    _edit_config(run, num_threads=2, out="/elsewhere", wandb="offline")
    proc = run_here("predict", run, "--smiles", "C")
    assert proc.returncode == 0, proc.stderr


def test_resume_from_a_model_file_is_one_error(gap, tmp_path):
    """``last.pt`` that is not a training checkpoint (a model.pt copied over
    it) was a KeyError: one error line, exit 2, nothing changed."""
    run, _ = _copy(gap, tmp_path)
    os.remove(run / "metrics.json")
    shutil.copy(run / "model.pt", run / "last.pt")
    before = _files(run)
    proc = run_here("train", "--resume", run)
    assert_one_line_error(proc, "last.pt is not a training checkpoint (it has no optimizer")
    assert proc.returncode == 2
    assert _files(run) == before


def test_a_new_directory_is_written_in_place(tmp_path):
    """With nothing to replace, --overwrite trains in the directory itself,
    leaving files that are not a run's alone."""
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "notes.txt").write_text("mine\n")
    cfg = write_config(tmp_path / "c.yaml", out=str(tmp_path / "r"), epochs=1)
    proc = run_here("train", "--config", cfg, "--quiet", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "r" / "notes.txt").read_text() == "mine\n"
    _no_leftovers(tmp_path / "r")
