"""Issue 29, part 6: how W&B files runs. A study's runs by study and
variant; ``early_terminate`` is refused; a sweep ends with its best run. (A
sweep's runs, named, grouped and tagged by the sweep, are read back from
their offline record streams in tests/run/test_trainer.py, which runs a
local sweep offline anyway.)"""

import json
import os
import os.path as osp

import pytest
import yaml

from conftest import REPO
from helpers import TINY, assert_one_line_error, run_here, write_config


def test_a_study_run_is_filed_by_study_and_variant(tmp_path):
    """A study's runs were all named ``nSIZE_seedN`` and ungrouped. Now they
    are grouped by the study, typed by variant, tagged with target and size,
    unless the spec's base or variant says otherwise."""
    from pyg_schnet.study.spec import load_spec, plan

    spec = dict(
        name="tiny",
        base={k: v for k, v in TINY.items() if k not in ("target", "seed", "train_size")},
        variants={"a": {}, "b": {"wandb_group": "mine", "wandb_tags": ["x"]}},
        targets=["gap"],
        seeds=[0],
        train_sizes=[100],
        val_size=50,
        test_size=50,
    )
    for key in ("val_size", "test_size"):
        spec["base"].pop(key)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    a, b = plan(load_spec(str(tmp_path / "s.yaml")))
    assert (a.cfg.wandb_group, a.cfg.wandb_job_type) == ("tiny", "a")
    assert (a.cfg.wandb_name, a.cfg.wandb_tags) == ("a-gap-n100-seed0", ["gap", "n100"])
    assert (b.cfg.wandb_group, b.cfg.wandb_tags, b.cfg.wandb_job_type) == ("mine", ["x"], "b")


def test_wandb_keys_do_not_change_the_experiment(tmp_path):
    """The new keys are read from flags and files and do not make a saved run
    "other settings" (committed runs without them still equal their plans)."""
    from pyg_schnet.run.config import load_config
    from pyg_schnet.run.rundir import config_differences

    cfg = load_config(None, {"wandb_tags": "a, b", "wandb_group": "g", "wandb_entity": "me"})
    assert cfg.wandb_tags == ["a", "b"]
    assert config_differences(cfg, load_config(None, {})) == []
    bad = write_config(tmp_path / "c.yaml", wandb_tags=["x" * 65])
    assert_one_line_error(run_here("train", "--config", bad), "W&B tag has 1 to 64 characters")


def test_early_terminate_is_refused_and_no_shipped_sweep_uses_it(tmp_path):
    """``early_terminate`` (hyperband) was silently ignored by the local
    sweep. It is refused with one line; the shipped sweep files do not use it."""
    from pyg_schnet.study.sweep import read_sweep

    sweeps = osp.join(REPO, "experiments", "sweeps")
    for name in os.listdir(sweeps):
        assert "early_terminate" not in read_sweep(osp.join(sweeps, name))
    spec = yaml.safe_load(open(osp.join(sweeps, "gaussian_search.yaml")))
    spec["early_terminate"] = {"type": "hyperband", "min_iter": 3}
    (tmp_path / "h.yaml").write_text(yaml.safe_dump(spec))
    proc = run_here("sweep", tmp_path / "h.yaml", "--out", tmp_path / "out")
    assert_one_line_error(proc, "early_terminate (hyperband) is not supported here")
    assert not osp.exists(tmp_path / "out")


@pytest.mark.parametrize("goal,best", [("minimize", "low"), ("maximize", "high")])
def test_best_run_summary_follows_the_goal(tmp_path, goal, best):
    from pyg_schnet.study.sweep import best_run_summary

    runs = {}
    for run_id, mae in (("low", 1.0), ("high", 3.0), ("none", None)):
        (tmp_path / run_id).mkdir()
        if mae is not None:
            (tmp_path / run_id / "metrics.json").write_text(json.dumps({"best_val_mae": mae}))
        runs[run_id] = {"seed": {"value": len(runs)}}
    spec = {"metric": {"name": "val_mae", "goal": goal}}
    line = best_run_summary(spec, str(tmp_path), runs)
    assert f"2 of 3 run(s) finished): {best} val_mae " in line
    assert line.endswith(f"{runs[best]['seed']['value']}}} in {tmp_path / best}")
