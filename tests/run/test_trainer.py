"""The training CLI: flag forms, run directory, resume after SIGKILL, atomic
checkpoints, NaN stop, evaluate/predict, sweeps, DDP."""

import csv
import fcntl
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from conftest import DATA_ROOT
from helpers import (
    REPO,
    TINY,
    TINY_BENCHMARK,
    assert_one_line_error,
    cli,
    env,
    offline_run_record,
    popen,
    run_here,
    train_tiny,
    write_config,
)
from pyg_schnet.cli.config_flags import parse_overrides
from pyg_schnet.run.config import load_config
from pyg_schnet.run.rundir import RunDir
from pyg_schnet.run.trainer import Trainer
from pyg_schnet.errors import UserError
from pyg_schnet.version import code_version


# -- flags -----------------------------------------------------------------------


def test_flag_forms():
    got = parse_overrides(
        [
            "--batch-size=100",
            "--lr",
            "0.002",
            "--num_interactions=3",
            "--max-molecules",
            "500",
            "--filter=conv1d",
        ]
    )
    assert got == {
        "batch_size": "100",
        "lr": "0.002",
        "num_interactions": "3",
        "max_molecules": "500",
        "filter": "conv1d",
    }
    cfg = load_config(None, got)
    assert cfg.batch_size == 100 and cfg.lr == 0.002 and cfg.num_interactions == 3
    assert cfg.max_molecules == 500 and cfg.filter["name"] == "conv1d"
    assert load_config(None, parse_overrides(["--batch_size", "7"])).batch_size == 7
    assert load_config(None, {"shared_filters": "true"}).shared_filters is True
    assert load_config(None, {"max_molecules": "none"}).max_molecules is None


def test_unknown_key_lists_valid_keys():
    with pytest.raises(UserError, match="unknown config key 'batchsize'; valid keys: .*batch_size"):
        parse_overrides(["--batchsize=3"])


def test_out_template():
    cfg = load_config(None, {"out": "runs/{filter}_s{seed}", "seed": "3"})
    assert cfg.out == "runs/gaussian_s3"


# -- a real short run ------------------------------------------------------------


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run, proc = train_tiny(tmp_path_factory.mktemp("run"), epochs=3)
    assert "test MAE" in proc.stdout
    return str(run)


def test_run_directory_contents(run_dir):
    for f in ("config.yaml", "split.npz", "log.csv", "best.pt", "last.pt", "metrics.json"):
        assert osp.isfile(osp.join(run_dir, f)), f
    with open(osp.join(run_dir, "log.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert set(rows[0]) == {
        "epoch",
        "train_loss",
        "train_mae",
        "val_mae",
        "lr",
        "epoch_seconds",
        "molecules_per_second",
        "elapsed",
    }
    assert all(float(r["molecules_per_second"]) > 0 for r in rows)
    m = json.load(open(osp.join(run_dir, "metrics.json")))
    assert m["unit"] == "eV" and m["test_mae"] > 0
    assert m["test_mae_meV"] == pytest.approx(m["test_mae"] * 1000)
    assert m["code"] == code_version()  # which code trained it
    best, last = (
        torch.load(osp.join(run_dir, f), weights_only=True) for f in ("best.pt", "last.pt")
    )
    assert best["run_format"] == last["run_format"] == 1 and "model" in best and "model" in last
    # last.pt resumes; best.pt is the best model and its state, no optimizer state
    assert {"optimizer", "scheduler", "rng"} <= set(last) and not {
        "optimizer",
        "scheduler",
        "rng",
    } & set(best)
    assert (
        best["state"]["epoch"] == json.load(open(osp.join(run_dir, "metrics.json")))["best_epoch"]
    )
    cfg = yaml.safe_load(open(osp.join(run_dir, "config.yaml")))
    assert cfg["out"] == run_dir and cfg["filter"]["name"] == "gaussian"


def test_config_alone_reproduces_the_run(run_dir, tmp_path):
    """Retraining from the saved config.yaml (and split) gives the same metrics."""
    cfg = yaml.safe_load(open(osp.join(run_dir, "config.yaml")))
    cfg["out"] = str(tmp_path / "again")
    cfg["split_file"] = osp.join(run_dir, "split.npz")
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = run_here("train", "--config", path, "--quiet")
    assert proc.returncode == 0, proc.stderr
    a = json.load(open(osp.join(run_dir, "metrics.json")))
    b = json.load(open(tmp_path / "again" / "metrics.json"))
    assert a["test_mae"] == b["test_mae"]


def test_evaluate_and_predict(run_dir, tmp_path):
    proc = run_here("evaluate", run_dir, "--split", "val")
    assert proc.returncode == 0, proc.stderr
    assert "MAE" in proc.stdout and osp.isfile(osp.join(run_dir, "parity_val.png"))
    assert osp.getsize(osp.join(run_dir, "errors_val.png")) > 10_000  # histogram, MAE per size
    xyz = tmp_path / "water.xyz"
    xyz.write_text("3\nwater\nO 0.0 0.0 0.1173\nH 0.0 0.7572 -0.4692\nH 0.0 -0.7572 -0.4692\n")
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles("CO"))
    AllChem.EmbedMolecule(mol, randomSeed=1)
    sdf = tmp_path / "methanol.sdf"
    Chem.MolToMolFile(mol, str(sdf))
    out = tmp_path / "pred.csv"
    proc = run_here("predict", run_dir, xyz, sdf, "--smiles", "CC", "--output", out)
    assert proc.returncode == 0, proc.stderr
    assert "DFT" in proc.stderr
    rows = list(csv.DictReader(open(out)))
    assert [r["source"] for r in rows] == ["xyz", "sdf", "smiles"]
    assert [int(r["num_atoms"]) for r in rows] == [3, 6, 8]
    assert all(abs(float(r["U0_eV"])) > 10 for r in rows)  # total energies: hundreds of eV
    assert [r["warning"] for r in rows] == ["", "", ""] and "outside QM9" not in proc.stderr


def test_predict_warns_outside_qm9(run_dir, tmp_path):
    """A 40-atom carbon cloud and a squeezed molecule get a prediction and a
    warning each (not silence); QM9-like ones none."""
    import numpy as np

    rng = np.random.default_rng(0)
    cloud = rng.uniform(0, 12, (40, 3))
    lines = ["40", "cloud"] + [f"C {x:.4f} {y:.4f} {z:.4f}" for x, y, z in cloud]
    (tmp_path / "cloud.xyz").write_text("\n".join(lines) + "\n")
    (tmp_path / "squeezed.xyz").write_text("3\nsqueezed\nO 0 0 0\nH 0 0.5 0\nH 0 -0.9 0.3\n")
    out = tmp_path / "p.csv"
    proc = run_here(
        "predict",
        run_dir,
        tmp_path / "cloud.xyz",
        tmp_path / "squeezed.xyz",
        "--smiles",
        "CCO",
        "-o",
        out,
    )
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in csv.DictReader(open(out))}
    # named by their comment lines
    assert "40 atoms (QM9: at most 29)" in rows["cloud"]["warning"]
    assert "40 heavy atoms (QM9: at most 9)" in rows["cloud"]["warning"]
    assert "atoms 0.50 Å apart (QM9: at least 0.958 Å)" in rows["squeezed"]["warning"]
    assert rows["CCO"]["warning"] == ""
    assert "warning: 2 molecule(s) lie outside QM9's range" in proc.stderr


def test_refuses_to_overwrite_finished_run(run_dir):
    before = open(osp.join(run_dir, "metrics.json")).read()
    cfg = osp.join(osp.dirname(run_dir), "cfg.yaml")
    proc = run_here("train", "--config", cfg)
    assert_one_line_error(proc, "--overwrite")
    assert open(osp.join(run_dir, "metrics.json")).read() == before


# -- resume after SIGKILL ------------------------------------------------------------


def _log_rows(out):
    try:
        with open(osp.join(out, "log.csv")) as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        return []


def _train_until(cfg, run, epochs):
    """Start ``train --config cfg`` and return once ``epochs`` epochs are
    logged in ``run`` (or the process ended); the process keeps running."""
    p = popen("train", "--config", cfg, "--quiet")
    deadline = time.time() + 300
    while len(_log_rows(run)) < epochs and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    return p


def test_resume_after_sigkill_gives_identical_metrics(tmp_path):
    common = dict(epochs=5, max_molecules=400, train_size=300)
    ref = write_config(tmp_path / "ref.yaml", out=str(tmp_path / "ref"), **common)
    assert run_here("train", "--config", ref, "--quiet").returncode == 0
    killed = write_config(tmp_path / "k.yaml", out=str(tmp_path / "k"), **common)
    p = _train_until(killed, tmp_path / "k", epochs=2)
    assert p.poll() is None, "the run finished before it could be killed"
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not osp.exists(tmp_path / "k" / "metrics.json")
    torch.load(tmp_path / "k" / "last.pt", weights_only=True)  # loadable after the kill
    proc = run_here("train", "--resume", tmp_path / "k", "--quiet")
    assert proc.returncode == 0, proc.stderr
    a = json.load(open(tmp_path / "ref" / "metrics.json"))
    b = json.load(open(tmp_path / "k" / "metrics.json"))
    assert a["test_mae"] == b["test_mae"] and a["best_epoch"] == b["best_epoch"]
    va = [r["val_mae"] for r in _log_rows(tmp_path / "ref")]
    vb = [r["val_mae"] for r in _log_rows(tmp_path / "k")]
    assert va == vb


@pytest.mark.slow
def test_resume_with_rotation_augmentation_is_exact(tmp_path):
    """Rotations are drawn from a generator seeded per epoch: a run killed
    mid-epoch and resumed sees the same rotated batches as an uninterrupted one."""
    common = dict(epochs=3, max_molecules=300, filter="coords", rotation_augmentation=True)
    ref = write_config(tmp_path / "ref.yaml", out=str(tmp_path / "ref"), **common)
    assert run_here("train", "--config", ref, "--quiet").returncode == 0
    plain = write_config(
        tmp_path / "p.yaml", out=str(tmp_path / "p"), **dict(common, rotation_augmentation=False)
    )
    assert run_here("train", "--config", plain, "--quiet").returncode == 0
    killed = write_config(tmp_path / "k.yaml", out=str(tmp_path / "k"), **common)
    proc = cli("train", "--config", killed, "--quiet", extra_env={"PYG_SCHNET_FAULT": "batch:13"})
    assert proc.returncode == -9
    assert run_here("train", "--resume", tmp_path / "k", "--quiet").returncode == 0
    va = [r["val_mae"] for r in _log_rows(tmp_path / "ref")]
    assert [r["val_mae"] for r in _log_rows(tmp_path / "k")] == va
    assert [r["val_mae"] for r in _log_rows(tmp_path / "p")] != va  # it did change the inputs


def test_training_stops_after_max_lr_decays(tmp_path):
    # lr_patience 0: every epoch without a new best decays the learning rate
    run, _ = train_tiny(
        tmp_path,
        schedule="plateau",
        ema_decay=None,
        epochs=30,
        lr=0.02,
        lr_patience=0,
        max_lr_decays=2,
    )
    m = json.load(open(run / "metrics.json"))
    log = _log_rows(run)
    assert m["stop_reason"] == "lr decays" and m["lr_decays"] == 2
    assert m["epochs"] == len(log) < 30
    lrs = [float(r["lr"]) for r in log]
    assert m["final_lr"] == pytest.approx(0.02 * 0.25)
    assert sum(b < a for a, b in zip(lrs, lrs[1:], strict=False)) == 1  # the 2nd decay ends it


# -- checkpoints and faults -------------------------------------------------------------


def test_atomic_save_keeps_old_file_when_write_fails(tmp_path, monkeypatch):
    from pyg_schnet.run import checkpoint as T

    path = str(tmp_path / "last.pt")
    T.atomic_save({"run_format": 1, "x": torch.ones(3)}, path)

    def broken(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(T.torch, "save", broken)
    with pytest.raises(UserError, match="No space left.*previous checkpoint is kept"):
        T.atomic_save({"run_format": 1, "x": torch.zeros(3)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.ones(3))
    assert os.listdir(tmp_path) == ["last.pt"]  # no temporary file left behind


@pytest.mark.parametrize(
    "finite_steps, match",
    [
        (10, "loss became nan at epoch 2.*the best checkpoint so far is kept in .*best.pt"),
        (0, "loss became nan at epoch 1, batch 1; stopped; no epoch finished, so there is no best"),
    ],
)
def test_nan_loss_stops_and_keeps_best(tmp_path, monkeypatch, finite_steps, match):
    """A diverged run names its best checkpoint, or, diverged in its first
    epoch, says there is none (it named a best.pt that did not exist)."""
    from pyg_schnet.run import trainer as T
    from pyg_schnet.nn.schnet import SchNet

    calls = {"n": 0}
    real = SchNet.forward

    def forward(self, *a, **k):
        out = real(self, *a, **k)
        if self.training:
            calls["n"] += 1
            if calls["n"] > finite_steps:  # 10: after the first epoch (8 batches)
                return out * float("nan")
        return out

    monkeypatch.setattr(SchNet, "forward", forward)
    cfg = load_config(write_config(tmp_path / "c.yaml", out=str(tmp_path / "nan")))
    with pytest.raises(T.TrainingDiverged, match=match):
        T.train(cfg, quiet=True)
    assert not osp.exists(tmp_path / "nan" / "metrics.json")
    if finite_steps:
        ckpt = torch.load(tmp_path / "nan" / "best.pt", weights_only=True)
        assert ckpt["state"]["best_epoch"] == 1
    else:
        assert not osp.exists(tmp_path / "nan" / "best.pt")


def test_a_diverged_replacement_says_the_old_run_is_kept(tmp_path, monkeypatch):
    """``--overwrite`` builds the new run in a staging folder that a failure
    removes: a divergence there names no best.pt (it is gone) but the old run."""
    from pyg_schnet.nn.schnet import SchNet
    from pyg_schnet.run import trainer as T

    cfg = load_config(write_config(tmp_path / "c.yaml", out=str(tmp_path / "r"), epochs=1))
    T.train(cfg, quiet=True)
    before = (tmp_path / "r" / "metrics.json").read_text()
    real = SchNet.forward

    def forward(self, *a, **k):
        out = real(self, *a, **k)
        return out * float("nan") if self.training else out

    monkeypatch.setattr(SchNet, "forward", forward)
    with pytest.raises(T.TrainingDiverged, match="new run is discarded; .*r keeps the run it held"):
        T.train(cfg, overwrite=True, quiet=True)
    assert (tmp_path / "r" / "metrics.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "r"]


def test_a_run_ended_before_its_first_checkpoint_is_not_offered_resume(tmp_path):
    """A run whose first checkpoint write failed (a full disk, like a W&B
    login that fails) leaves its config and split but nothing to resume: the
    next attempt is told to --overwrite, not to --resume (which would say
    there is no checkpoint)."""
    cfg = write_config(tmp_path / "c.yaml", out=str(tmp_path / "r"), epochs=1)
    full = run_here("train", "--config", cfg, "--quiet", extra_env={"PYG_SCHNET_FAULT": "enospc:1"})
    assert_one_line_error(full, "cannot write checkpoint")
    assert not osp.exists(tmp_path / "r" / "last.pt")
    again = run_here("train", "--config", cfg, "--quiet")
    line = assert_one_line_error(again, "pass --overwrite to replace it")
    assert "--resume" not in line and "without last.pt to resume from" in line
    assert_one_line_error(run_here("train", "--resume", tmp_path / "r"), "no checkpoint")


# -- W&B -------------------------------------------------------------------------------


def test_wandb_offline_logs_run(tmp_path):
    cfg = write_config(tmp_path / "c.yaml", out=str(tmp_path / "wb"), epochs=2, wandb="offline")
    proc = cli("train", "--config", cfg, "--quiet")
    assert proc.returncode == 0, proc.stderr
    runs = [d for d in os.listdir(tmp_path / "wb" / "wandb") if d.startswith("offline-run")]
    assert len(runs) == 1
    run = tmp_path / "wb" / "wandb" / runs[0]
    assert any(f.endswith(".wandb") for f in os.listdir(run))
    # the figures a W&B user opens, kept in the run directory too, and the model artifact
    for name in ("parity_test.png", "filters.png", "model.pt"):
        assert osp.getsize(tmp_path / "wb" / name) > 1000, name
    media = [f for _, _, fs in os.walk(run / "files" / "media") for f in fs]
    assert any(f.startswith("parity_test") for f in media)
    assert any(f.startswith("filters") for f in media)
    # the offline record stream holds the model artifact (named after the run id) and the
    # val_mae metric definition (summarised as its minimum: define_metric in _WandB)
    stream = open(next(run.glob("*.wandb")), "rb").read()
    run_id = runs[0].rsplit("-", 1)[1]
    assert f"model-{run_id}".encode() in stream and b"val_mae" in stream


def _saved_value(saved, key):
    """A sweep parameter's value in a saved config.yaml (the filter's options
    are nested under it; old flat names are aliases of them)."""
    if key == "filter":
        return saved["filter"]["name"]
    return saved["filter"][key] if key not in saved else saved[key]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["filter_grid.yaml", "gaussian_search.yaml", "conv1d_search.yaml"])
def test_sweep_files_and_agent_command(name, tmp_path):
    import sweeps

    sweep = yaml.safe_load(open(osp.join(REPO, "experiments", "sweeps", name)))
    assert sweeps.schema_violations_from_proposed_config(sweep) == []
    run = sweeps.next_run(sweep, [])
    params = {k: v["value"] for k, v in run.config.items()}
    assert set(params) == set(sweep["parameters"])
    from pyg_schnet.study.sweep import agent_command

    cmd = agent_command(sweep, run.config)  # what `wandb agent` builds, with W&B's own rendering
    assert cmd[:4] == [sys.executable, "-m", "pyg_schnet.cli", "train"]
    # run that exact command line (the console script), shrunk to a tiny model, offline
    exe = osp.join(osp.dirname(sys.executable), "pyg-schnet")
    flat = {}
    for k, v in params.items():  # a nested parameter holds the filter's name and options
        flat.update(
            {("filter" if kk == "name" else kk): vv for kk, vv in v.items()}
            if isinstance(v, dict)
            else {k: v}
        )
    tiny = {k: v for k, v in TINY.items() if k not in flat}
    extra = [f"--{k}={v}" for k, v in tiny.items()] + [
        "--epochs=1",
        "--wandb=offline",
        f"--out={tmp_path}/{{filter}}_{{seed}}",
    ]
    proc = subprocess.run(
        [exe] + cmd[3:] + extra + ["--quiet"],
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    runs = os.listdir(tmp_path)
    assert len(runs) == 1 and osp.isfile(osp.join(tmp_path, runs[0], "metrics.json"))
    saved = yaml.safe_load(open(osp.join(tmp_path, runs[0], "config.yaml")))
    for k, v in flat.items():
        got = _saved_value(saved, k)
        assert got == pytest.approx(v) if isinstance(v, float) else got == v, (k, got, v)


# -- DDP -----------------------------------------------------------------------------------


def test_ddp_two_processes(tmp_path):
    cfg = write_config(tmp_path / "c.yaml", out=str(tmp_path / "ddp"), epochs=2)
    torchrun = osp.join(osp.dirname(sys.executable), "torchrun")
    proc = subprocess.run(
        [
            torchrun,
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "pyg_schnet.cli",
            "train",
            "--config",
            cfg,
            "--quiet",
        ],
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.load(open(tmp_path / "ddp" / "metrics.json"))
    assert m["epochs"] == 2 and m["test_mae"] > 0
    assert proc.stdout.count("test MAE") == 1  # one process reports and writes
    rows = _log_rows(tmp_path / "ddp")
    assert len(rows) == 2


@pytest.mark.slow
def test_data_parallel_ranks_share_one_clock(tmp_path):
    """A time budget with a schedule over seconds, two processes, and rank 1's
    clock running 30% fast: the ranks still stop at the same step (before,
    rank 1 left for the test evaluation an epoch early and rank 0 waited for
    it forever) and set the same learning rates; the run ends annealed."""
    cfg = write_config(
        tmp_path / "c.yaml",
        out=str(tmp_path / "skew"),
        processes=2,
        schedule="cosine",
        horizon="seconds",
        time_budget=4,
        epochs=1000,
        min_lr=1e-5,
    )
    proc = cli("train", "--config", cfg, timeout=240, extra_env={"PYG_SCHNET_FAULT": "skew:300"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.load(open(tmp_path / "skew" / "metrics.json"))
    assert m["stop_reason"] == "time budget" and m["schedule_completed"] is True
    assert m["final_lr"] == pytest.approx(1e-5)


@pytest.mark.slow
def test_train_starts_its_own_data_parallel_processes(tmp_path):
    """``processes: 2`` without torchrun: two processes share each batch of
    the configured size, one writes; the effective batch size is recorded."""
    cfg = write_config(tmp_path / "c.yaml", out=str(tmp_path / "p2"), epochs=2, processes=2)
    proc = cli("train", "--config", cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("test MAE") == 1
    assert (
        "2 process(es) x 1 thread(s); effective batch size 25, shared by the processes: "
        "12-13 each" in proc.stderr
    )  # shared, not multiplied
    m = json.load(open(tmp_path / "p2" / "metrics.json"))
    assert m["processes"] == 2 and m["effective_batch_size"] == 25 and m["epochs"] == 2
    # a refused run (directory in use) ends with one error line, no process left waiting:
    # refused before its processes start; and if the directory is taken after that check,
    # rank 0 is refused and the launcher stops rank 1 (which would wait for it forever)
    from pyg_schnet.run.launch import launch
    from pyg_schnet.run.rundir import LOCK_FILE, RunDir

    run = RunDir(str(tmp_path / "p2"))
    fd = os.open(run.file(LOCK_FILE), os.O_RDWR)
    os.write(fd, b"pid 1 on elsewhere")
    fcntl.flock(fd, fcntl.LOCK_EX)  # another open file: a holder other than RunDir.lock()
    try:
        with pytest.raises(UserError, match="is in use by pid 1 on elsewhere"):
            run.check_free()
        proc = cli("train", "--config", cfg, "--overwrite", timeout=120)
        assert_one_line_error(proc, "is in use by pid 1 on elsewhere")
        assert "process(es)" not in proc.stderr  # no process was started
        t0 = time.perf_counter()
        assert launch(["--config", cfg, "--overwrite"], 2) == 2
        assert time.perf_counter() - t0 < 60
    finally:
        os.close(fd)
    run.check_free()  # free again


# -- the run-directory lock ----------------------------------------------------------------


@pytest.mark.slow
def test_a_running_directory_cannot_be_shared(tmp_path, capsys):
    """While a run trains, a second training into its directory (even with
    --overwrite), a resume and an evaluate get one error naming the holder and
    change nothing; the first run ends exactly like an undisturbed one."""
    # long enough (about 2 s per epoch) to outlast the other processes' start-up: the full
    # data set's first 2,200 molecules, not the unit tests' sample
    common = dict(
        epochs=5, patience=5, max_molecules=2200, train_size=2000, root=DATA_ROOT, source="qm9pack"
    )
    ref = write_config(tmp_path / "ref.yaml", out=str(tmp_path / "ref"), **common)
    assert run_here("train", "--config", ref, "--quiet").returncode == 0
    cfg = write_config(tmp_path / "c.yaml", out=str(tmp_path / "run"), **common)
    first = _train_until(cfg, tmp_path / "run", epochs=1)
    assert first.poll() is None, "the first run finished before the others could try"
    from pyg_schnet.cli import main

    for args in (
        ["train", "--config", cfg, "--quiet", "--overwrite"],
        ["train", "--resume", tmp_path / "run", "--quiet"],
        ["evaluate", tmp_path / "run"],
    ):
        capsys.readouterr()  # in this process: no start-up time for the first run to end
        code = main([str(a) for a in args])
        err = capsys.readouterr().err
        assert code == 2 and err.count("error:") == 1, err
        assert f"is in use by pid {first.pid} on " in err, err
    assert first.poll() is None, "the refused processes stopped the first one"
    first.wait(timeout=300)
    assert first.returncode == 0, first.stderr.read()
    a = json.load(open(tmp_path / "ref" / "metrics.json"))
    b = json.load(open(tmp_path / "run" / "metrics.json"))
    assert a["test_mae"] == b["test_mae"] and a["epochs"] == b["epochs"] == 5
    assert [r["val_mae"] for r in _log_rows(tmp_path / "ref")] == [
        r["val_mae"] for r in _log_rows(tmp_path / "run")
    ]
    # free again once the holder has ended
    assert run_here("evaluate", tmp_path / "run").returncode == 0


def test_lock_is_reentrant_and_released(tmp_path):
    from pyg_schnet.run.rundir import RunDir

    rd = RunDir(str(tmp_path / "r"))
    with rd.lock():
        with rd.lock():  # the same process: no deadlock
            assert osp.isdir(tmp_path / "r")
    with rd.lock():  # released
        pass
    assert open(tmp_path / "r" / ".lock").read() == ""


# -- threads and processes -------------------------------------------------------------------


def test_default_threads_follow_the_measured_rule():
    from pyg_schnet.run.throughput import SIZES, default_threads

    q, p = SIZES["quickstart"], SIZES["pyg"]
    assert default_threads(q["num_filters"], q["num_interactions"], q["cutoff"], 1, 2) == 1
    assert default_threads(p["num_filters"], p["num_interactions"], p["cutoff"], 1, 2) == 2
    # one process per core: one thread each, whatever the size
    assert default_threads(p["num_filters"], p["num_interactions"], p["cutoff"], 2, 2) == 1
    from pyg_schnet.run.config import load_config
    from pyg_schnet.run.distributed import usable_cpus

    # the CPUs this process may use (affinity, quota), not the machine's count
    assert load_config(None, {"processes": "none"}).resolved_processes() == usable_cpus()
    assert load_config(None, {"device": "cuda"}).resolved_processes() == 1
    with pytest.raises(
        UserError, match="batch_size \\(1\\) must be at least the number of processes \\(2\\)"
    ):
        load_config(None, {"processes": 2, "batch_size": 1})


@pytest.mark.slow
def test_throughput_and_benchmark_commands_print_default_and_best():
    from conftest import SAMPLE_ROOT, SAMPLE_SOURCE

    proc = cli(
        "throughput",
        "--root",
        SAMPLE_ROOT,
        "--source",
        SAMPLE_SOURCE,
        "--sizes",
        "quickstart",
        "--rounds",
        "1",
        "--epochs",
        "2",
        "--molecules",
        "150",
        "--fast",
        "false",  # no compile step in each of its training processes
        check=True,
    )
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("quickstart (work 0.054 M): 1 thr x 1 proc") and "of best" in last
    proc = run_here(
        "benchmark",
        "--root",
        SAMPLE_ROOT,
        "--source",
        SAMPLE_SOURCE,
        "--skip-build",
        *TINY_BENCHMARK,
        "--no-memory",
    )
    assert proc.returncode == 0, proc.stderr
    assert "1 thread(s) (the default for one process)" in proc.stdout
    # --no-memory: a "-" where the peak memory would be (test_models measures it)
    tables, dense = proc.stdout.split("\ndense layers of a training step")
    assert [
        line.split()[-3]
        for line in tables.splitlines()
        if line.startswith(("PyG SchNet ", "pyg_schnet  "))
    ] == ["-"] * 4
    assert "pyg_schnet training: default 1 thread(s)" in tables and "of best" in tables
    # the one-thread step against its dense layers at this CPU's matrix-multiply rate
    shares = {
        line[:18].strip(): float(line.split()[-1].rstrip("%"))
        for line in dense.splitlines()
        if line.startswith(("PyG SchNet ", "pyg_schnet  "))
    }
    assert set(shares) == {"PyG SchNet", "pyg_schnet"}
    assert all(0 < s < 100 for s in shares.values())


# -- the local sweep runner ------------------------------------------------------------------


def _tiny_extra():
    return (
        ["--"]
        + [f"--{k}={v}" for k, v in TINY.items() if k not in ("filter", "seed", "num_gaussians")]
        + ["--epochs=1"]
    )


@pytest.mark.slow
def test_local_sweep_runs_grid_and_bayes_without_a_server(tmp_path):
    grid = osp.join(REPO, "experiments", "sweeps", "filter_grid.yaml")
    out = tmp_path / "grid"
    proc = run_here("sweep", grid, "--count", "2", "--out", out, *_tiny_extra())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ident = (out / "sweep_id").read_text().strip()  # the sweep's local id
    first = sorted(d for d in os.listdir(out) if d != "sweep_id")
    assert len(first) == 2  # one directory per run, named after its W&B run id
    # it ends with its best run (by the sweep's metric and goal)
    mae = {d: json.load(open(out / d / "metrics.json"))["best_val_mae"] for d in first}
    best = min(first, key=mae.get)
    assert (
        proc.stdout.strip()
        .splitlines()[-1]
        .startswith(
            f"best run (minimize val_mae, 2 of 2 run(s) finished): {best} val_mae {mae[best]:.5g} "
        )
    )
    # issue 29: a sweep run was named after its folder, ungrouped, untagged: after `wandb
    # sync` a loose run. Its offline record stream (what `wandb sync` uploads) now names,
    # groups and tags it by the sweep, its local id in the group, tags and config
    run = offline_run_record(out / first[0] / "wandb")
    assert run.run_id == first[0] and run.display_name in ("filter-grid-1", "filter-grid-2")
    assert (run.run_group, run.job_type) == (f"filter-grid-{ident}", "sweep")
    assert list(run.tags) == ["sweep", f"sweep-{ident}"]
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["wandb_group"] == f"filter-grid-{ident}"
    # W&B's own sweep id names a sweep on its server: `wandb sync` of a run whose sweep
    # the server does not know fails ("sweep ... not found"), so none is set
    assert run.sweep_id == ""
    # resumable: a second call continues the grid with a configuration not yet run, here
    # filed under a sweep of the W&B server (the id `wandb sweep` printed where there is a
    # network): the new run records it, so that `wandb sync` files it under that sweep
    server = ["--wandb_sweep_id", "me/qm9/abcd1234"]
    proc = run_here("sweep", grid, "--count", "1", "--out", out, *server, *_tiny_extra())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 earlier run(s)" in proc.stdout and "W&B sweep me/qm9/abcd1234" in proc.stdout
    (third,) = set(os.listdir(out)) - {"sweep_id", "wandb_sweep", *first}
    run = offline_run_record(out / third / "wandb")
    assert (run.sweep_id, run.entity, run.project) == ("abcd1234", "me", "qm9")
    assert (run.run_group, list(run.tags)) == (f"filter-grid-{ident}", ["sweep", f"sweep-{ident}"])
    # the folder keeps it; another server sweep would split the runs: refused, nothing run
    assert (out / "wandb_sweep").read_text() == "me/qm9/abcd1234\n"
    from pyg_schnet.errors import UserError
    from pyg_schnet.study.sweep import run_sweep

    with pytest.raises(UserError, match="files its runs under W&B sweep me/qm9/abcd1234"):
        run_sweep(grid, 1, str(out), wandb_sweep="zzzz9999")
    with pytest.raises(UserError, match="is not a W&B sweep id"):
        run_sweep(grid, 1, str(tmp_path / "x"), wandb_sweep="a/b")
    assert not (tmp_path / "x").exists()
    configs = []
    for run_id in set(os.listdir(out)) - {"sweep_id", "wandb_sweep"}:
        saved = yaml.safe_load(open(out / run_id / "config.yaml"))
        assert saved["out"] == str(out / run_id) and saved["wandb"] == "offline"
        offline = [d for d in os.listdir(out / run_id / "wandb") if d.startswith("offline-run")]
        assert offline and offline[0].endswith(run_id)  # the W&B run has the same id
        configs.append((saved["filter"]["name"], saved["seed"]))
    assert len(set(configs)) == 3
    # bayes: the engine proposes from the earlier runs' metric
    bayes = osp.join(REPO, "experiments", "sweeps", "gaussian_search.yaml")
    # (W&B disabled here: the grid above already checks the offline runs)
    proc = run_here(
        "sweep",
        bayes,
        "--count",
        "2",
        "--wandb",
        "disabled",
        "--out",
        tmp_path / "bayes",
        *_tiny_extra(),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(": val_mae ") == 2


def test_sweep_bad_file_is_one_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: sideways\nparameters: {lr: {values: [1]}}\ncommand: [x]\n")
    assert_one_line_error(cli("sweep", bad), "sweep file")


def test_out_template_run_id_keeps_sweep_runs_apart(monkeypatch):
    from pyg_schnet.run.config import load_config

    monkeypatch.setenv("WANDB_RUN_ID", "abc123")
    assert load_config(None, {"out": "runs/{filter}_{run_id}"}).out == "runs/gaussian_abc123"
    monkeypatch.delenv("WANDB_RUN_ID")
    a = load_config(None, {"out": "runs/{run_id}"}).out
    b = load_config(None, {"out": "runs/{run_id}"}).out
    assert a != b  # same config, same second: different directories


@pytest.mark.parametrize("cpus", [1, 2, 16, 128])
def test_default_processes_fit_any_machine(monkeypatch, cpus):
    """The defaults never fail and never split a batch below 25 molecules or
    over more than 8 processes, however many CPUs the process may use."""
    import os

    from pyg_schnet.run import distributed

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)))
    monkeypatch.setattr(distributed, "_cgroup_cpu_quota", lambda: None)
    quick = load_config("quickstart")  # batch 50
    assert quick.resolved_processes() == min(cpus, 2)
    plain = load_config(None, {})  # batch 100
    assert plain.resolved_processes() == min(cpus, 4)
    big = load_config(None, {"batch_size": 1000})
    assert big.resolved_processes() == min(cpus, 8)
    assert load_config(None, {"device": "cuda"}).resolved_processes() == 1


def test_usable_cpus_follow_affinity_and_the_cgroup_quota(monkeypatch):
    """taskset -c 0 on a large node, or a container quota of 1.5 CPUs: one."""
    import os

    from pyg_schnet.run import distributed

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(distributed, "_cgroup_cpu_quota", lambda: None)
    assert distributed.usable_cpus() == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    monkeypatch.setattr(distributed, "_cgroup_cpu_quota", lambda: 1.5)
    assert distributed.usable_cpus() == 1


def test_a_run_without_test_molecules_writes_valid_metrics_and_cannot_be_exported(tmp_path):
    run, proc = train_tiny(tmp_path, epochs=1, test_size=0)
    m = json.loads((run / "metrics.json").read_text())  # strict JSON: no bare NaN
    assert m["test_mae"] is None and m["num_test"] == 0
    assert "no test molecules" in proc.stdout + proc.stderr
    assert_one_line_error(run_here("evaluate", run), "test split of")  # not "MAE nan"
    assert_one_line_error(
        run_here("export", run, "--name", "x", "--to", tmp_path / "m"), "no test MAE"
    )
    assert not (tmp_path / "m" / "x").exists()


@pytest.mark.slow
def test_more_processes_than_training_molecules_is_an_error(tmp_path):
    """Two processes and one training molecule (a fraction: 0.004 of 300): an
    error, not an exit 0 without a step, printed once although both processes
    find it (a count is refused before they start: test_bad_inputs)."""
    cfg = write_config(tmp_path / "c.yaml", out=str(tmp_path / "r"), train_size=0.004, processes=2)
    proc = cli("train", "--config", cfg, "--quiet")
    assert proc.returncode == 2, proc.stderr
    assert_one_line_error(proc, "1 training molecule(s) cannot be shared by 2 processes")
    assert not (tmp_path / "r" / "metrics.json").exists()


def test_a_line_per_epoch_when_stderr_is_not_a_terminal(tmp_path):
    """Batch jobs (output to a file) see every epoch; --quiet silences them."""
    cfg = write_config(tmp_path / "c.yaml", out=str(tmp_path / "r"), epochs=3)
    proc = run_here("train", "--config", cfg)  # stderr captured: not a terminal
    assert proc.returncode == 0, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.startswith("epoch ")]
    assert [x.split(":")[0] for x in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert "val MAE" in lines[0] and "molecules/s" in lines[0] and "min left" in lines[0]
    cfg = write_config(tmp_path / "q.yaml", out=str(tmp_path / "q"), epochs=2)
    quiet = run_here("train", "--config", cfg, "--quiet")
    assert not [x for x in quiet.stderr.splitlines() if x.startswith("epoch ")]


@pytest.mark.parametrize(
    "overrides, train_pairs, eval_pairs",
    [
        ({}, True, True),
        ({"filter": "coords", "rotation_augmentation": True}, False, True),
        ({"model": "painn"}, False, False),
    ],
)
def test_the_trainer_finds_pairs_once_for_a_model_that_takes_them(
    tmp_path, overrides, train_pairs, eval_pairs
):
    settings = dict(TINY, out=str(tmp_path / "run"), **overrides)
    if "model" in overrides:  # the filter's settings are SchNet's
        for key in ("filter", "num_filters", "num_gaussians", "num_bins"):
            settings.pop(key)
    cfg = load_config(None, settings)
    os.makedirs(cfg.out)
    t = Trainer(cfg, RunDir(cfg.out), quiet=True)
    assert (t.pairs is not None) == eval_pairs
    if eval_pairs:  # at the model's own cutoff, for every molecule it evaluates
        assert t.pairs.cutoff == t.model.cutoff == cfg.cutoff
        assert all(b.pairs is not None for b in t.val_loader)
        assert all(b.pairs is not None for b in t._loader(t.split.test_idx))
    assert all((b.pairs is not None) == train_pairs for b in t.train_loader)
