"""The training recipe (pyg_schnet.run.recipe): schedules that end annealed, the
weight average, and exact resume with each of them after a SIGKILL."""

import csv
import json
import math
import os.path as osp

import pytest
import torch

from helpers import assert_one_line_error, cli, run_here, train_tiny, write_config
from pyg_schnet.nn.filters import FILTERS
from pyg_schnet.run.recipe import (
    SCHEDULES,
    CosineSchedule,
    ExponentialMovingAverage,
    PlateauSchedule,
    Progress,
)


def _opt(lr=1e-3):
    return torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=lr)


def _log(run):
    with open(osp.join(run, "log.csv")) as f:
        return list(csv.DictReader(f))


# -- the components ------------------------------------------------------------------


def test_cosine_warms_up_peaks_and_ends_at_the_floor():
    s = CosineSchedule(
        _opt(), lr=1e-3, min_lr=1e-5, horizon="steps", length=1000, steps_per_epoch=10, warmup=0.1
    )
    assert s.lr_at(0.05) == pytest.approx(0.5e-3)  # half-way through the warmup
    assert s.lr_at(0.1) == pytest.approx(1e-3)  # the peak
    assert s.lr_at(0.55) == pytest.approx(1e-5 + (1e-3 - 1e-5) / 2)  # the cosine's middle
    assert s.lr_at(1.0) == pytest.approx(1e-5)  # the floor
    lrs = [s.lr_at(f / 100) for f in range(10, 101)]
    assert all(b <= a for a, b in zip(lrs, lrs[1:], strict=False))  # monotone after warmup


@pytest.mark.parametrize(
    "horizon,length,progress,fraction",
    [
        ("steps", 200, Progress(epochs=3, steps=50, seconds=7.0), 0.25),
        ("epochs", 4, Progress(epochs=1, steps=20, seconds=7.0), 0.5),  # 10 steps per epoch
        ("seconds", 28, Progress(epochs=1, steps=20, seconds=7.0), 0.25),
    ],
)
def test_cosine_horizon_units(horizon, length, progress, fraction):
    s = CosineSchedule(_opt(), 1e-3, 0.0, horizon, length, steps_per_epoch=10)
    assert s.fraction(progress) == pytest.approx(fraction)
    s.before_step(progress)
    assert s.current == pytest.approx(s.lr_at(fraction))


def test_plateau_is_reduce_on_plateau():
    s = PlateauSchedule(_opt(), 1e-3, 1e-6, factor=0.5, patience=0, max_decays=2)
    assert not s.after_epoch(1.0)  # the first epoch is the best so far
    assert s.after_epoch(2.0) and s.current == pytest.approx(5e-4)
    assert not s.completed(Progress(), 1) and s.completed(Progress(), 2)


def test_ema_follows_with_its_decay_and_restores_exactly():
    model = torch.nn.Linear(3, 1)
    ema = ExponentialMovingAverage(model, decay=0.9)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)  # step 1: decay min(0.9, 2/11)
    d = 2 / 11
    assert torch.allclose(ema.module.weight, d * start + (1 - d) * model.weight)
    assert not ema.module.weight.requires_grad
    other = ExponentialMovingAverage(torch.nn.Linear(3, 1), decay=0.9)
    other.load_state_dict(ema.state_dict())
    assert torch.equal(other.module.weight, ema.module.weight) and other.updates == 1


def test_ema_averages_every_parameter_and_copies_every_buffer():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    ema = ExponentialMovingAverage(model, decay=0.5)
    expected = [p.detach().clone() for p in model.parameters()]
    for step in range(1, 4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model.train()(torch.randn(5, 3))  # moves the batch norm's running statistics
        ema.update(model)
        d = min(0.5, (1 + step) / (10 + step))
        expected = [
            d * e + (1 - d) * p.detach() for e, p in zip(expected, model.parameters(), strict=True)
        ]
    for avg, e in zip(ema.module.parameters(), expected, strict=True):
        assert torch.allclose(avg, e, atol=1e-6)
    for avg_b, b in zip(ema.module.buffers(), model.buffers(), strict=True):
        assert torch.equal(avg_b, b)
    assert ema.updates == 3


def test_every_schedule_is_registered_and_checked_in_the_config():
    from pyg_schnet.run.config import load_config

    assert set(SCHEDULES) == {"plateau", "cosine"}
    with pytest.raises(Exception, match="choose one of: plateau, cosine"):
        load_config(None, {"schedule": "linear"})
    with pytest.raises(Exception, match="time_budget must be set"):
        load_config(None, {"schedule": "cosine", "horizon": "seconds"})
    with pytest.raises(Exception, match="max_steps must be set"):
        load_config(None, {"schedule": "cosine", "horizon": "steps"})
    with pytest.raises(Exception, match="ema_decay"):
        load_config(None, {"ema_decay": 1.0})


def test_the_default_is_the_recipe_studys_choice():
    """docs/recipe.md: cosine over the run's horizon with the weight average
    (0.999) won or tied on U0 and the gap; no early stop cuts it short."""
    from pyg_schnet.run.config import load_config

    cfg = load_config(None)
    assert (cfg.schedule, cfg.horizon, cfg.warmup, cfg.ema_decay, cfg.patience) == (
        "cosine",
        "epochs",
        0.02,
        0.999,
        None,
    )


def test_saved_runs_without_recipe_keys_keep_their_recipe(tmp_path):
    """A config.yaml written before the recipe keys existed trained with the
    plateau rule and no average, whatever today's default is."""
    import yaml

    from pyg_schnet.run.config import SAVED_RUN_DEFAULTS, load_run_config

    p = tmp_path / "config.yaml"
    p.write_text(yaml.safe_dump({"target": "gap", "lr": 1e-3}))
    cfg = load_run_config(str(p))
    assert {k: getattr(cfg, k) for k in SAVED_RUN_DEFAULTS} == {
        "schedule": "plateau",
        "horizon": "epochs",
        "warmup": 0.02,
        "max_steps": None,
        "ema_decay": None,
    }
    p.write_text(yaml.safe_dump({"schedule": "cosine", "ema_decay": 0.99}))
    cfg = load_run_config(str(p))
    assert (cfg.schedule, cfg.ema_decay) == ("cosine", 0.99)


# -- runs ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FILTERS))
def test_a_cosine_run_ends_annealed_whatever_the_filter(tmp_path, name):
    run, proc = train_tiny(
        tmp_path, filter=name, schedule="cosine", warmup=0.1, epochs=3, patience=3, min_lr=1e-5
    )
    m = json.load(open(run / "metrics.json"))
    assert m["schedule_completed"] is True and m["stop_reason"] == "epochs"
    assert m["final_lr"] == pytest.approx(1e-5)
    assert m["steps"] == 3 * math.ceil(200 / 25)
    lrs = [float(r["lr"]) for r in _log(run)]  # the rate at each epoch's end
    assert lrs[0] > lrs[1] > lrs[2] > 1e-5
    assert "cosine over 3 epochs" in m["schedule"]


def test_a_step_horizon_ends_the_run_mid_epoch_at_the_floor(tmp_path):
    run, proc = train_tiny(
        tmp_path, schedule="cosine", horizon="steps", max_steps=12, epochs=10, min_lr=0.0
    )
    m = json.load(open(run / "metrics.json"))
    assert (m["steps"], m["epochs"], m["stop_reason"]) == (12, 2, "max steps")
    assert m["schedule_completed"] is True and m["final_lr"] == 0.0


def test_a_seconds_horizon_ends_annealed(tmp_path):
    run, proc = train_tiny(
        tmp_path,
        schedule="cosine",
        horizon="seconds",
        time_budget=2,
        epochs=1000,
        patience=1000,
        min_lr=1e-6,
    )
    m = json.load(open(run / "metrics.json"))
    assert m["stop_reason"] == "time budget" and m["schedule_completed"] is True
    assert m["final_lr"] == pytest.approx(1e-6)
    assert "schedule: cosine over 2 s" in proc.stderr or m["schedule"].startswith("cosine")


def test_the_weight_average_is_what_is_validated_saved_and_evaluated(tmp_path):
    run, _ = train_tiny(tmp_path, ema_decay=0.9, epochs=3)
    m = json.load(open(run / "metrics.json"))
    assert m["ema_decay"] == 0.9
    best = torch.load(run / "best.pt", weights_only=True)
    last = torch.load(run / "last.pt", weights_only=True)
    assert "ema" in last and "ema" not in best
    key = next(k for k in best["model"] if k.endswith("weight"))
    assert not torch.equal(last["model"][key], last["ema"]["model"][key])
    if best["state"]["epoch"] == last["state"]["epoch"]:  # the last epoch was the best
        assert torch.equal(best["model"][key], last["ema"]["model"][key])
    proc = run_here("evaluate", run)
    assert proc.returncode == 0, proc.stderr
    assert f"{m['test_mae']:.6g}"[:5] in proc.stdout + proc.stderr


RECIPES = {
    "cosine": dict(schedule="cosine", warmup=0.1, min_lr=1e-5, ema_decay=None),
    "cosine_ema": dict(schedule="cosine", warmup=0.1, min_lr=1e-5, ema_decay=0.95),
    "plateau": dict(schedule="plateau", ema_decay=None, lr_patience=0),
    "plateau_ema": dict(schedule="plateau", ema_decay=0.95, lr_patience=0),
}
COMMON = dict(epochs=4, max_molecules=300, patience=10)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", list(RECIPES))
def test_kill_mid_schedule_and_resume_exactly(tmp_path, recipe):
    """Killed in the third epoch (mid-schedule, the average part-way), resumed:
    the same validation curve and test MAE as an uninterrupted run."""
    settings = dict(COMMON, **RECIPES[recipe])
    ref = write_config(tmp_path / "ref.yaml", out=str(tmp_path / "ref"), **settings)
    assert run_here("train", "--config", ref, "--quiet").returncode == 0
    cfg = write_config(tmp_path / "k.yaml", out=str(tmp_path / "k"), **settings)
    proc = cli("train", "--config", cfg, "--quiet", extra_env={"PYG_SCHNET_FAULT": "batch:19"})
    assert proc.returncode == -9, proc.stderr
    proc = cli("train", "--resume", tmp_path / "k", "--quiet")
    assert proc.returncode == 0, proc.stderr
    a = json.load(open(tmp_path / "ref" / "metrics.json"))
    b = json.load(open(tmp_path / "k" / "metrics.json"))
    for key in ("test_mae", "best_val_mae", "best_epoch", "steps", "final_lr"):
        assert a[key] == b[key], key
    assert _log(tmp_path / "ref") and [r["val_mae"] for r in _log(tmp_path / "ref")] == [
        r["val_mae"] for r in _log(tmp_path / "k")
    ]
    assert [r["lr"] for r in _log(tmp_path / "ref")] == [r["lr"] for r in _log(tmp_path / "k")]


def test_resume_refuses_a_checkpoint_without_the_average_it_needs(tmp_path):
    run, _ = train_tiny(tmp_path, epochs=1, ema_decay=None)
    (run / "metrics.json").unlink()
    cfg = (run / "config.yaml").read_text().replace("ema_decay: null", "ema_decay: 0.9")
    (run / "config.yaml").write_text(cfg)
    # the edited config.yaml is refused before the missing average is looked for
    assert_one_line_error(run_here("train", "--resume", run), "trained with (ema_decay)")
