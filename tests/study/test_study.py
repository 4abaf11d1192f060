"""The study runner: spec parsing (bad specs: one clear error), the quick
factor study from another directory, its report against the runs' own files,
skip / resume / refusal, ``--jobs 2``, and the paired statistics against a
hand-computed case."""

import csv
import json
import math
import os
import os.path as osp
import re
import time

import pytest
import yaml

from conftest import REPO, SAMPLE_ARGS, SAMPLE_ROOT, SAMPLE_SOURCE
from helpers import assert_one_line_error, cli, run_here
from pyg_schnet.version import code_version

FACTORS = osp.join(REPO, "experiments", "studies", "factors.yaml")
VARIANTS = ("gaussian", "distance", "gaussian_q0.1", "conv1d", "coords", "coords_rot")
TARGETS = ("U0", "gap")


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _json(path):
    with open(path) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The factor study's quick mode, run from a directory outside the repository."""
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    out = elsewhere / "factors_quick"
    t0 = time.perf_counter()
    proc = run_here("study", "run", FACTORS, "--quick", "--out", out, *SAMPLE_ARGS, cwd=elsewhere)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, proc, time.perf_counter() - t0


def test_quick_factor_study_runs_from_elsewhere(quick):
    out, proc, seconds = quick
    assert seconds < 120, f"--quick took {seconds:.0f} s"
    assert "24 runs (0 finished, 24 to train)" in proc.stdout
    for name in (
        "report.md",
        "runs.csv",
        "cells.csv",
        "paired.csv",
        "slopes.csv",
        "sittings.csv",
        "val_curves_U0_n200.png",
        "val_curves_gap_n200.png",
        "contrasts_U0.png",  # the spec's contrasts with their intervals
        "contrasts_gap.png",
    ):
        assert osp.isfile(out / name), name
    with open(out / "val_curves_U0_n200.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_report_tables_trace_to_run_directories(quick):
    out, _, _ = quick
    runs = _csv(out / "runs.csv")
    assert len(runs) == len(VARIANTS) * len(TARGETS) * 2
    for r in runs:
        d = out / r["run_dir"]
        m = _json(d / "metrics.json")
        sym = _json(d / "symmetry.json")
        cfg = yaml.safe_load(open(d / "config.yaml"))
        assert cfg["target"] == r["target"] and cfg["seed"] == int(r["seed"])
        assert float(r["test_mae"]) == pytest.approx(m["test_mae_meV"], rel=1e-9)
        assert float(r["rot_test_mae"]) == pytest.approx(sym["rot_test_mae"] * 1000, rel=1e-9)
        assert sym["test_mae"] == pytest.approx(m["test_mae"], rel=1e-4)  # same model, same set
        assert int(r["epochs"]) == m["epochs"] == 3 and r["stop_reason"] == "epochs"
        assert osp.isfile(d / "model.pt") == (r["seed"] == "0")  # keep_weights: [0]
    # the splits: same seed, same split for every variant; test set 100, val 50
    by_seed = {}
    for r in runs:
        import numpy as np

        with np.load(out / r["run_dir"] / "split.npz") as f:
            key = tuple(f["test_idx"][:5]) + tuple(f["train_idx"][:5])
            assert len(f["test_idx"]) == 100 and len(f["val_idx"]) == 50
            assert len(f["train_idx"]) == 200
        by_seed.setdefault(r["seed"], set()).add(key)
    assert all(len(v) == 1 for v in by_seed.values()) and len(by_seed) == 2
    cells = _csv(out / "cells.csv")
    md = open(out / "report.md").read()
    # the code that trained them, as each run recorded it (the same checkout here)
    assert {r["code"] for r in runs} == {code_version()}
    assert f"Code that finished the runs: {code_version()} ({len(runs)} runs)." in md
    for c in cells:
        maes = [
            float(r["test_mae"])
            for r in runs
            if (r["target"], r["variant"]) == (c["target"], c["variant"])
        ]
        assert float(c["test_mae_mean"]) == pytest.approx(sum(maes) / 2, rel=1e-9)
        assert float(c["test_mae_std"]) == pytest.approx(
            abs(maes[0] - maes[1]) / math.sqrt(2), rel=1e-9
        )
        assert f"| {c['target']} | 200 | {c['variant']} | 2 |" in md
    paired = _csv(out / "paired.csv")
    assert len(paired) == (len(VARIANTS) - 1) * len(TARGETS)
    for p in paired:
        d = [
            float(v["test_mae"]) - float(g["test_mae"])
            for v in runs
            for g in runs
            if v["target"] == g["target"] == p["target"]
            and v["seed"] == g["seed"]
            and v["variant"] == p["variant"]
            and g["variant"] == "gaussian"
        ]
        assert float(p["diff_mean"]) == pytest.approx(sum(d) / 2, rel=1e-9)
    # the spec's contrasts: each a variant against the variant it changes, paired per seed
    contrasts = _csv(out / "contrasts.csv")
    spec = yaml.safe_load(open(FACTORS))
    assert {(c["contrast"], c["target"]) for c in contrasts} == {
        (name, t) for name in spec["contrasts"] for t in TARGETS
    }
    for c in contrasts:
        variant, baseline = spec["contrasts"][c["contrast"]]
        assert (c["variant"], c["reference"]) == (variant, baseline)
        d = [
            float(v["test_mae"]) - float(b["test_mae"])
            for v in runs
            for b in runs
            if v["target"] == b["target"] == c["target"]
            and v["seed"] == b["seed"]
            and v["variant"] == variant
            and b["variant"] == baseline
        ]
        assert len(d) == 2 and float(c["diff_mean"]) == pytest.approx(sum(d) / 2, rel=1e-9)
        assert f"| {c['contrast']} | {variant} − {baseline} | 2 |" in md
    for r in runs:
        assert f"]({r['run_dir']}/log.csv)" in md
    # rotation: radial variants are invariant, coords is not
    for r in runs:
        if r["variant"].startswith("coords"):
            assert float(r["rot_change"]) > 1e-3
        else:
            assert float(r["rot_rel"]) < 1e-3


def test_rerun_skips_finished_runs(quick):
    out, _, _ = quick
    watched = [
        osp.join(out, r["run_dir"], f)
        for r in _csv(out / "runs.csv")
        for f in ("metrics.json", "best.pt", "log.csv", "symmetry.json")
    ]
    watched += [
        osp.join(out, r["run_dir"], "model.pt") for r in _csv(out / "runs.csv") if r["seed"] == "0"
    ]
    before = {p: os.stat(p).st_mtime_ns for p in watched}
    proc = run_here("study", "run", FACTORS, "--quick", "--out", out, *SAMPLE_ARGS)
    assert proc.returncode == 0, proc.stderr
    assert "(24 finished, 0 to train)" in proc.stdout
    assert {p: os.stat(p).st_mtime_ns for p in watched} == before
    report = run_here("study", "report", FACTORS, "--quick", "--out", out)
    assert report.returncode == 0, report.stderr
    assert "report.md" in report.stdout


def test_other_settings_in_the_same_folder_are_refused(quick, tmp_path):
    out, _, _ = quick
    spec = yaml.safe_load(open(FACTORS))
    spec["quick"]["epochs"] = 2
    path = tmp_path / "factors.yaml"
    yaml.safe_dump(spec, open(path, "w"))
    before = open(out / "report.md").read()
    proc = run_here("study", "run", path, "--quick", "--out", out, *SAMPLE_ARGS)
    assert_one_line_error(proc, "holds a run with other settings (epochs")
    assert open(out / "report.md").read() == before


def _tiny_spec(path, **extra):
    spec = dict(
        name="tiny",
        base=dict(
            hidden_channels=16,
            num_filters=16,
            num_interactions=2,
            cutoff=4.0,
            num_gaussians=12,
            batch_size=25,
            epochs=4,
            patience=4,
            lr=2e-3,
            fast=False,  # no compile step in each training process
        ),
        variants={"gaussian": {}, "conv1d": {"filter": "conv1d", "num_bins": 12}},
        targets=["gap"],
        seeds=2,
        train_sizes=[250],
        val_size=50,
        test_size=50,
    )
    spec.update(extra)
    with open(path, "w") as f:
        yaml.safe_dump(spec, f, sort_keys=False)
    return path


@pytest.mark.slow
def test_interrupted_run_resumes_from_last_checkpoint(tmp_path):
    spec = _tiny_spec(tmp_path / "s.yaml", seeds=[0], variants={"gaussian": {}})
    out = tmp_path / "out"
    # 10 batches per epoch: killed (SIGKILL) in the middle of epoch 2
    killed = cli(
        "study", "run", spec, "--out", out, *SAMPLE_ARGS, extra_env={"PYG_SCHNET_FAULT": "batch:15"}
    )
    assert killed.returncode != 0
    run = out / "runs" / "gap" / "gaussian" / "n250_seed0"
    assert osp.isfile(run / "last.pt") and not osp.exists(run / "metrics.json")
    assert len(_csv(run / "log.csv")) == 1
    proc = run_here("study", "run", spec, "--out", out, *SAMPLE_ARGS)
    assert proc.returncode == 0, proc.stderr
    assert "(0 finished, 1 to train)" in proc.stdout
    assert [int(r["epoch"]) for r in _csv(run / "log.csv")] == [1, 2, 3, 4]
    # the resumed run equals an uninterrupted one
    fresh = run_here("study", "run", spec, "--out", tmp_path / "fresh", *SAMPLE_ARGS)
    assert fresh.returncode == 0, fresh.stderr
    a = _json(run / "metrics.json")
    b = _json(tmp_path / "fresh" / "runs" / "gap" / "gaussian" / "n250_seed0" / "metrics.json")
    assert a["test_mae"] == pytest.approx(b["test_mae"], rel=1e-6)
    assert len(_csv(tmp_path / "out" / "sittings.csv")) == 1  # the killed sitting trained nothing


def test_two_jobs_train_runs_in_parallel(tmp_path):
    spec = _tiny_spec(tmp_path / "s.yaml")
    out = tmp_path / "out"
    proc = cli("study", "run", spec, "--out", out, *SAMPLE_ARGS, "--jobs", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = _csv(out / "runs.csv")
    assert len(runs) == 4
    for r in runs:
        cfg = yaml.safe_load(open(out / r["run_dir"] / "config.yaml"))
        assert cfg["num_threads"] == 1
    sittings = _csv(out / "sittings.csv")
    assert sittings[-1]["jobs"] == "2" and sittings[-1]["runs_trained"] == "4"


# -- the spec parser ----------------------------------------------------------------------

BAD_SPECS = [
    (dict(variants={}), "variants must be a non-empty mapping"),
    (dict(colour="blue"), "unknown key(s) colour; valid keys"),
    (dict(targets=["U0", "energy"]), "unknown target 'energy'"),
    (dict(seeds=0), "seeds must be whole numbers >= 1"),
    (dict(seeds=[0, 0]), "seeds must hold distinct values"),
    (dict(train_sizes=[100, -5]), "train_sizes must be a list of whole numbers >= 1"),
    (dict(reference="sinc"), "reference 'sinc' is not a variant"),
    (dict(variants={"a": {"filter": "sinc"}}), "variant a: unknown filter 'sinc'"),
    (dict(variants={"a": {"batch_size": 0}}), "variant a: batch_size must be at least 1"),
    (dict(variants={"a": {"num_gausians": 5}}), "variant a: unknown config key 'num_gausians'"),
    (dict(variants={"a": {"seed": 3}}), "variant a sets seed, which the study sets per run"),
    (dict(variants={"a/b": {}}), "cannot name a folder"),
    (dict(base="missing.yaml"), "missing.yaml does not exist"),
    (dict(size_overrides={250: {"epochs": "many"}}), "epochs must be a number"),
    (dict(contrasts=[["a", "b"]]), "contrasts must map names to [variant, baseline] pairs"),
    (dict(contrasts={"x": ["gaussian"]}), "contrast 'x' must be [variant, baseline]"),
    (dict(contrasts={"x": ["gaussian", "gaussian"]}), "contrast 'x' must be [variant, baseline]"),
    (dict(contrasts={"x": ["sinc", "gaussian"]}), "contrast 'x': 'sinc' is not a variant"),
]


@pytest.mark.parametrize("change,match", BAD_SPECS, ids=[m for _, m in BAD_SPECS])
def test_bad_spec_is_one_clear_error(tmp_path, change, match):
    from pyg_schnet.errors import UserError
    from pyg_schnet.study import load_spec

    path = _tiny_spec(tmp_path / "s.yaml", **change)
    with pytest.raises(UserError, match=re.escape(match)):
        load_spec(str(path), root=SAMPLE_ROOT, source=SAMPLE_SOURCE)


def test_bad_spec_on_the_command_line(tmp_path):
    path = _tiny_spec(tmp_path / "s.yaml", targets=["energy"])
    proc = run_here("study", "run", path, "--out", tmp_path / "x", *SAMPLE_ARGS)
    assert_one_line_error(proc, "unknown target 'energy'")
    assert not osp.exists(tmp_path / "x")
    for args in (
        ["study"],
        ["study", "walk", path],
        ["study", "run", tmp_path / "nope.yaml"],
        ["study", "run", path, "--jobs", "0"],
    ):
        assert_one_line_error(run_here(*args))


def test_relative_paths_are_relative_to_the_spec(tmp_path):
    from pyg_schnet.study import load_spec, plan

    (tmp_path / "sub").mkdir()
    base = tmp_path / "base.yaml"
    yaml.safe_dump(dict(hidden_channels=8, root="data/q"), open(base, "w"))
    path = _tiny_spec(tmp_path / "sub" / "s.yaml", base="../base.yaml", out="../res")
    spec = load_spec(str(path))
    assert spec.out == str(tmp_path / "res")
    cfg = plan(spec)[0].cfg
    assert cfg.root == str(tmp_path / "data" / "q") and cfg.hidden_channels == 8
    assert cfg.out == str(tmp_path / "res" / "runs" / "gap" / "gaussian" / "n250_seed0")


# -- statistics -----------------------------------------------------------------------------


def test_paired_difference_hand_computed():
    from pyg_schnet.study import paired_difference

    p = paired_difference({0: 10.0, 1: 12.0, 2: 11.0, 5: 99.0}, {0: 9.0, 1: 9.0, 2: 10.0})
    # differences 1, 3, 1: mean 5/3, sample std sqrt(4/3), t(0.975, 2) = 4.303
    assert p["n"] == 3 and p["seeds"] == [0, 1, 2]
    assert p["diff_mean"] == pytest.approx(5 / 3)
    assert p["diff_std"] == pytest.approx(math.sqrt(4 / 3))
    half = 4.303 * math.sqrt(4 / 3) / math.sqrt(3)
    assert p["ci_low"] == pytest.approx(5 / 3 - half)
    assert p["ci_high"] == pytest.approx(5 / 3 + half)
    assert p["agree"] == 3
    assert p["ratio"] == pytest.approx(11 / (28 / 3))
    q = paired_difference({0: 1.0, 1: 5.0}, {0: 2.0, 1: 2.0})  # -1, +3: mean +1, one agrees
    assert q["agree"] == 1 and q["ci_low"] < 0 < q["ci_high"]


def test_t_quantiles_and_slope():
    from pyg_schnet.study import loglog_slope, t_quantile_975

    assert t_quantile_975(2) == pytest.approx(4.303)
    assert t_quantile_975(30) == pytest.approx(2.042)
    assert t_quantile_975(60) == pytest.approx(2.000, abs=0.002)
    slope, se = loglog_slope([1000, 10000, 100000], [100.0, 50.0, 25.0])
    assert slope == pytest.approx(math.log10(0.5)) and se == pytest.approx(0.0, abs=1e-12)
    slope, se = loglog_slope([1, 2, 4, 8], [1.0, 0.8, 0.5, 0.45])
    assert slope < 0 and se > 0


def test_runs_with_the_same_settings_are_reused(tmp_path):
    """A second study that lists the first under ``reuse`` copies the runs whose
    settings (and split) equal its own, and trains only the rest."""
    first = _tiny_spec(tmp_path / "a.yaml", seeds=[0], variants={"gaussian": {}})
    assert run_here("study", "run", first, "--out", tmp_path / "a", *SAMPLE_ARGS).returncode == 0
    second = _tiny_spec(
        tmp_path / "b.yaml",
        seeds=[0],
        reuse=["a"],
        variants={"g": {}, "wide": {"num_gaussians": 20}},
    )
    proc = run_here("study", "run", second, "--out", tmp_path / "b", *SAMPLE_ARGS)
    assert proc.returncode == 0, proc.stderr
    assert "copied 1 finished runs" in proc.stdout and "(1 finished, 1 to train)" in proc.stdout
    copied = tmp_path / "b" / "runs" / "gap" / "g" / "n250_seed0"
    donor = tmp_path / "a" / "runs" / "gap" / "gaussian" / "n250_seed0"
    assert open(copied / "reused_from").read().strip() == osp.relpath(donor, copied)
    assert _json(copied / "metrics.json") == _json(donor / "metrics.json")
    assert not osp.exists(tmp_path / "b" / "runs" / "gap" / "wide" / "n250_seed0" / "reused_from")
    assert "1 runs with identical settings were copied" in open(tmp_path / "b" / "report.md").read()


def test_a_run_held_by_another_process_is_left_to_it(tmp_path):
    """While another process (another sitting) holds one run's directory, a
    study trains the others, leaves that one to its holder (not a failure:
    exit 0), does not touch its directory and does not write a report that
    would miss it; a later re-run trains only that one and writes the report."""
    from pyg_schnet.run.rundir import RunDir

    spec = _tiny_spec(tmp_path / "s.yaml", seeds=[0])
    out = tmp_path / "out"
    held = out / "runs" / "gap" / "conv1d" / "n250_seed0"
    with RunDir(str(held)).lock():
        proc = cli("study", "run", spec, "--out", out, *SAMPLE_ARGS)
        assert proc.returncode == 0, proc.stderr
        assert "left to another sitting: gap conv1d n=250 seed 0: " in proc.stdout
        assert "is in use by pid" in proc.stdout
        assert "1 run(s) still training in another sitting" in proc.stdout
        assert os.listdir(held) == [".lock"]
        assert not osp.exists(out / "report.md")
    assert osp.isfile(out / "runs" / "gap" / "gaussian" / "n250_seed0" / "metrics.json")
    (sitting,) = _csv(out / "sittings.csv")
    assert (sitting["runs_trained"], sitting["runs_failed"]) == ("1", "0")
    again = run_here("study", "run", spec, "--out", out, *SAMPLE_ARGS)
    assert again.returncode == 0, again.stderr
    assert "(1 finished, 1 to train)" in again.stdout
    assert osp.isfile(held / "metrics.json") and osp.isfile(out / "report.md")


def test_a_sitting_whose_runs_all_fail_in_workers_keeps_its_start(tmp_path):
    """Runs that fail in worker processes still date the sitting: its row in
    ``sittings.csv`` has a start and the failures, not an empty start."""
    spec = _tiny_spec(tmp_path / "s.yaml", seeds=[0])
    out = tmp_path / "out"
    # each worker's first checkpoint write fails as on a full disk
    proc = cli(
        "study",
        "run",
        spec,
        "--out",
        out,
        *SAMPLE_ARGS,
        "--jobs",
        "2",
        extra_env={"PYG_SCHNET_FAULT": "enospc:1"},
    )
    assert_one_line_error(proc, "2 run(s) failed")
    assert proc.stdout.count("cannot write checkpoint") == 2
    (sitting,) = _csv(out / "sittings.csv")
    assert sitting["runs_failed"] == "2" and sitting["runs_trained"] == "0"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", sitting["started"])
    assert float(sitting["wall_seconds"]) >= 0  # two runs refused at once: about 0 s


@pytest.mark.slow
def test_two_overlapping_studies_share_the_runs_safely(tmp_path):
    """Two ``study run --jobs 2`` of one spec at once: each run is trained by
    one of them (the other skips it when finished, or leaves it to the first
    while held), no directory mixes the two, and every run equals a run
    trained alone."""
    from helpers import popen

    spec = _tiny_spec(tmp_path / "s.yaml", seeds=[0])
    out = tmp_path / "out"
    procs = [
        popen("study", "run", spec, "--out", out, *SAMPLE_ARGS, "--jobs", "2") for _ in range(2)
    ]
    results = [p.communicate(timeout=600) + (p.returncode,) for p in procs]
    for stdout, stderr, code in results:
        assert code == 0, stderr
        assert "Traceback" not in stderr and "failed" not in stdout + stderr
    assert osp.isfile(out / "report.md")  # written by the sitting that ended last
    fresh = run_here("study", "run", spec, "--out", tmp_path / "fresh", *SAMPLE_ARGS)
    assert fresh.returncode == 0, fresh.stderr
    for variant in ("gaussian", "conv1d"):
        rel = osp.join("runs", "gap", variant, "n250_seed0")
        assert [int(r["epoch"]) for r in _csv(out / rel / "log.csv")] == [1, 2, 3, 4]
        a, b = _json(out / rel / "metrics.json"), _json(tmp_path / "fresh" / rel / "metrics.json")
        assert a["test_mae"] == pytest.approx(b["test_mae"], rel=1e-6)
    again = run_here("study", "run", spec, "--out", out, *SAMPLE_ARGS)
    assert again.returncode == 0 and "(2 finished, 0 to train)" in again.stdout


def test_several_specs_run_as_a_queue(tmp_path):
    """``study run A B`` checks both specs before training anything, then runs
    their runs as one queue: with two jobs, B's run starts beside A's last one
    instead of waiting for it; ``--out`` needs a single spec."""
    tiny = dict(
        hidden_channels=8,
        num_filters=8,
        num_interactions=1,
        cutoff=4.0,
        num_gaussians=8,
        batch_size=50,
        fast=False,
    )
    first = _tiny_spec(
        tmp_path / "a.yaml",
        name="a",
        seeds=[0],
        variants={"gaussian": {}},
        base=dict(tiny, epochs=40, patience=40),
    )
    bad = _tiny_spec(tmp_path / "bad.yaml", targets=["energy"])
    proc = run_here("study", "run", first, bad, *SAMPLE_ARGS)
    assert_one_line_error(proc, "unknown target 'energy'")
    assert not (tmp_path / "a").exists()  # nothing trained before the bad spec was found
    assert_one_line_error(
        run_here("study", "run", first, first, "--out", tmp_path / "x"),
        "--out names one study's folder; 2 specs were given",
    )
    second = _tiny_spec(
        tmp_path / "b.yaml",
        name="b",
        seeds=[0],
        variants={"conv1d": {"filter": "conv1d", "num_bins": 8}},
        base=dict(tiny, epochs=1, patience=1),
    )
    proc = cli("study", "run", first, second, *SAMPLE_ARGS, "--jobs", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # b's one-epoch run ran beside a's 40 epochs, so b's study ended (and was reported) first
    out = proc.stdout
    assert out.index("study b: trained 1 runs") < out.index("study a: trained 1 runs")
    for name in ("a", "b"):  # each study's wall time: from its run's start to its end
        (sitting,) = _csv(tmp_path / name / "sittings.csv")
        assert sitting["started"] and float(sitting["wall_seconds"]) > 0
    for name, variant in (("a", "gaussian"), ("b", "conv1d")):
        assert (
            tmp_path / name / "runs" / "gap" / variant / "n250_seed0" / "metrics.json"
        ).is_file()
        assert (tmp_path / name / "report.md").is_file()
    assert proc.stdout.index("study a:") < proc.stdout.index("study b:")


def test_overlapping_invocations_count_their_wall_time_once():
    """Two ``study run`` at once (one per core) are one sitting in the report's
    wall time; a later one is another; an undated row counts on its own."""
    from pyg_schnet.study.report import wall_time

    rows = [
        dict(started="2026-11-28T10:00:00", wall_seconds="3600"),
        dict(started="2026-11-28T10:30:00", wall_seconds="3600"),  # to 11:30: +1,800 s
        dict(started="2026-11-28T10:40:00", wall_seconds="600"),  # inside: +0
        dict(started="2026-11-28T14:00:00", wall_seconds="100"),
        dict(started="", wall_seconds="50"),
    ]
    assert wall_time(rows) == (pytest.approx(3600 + 1800 + 100 + 50), 3)
    assert wall_time([]) == (0.0, 0)


def test_concurrent_invocations_keep_each_others_sittings_rows(tmp_path):
    """Two ``study run`` of one study at once each rewrite ``sittings.csv``
    after every finished run; neither drops the other's row."""
    from pyg_schnet.study.runner import _Sitting

    (tmp_path / "sittings.csv").write_text(
        "started,wall_seconds,runs_trained,runs_failed,jobs,command\n"
        "2026-11-27T09:00:00,100.0,1,0,1,old\n"
    )
    a, b = _Sitting(str(tmp_path), 2, "first"), _Sitting(str(tmp_path), 1, "second")
    a.started(time.time() - 60)
    b.started(time.time() - 30)
    a.update(1, 0)
    b.update(1, 0)
    a.update(2, 1)  # a rewrites its row after b wrote its own
    b.update(3, 0)
    rows = _csv(tmp_path / "sittings.csv")
    assert [r["command"] for r in rows] == ["old", "first", "second"]
    assert [(r["runs_trained"], r["runs_failed"]) for r in rows] == [
        ("1", "0"),
        ("2", "1"),
        ("3", "0"),
    ]
    assert float(rows[1]["wall_seconds"]) >= 60 and rows[2]["jobs"] == "1"


@pytest.mark.slow
def test_every_committed_run_equals_its_plan():
    """The committed specs still plan exactly the runs they hold: a change of
    config schema, defaults or spec form that would retrain them fails here."""
    import glob

    from conftest import REPO
    from pyg_schnet.run.rundir import RunDir
    from pyg_schnet.study.spec import load_spec, plan

    checked = 0
    for path in sorted(glob.glob(osp.join(REPO, "experiments", "studies", "*.yaml"))):
        for r in plan(load_spec(path)):
            rd = RunDir(r.cfg.out)
            if rd.has("config.yaml"):
                assert not rd.differences(r.cfg), (path, r.rel, rd.differences(r.cfg))
                checked += 1
    assert checked >= 182


def test_a_variant_can_train_its_own_seeds_and_targets(tmp_path):
    """More seeds where a finding rests on a variant, another target where a
    reading may differ: a variant's ``seeds`` and ``targets`` keys (not config
    keys) change only its runs, the report pairs what both sides trained, and
    ``--quick`` leaves the choice to its own section."""
    from pyg_schnet.errors import UserError
    from pyg_schnet.study import load_spec, paired
    from pyg_schnet.study.spec import plan

    variants = {
        "gaussian": {"seeds": 3, "targets": ["U0", "gap"]},
        "conv1d": {"filter": "conv1d", "num_bins": 12, "targets": ["gap"]},
        "distance": {"filter": "distance", "seeds": [1]},
    }
    path = _tiny_spec(tmp_path / "s.yaml", targets=["U0"], seeds=1, variants=variants)
    spec = load_spec(str(path))
    runs = [(r.seed, r.target, r.variant) for r in plan(spec)]
    assert runs == [
        (0, "U0", "gaussian"),
        (0, "gap", "gaussian"),
        (0, "gap", "conv1d"),
        (1, "U0", "gaussian"),
        (1, "U0", "distance"),
        (1, "gap", "gaussian"),
        (2, "U0", "gaussian"),
        (2, "gap", "gaussian"),
    ]
    assert spec.targets == ["U0", "gap"] and "seeds" not in spec.variants["gaussian"]
    # pairs only where both trained: distance has seed 1 on U0; conv1d seed 0 on gap
    rows = [
        dict(target=t, size=250, variant=v, seed=s, test_mae=1.0 + s, unit="meV")
        for s, t, v in runs
    ]
    got = {(p["target"], p["variant"], p["seeds"]) for p in paired(spec, rows)}
    assert got == {("U0", "distance", "1"), ("gap", "conv1d", "0")}
    quick = _tiny_spec(
        tmp_path / "q.yaml",
        targets=["U0"],
        seeds=1,
        variants=variants,
        quick={"seeds": 1, "targets": ["U0"], "train_sizes": [100]},
    )
    assert [(r.seed, r.target, r.variant) for r in plan(load_spec(str(quick), quick=True))] == [
        (0, "U0", "gaussian"),
        (0, "U0", "conv1d"),
        (0, "U0", "distance"),
    ]
    for bad, message in [
        ({"targets": "gap"}, "variant a targets must be a list of targets"),
        ({"targets": ["nope"]}, "nope"),
        ({"seeds": 0}, "variant a seeds must be whole numbers >= 1"),
    ]:
        _tiny_spec(tmp_path / "b.yaml", variants={"a": bad})
        with pytest.raises(UserError, match=message):
            load_spec(str(tmp_path / "b.yaml"))


def test_contrast_plot_draws_every_contrast_with_its_intervals(tmp_path):
    """One row per contrast: a mean with its 95% and Holm intervals, or a
    lone point for one seed (NaN intervals), and the margin's band."""
    import math

    from pyg_schnet.study import load_spec
    from pyg_schnet.study.figures import contrast_plot

    spec = load_spec(str(_tiny_spec(tmp_path / "s.yaml", equivalence_margins={"gap": 8.0})))
    spec.out = str(tmp_path / "out")
    (tmp_path / "out").mkdir()  # write_report makes it
    nan = math.nan
    rows = [
        dict(target="gap", size=250, contrast="a", unit="meV", n=3, diff_mean=2.0, ci_low=-1.0,
             ci_high=5.0, holm_low=-3.0, holm_high=7.0, equivalent=True),
        dict(target="gap", size=250, contrast="b", unit="meV", n=1, diff_mean=-150.0,
             ci_low=nan, ci_high=nan, holm_low=nan, holm_high=nan, equivalent=False),
    ]  # fmt: skip
    path = contrast_plot(spec, "gap", rows)
    assert path == "contrasts_gap.png"  # in the study's folder, linked from its report
    with open(tmp_path / "out" / path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert contrast_plot(spec, "U0", rows) is None  # no contrast of that target


def test_a_target_named_twice_is_refused(tmp_path):
    """targets [U0, u0] are one target: training it twice would double every row."""
    from pyg_schnet.errors import UserError
    from pyg_schnet.study import load_spec

    spec = yaml.safe_load(open(_tiny_spec(tmp_path / "s.yaml")))
    spec["targets"] = ["U0", "u0"]
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(UserError, match="targets name U0 more than once"):
        load_spec(str(tmp_path / "t.yaml"))


@pytest.mark.parametrize(
    "margins, error",
    [
        ({"U0": 3.0, "gap": 8}, None),
        ({"U0": 0}, "equivalence margin of U0 must be a positive meV"),
        ({"U0": "3 meV"}, "equivalence margin of U0 must be a positive meV"),
        ({"nope": 1.0}, "nope"),
        ([3.0], "equivalence_margins must map targets to meV"),
    ],
)
def test_equivalence_margins_are_read_before_any_run(tmp_path, margins, error):
    """A spec fixes its equivalence margins (meV per target) before its runs;
    a margin for a target the spec does not train yet is allowed."""
    from pyg_schnet.errors import UserError
    from pyg_schnet.study import load_spec

    spec = yaml.safe_load(open(_tiny_spec(tmp_path / "s.yaml")))
    spec["equivalence_margins"] = margins
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(spec))
    if error is None:
        assert load_spec(str(tmp_path / "t.yaml")).equivalence_margins == {"U0": 3.0, "gap": 8.0}
    else:
        with pytest.raises(UserError, match=error):
            load_spec(str(tmp_path / "t.yaml"))


@pytest.mark.slow
def test_workers_die_with_a_killed_study(tmp_path):
    """``study run --jobs 2`` killed with SIGKILL: its two worker processes
    stop too (they would otherwise train on with no one to record their
    runs), and a re-run resumes the runs."""
    import signal

    import psutil

    from helpers import popen

    spec = yaml.safe_load(open(_tiny_spec(tmp_path / "t.yaml", seeds=[0])))
    spec["base"].update(epochs=1000, patience=1000, time_budget=120)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    spec = tmp_path / "s.yaml"
    out = tmp_path / "out"
    proc = popen("study", "run", spec, "--out", out, *SAMPLE_ARGS, "--jobs", "2")
    runs = [out / "runs" / "gap" / v / "n250_seed0" / "log.csv" for v in ("gaussian", "conv1d")]
    deadline = time.time() + 300
    while not all(osp.isfile(r) for r in runs):  # both workers are training
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.5)
    workers = psutil.Process(proc.pid).children(recursive=True)
    assert len([w for w in workers if "spawn_main" in " ".join(w.cmdline())]) == 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    gone, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, [w.cmdline() for w in alive]


def test_a_run_slower_than_its_variants_fastest_is_marked_slow():
    from pyg_schnet.study.report import SLOW_SHARE, relative_speed

    def row(variant, seed, speed, size=100):
        return dict(target="U0", variant=variant, size=size, seed=seed, molecules_per_second=speed)

    rows = [row("a", 0, 1000.0), row("a", 1, 720.0), row("b", 0, 300.0), row("a", 0, 500.0, 200)]
    speeds = relative_speed(rows)
    assert speeds == [1.0, 0.72, 1.0, 1.0]  # per variant, target and size
    assert [s < SLOW_SHARE for s in speeds] == [False, True, False, False]
