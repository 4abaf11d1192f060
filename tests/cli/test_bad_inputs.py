"""Bad inputs through every subcommand: exit non-zero, one clear ``error:`` line
on stderr, no traceback, and no file that existed before changed."""

import csv
import os
import shutil

import numpy as np
import pytest
import torch

from helpers import assert_one_line_error, cli, run_here, snapshot, train_tiny, write_config


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A workspace with a finished tiny run and assorted bad files."""
    d = tmp_path_factory.mktemp("bad")
    train_tiny(d, epochs=1)
    shutil.copy(d / "cfg.yaml", d / "good.yaml")
    files = {
        "malformed.yaml": "filter: [gaussian\nlr: 0.1\n",
        "list.yaml": "- a\n- b\n",
        "empty.xyz": "",
        "garbage.xyz": "this is not\nan xyz file\n",
        "unknown_el.xyz": "2\n\nXx 0 0 0\nH 0 0 1\n",
        "uranium.xyz": "2\n\nU 0 0 0\nH 0 0 2\n",
        "nan.xyz": "2\n\nC 0 0 nan\nH 0 0 1\n",
        "inf.xyz": "2\n\nC 0 0 inf\nH 0 0 1\n",
        "overlap.xyz": "3\n\nC 0 0 0\nH 0 0 0\nH 0 0 1.1\n",
        "single.xyz": "1\n\nC 0 0 0\n",
        "zero_atoms.xyz": "0\nempty\n",
        "short.xyz": "5\n\nC 0 0 0\n",
        "molecule.txt": "C 0 0 0\n",
        "garbage.sdf": "not an sdf\n$$$$\n",
        "uranium.sdf": (
            "U\n     test\n\n  2  0  0  0  0  0  0  0  0  0999 V2000\n"
            "    0.0000    0.0000    0.0000 U   0  0  0  0  0  0  0  0  0  0  0  0\n"
            "    0.0000    0.0000    2.0000 H   0  0  0  0  0  0  0  0  0  0  0  0\n"
            "M  END\n$$$$\n"
        ),
    }
    spec = (
        "base: {hidden_channels: 8}\nvariants: {a: {filter: %s}}\ntargets: [%s]\n"
        "seeds: 1\ntrain_sizes: [10]\nval_size: 5\ntest_size: 5\n"
    )
    files.update(
        {
            "spec_sinc.yaml": spec % ("sinc", "U0"),
            "spec_energy.yaml": spec % ("gaussian", "energy"),
            "spec_ok.yaml": spec % ("gaussian", "U0"),
        }
    )
    # 10**9 values once its aliases are expanded: refused at once, not after a minute
    files["bomb.yaml"] = (
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n"
            for i in range(8)
        )
        + "lr: *i\n"
    )
    files["twice.yaml"] = "method: grid\nmethod: random\n"
    for name, text in files.items():
        (d / name).write_text(text)
    (d / "latin1.yaml").write_bytes(b"filter: gau\xdfian\n")
    (d / "latin1.xyz").write_bytes(b"2\n\xff\xfe\nC 0 0 0\nH 0 0 1\n")
    (d / "adir.xyz").mkdir()
    (d / "adir.yaml").mkdir()
    unreadable = d / "unreadable.yaml"
    unreadable.write_text("filter: gaussian\n")
    unreadable.chmod(0)
    np.savez(
        d / "split_other.npz",
        train_idx=np.arange(10),
        val_idx=np.arange(10, 20),
        test_idx=np.arange(20, 30),
        num_molecules=np.int64(999),
    )
    np.savez(
        d / "split_range.npz",
        train_idx=np.arange(10),
        val_idx=np.array([10**6]),
        test_idx=np.arange(20, 30),
    )
    # a run directory from an incompatible version
    old = d / "oldrun"
    shutil.copytree(d / "run", old)
    ck = torch.load(old / "best.pt", weights_only=True)
    ck["run_format"] = 0
    torch.save(ck, old / "best.pt")
    torch.save(ck, old / "last.pt")
    (d / "norun").mkdir()
    (d / "truncated").mkdir()
    shutil.copy(d / "run" / "config.yaml", d / "truncated" / "config.yaml")
    (d / "truncated" / "best.pt").write_bytes(b"PK\x03\x04 torn")
    return d


def C(ws, **kw):
    """A config file with overrides, written fresh for one case."""
    name = "cfg_" + "_".join(f"{k}" for k in kw) + ".yaml"
    return write_config(ws / name, out=str(ws / ("out_" + name)), **kw)


CASES = [
    # (id, argv builder, expected fragment of the error line)
    ("train-missing-config", lambda w: ["train", "--config", w / "nope.yaml"], "does not exist"),
    (
        "train-malformed-yaml",
        lambda w: ["train", "--config", w / "malformed.yaml"],
        "not valid YAML",
    ),
    ("train-yaml-not-mapping", lambda w: ["train", "--config", w / "list.yaml"], "mapping"),
    ("train-config-dir", lambda w: ["train", "--config", w / "adir.yaml"], "directory"),
    ("train-config-non-utf8", lambda w: ["train", "--config", w / "latin1.yaml"], "UTF-8"),
    (
        "train-unknown-key",
        lambda w: ["train", "--config", w / "good.yaml", "--colour=red"],
        "valid keys",
    ),
    (
        "train-config-without-flag",
        lambda w: ["train", w / "good.yaml"],
        "a config file is given as --config",
    ),
    ("train-stray-word", lambda w: ["train", "--lr", "0.1", "0.2"], "unexpected argument '0.2'"),
    (
        "train-unknown-filter",
        lambda w: ["train", "--config", C(w, filter="sinc")],
        "choose one of: gaussian",
    ),
    ("train-negative-cutoff", lambda w: ["train", "--config", C(w, cutoff=-1.0)], "cutoff"),
    ("train-zero-batch", lambda w: ["train", "--config", C(w, batch_size=0)], "batch_size"),
    (
        "train-zero-interactions",
        lambda w: ["train", "--config", C(w, num_interactions=0)],
        "num_interactions",
    ),
    ("train-wrong-type", lambda w: ["train", "--config", C(w, lr="fast")], "lr must be a number"),
    ("train-float-for-int", lambda w: ["train", "--config", C(w, epochs=2.5)], "integer"),
    ("train-bad-target", lambda w: ["train", "--config", C(w, target="energy")], "unknown target"),
    ("train-bad-source", lambda w: ["train", "--config", C(w, source="web")], "unknown source"),
    ("train-bad-wandb", lambda w: ["train", "--config", C(w, wandb="maybe")], "wandb"),
    (
        "train-split-other-size",
        lambda w: ["train", "--config", C(w, split_file=str(w / "split_other.npz"))],
        "made for 999",
    ),
    (
        "train-split-out-of-range",
        lambda w: ["train", "--config", C(w, split_file=str(w / "split_range.npz"))],
        "outside",
    ),
    (
        "train-split-missing",
        lambda w: ["train", "--config", C(w, split_file=str(w / "x.npz"))],
        "split file",
    ),
    (
        "train-flag-no-value",
        lambda w: ["train", "--config", w / "good.yaml", "--lr"],
        "--lr: expected one argument",
    ),
    (
        "train-root-is-file",
        lambda w: ["train", "--config", C(w, root=str(w / "good.yaml"))],
        "is a file",
    ),
    ("train-finished-run", lambda w: ["train", "--config", w / "good.yaml"], "--overwrite"),
    ("train-resume-no-ckpt", lambda w: ["train", "--resume", w / "norun"], "no checkpoint"),
    ("train-resume-missing", lambda w: ["train", "--resume", w / "nothere"], "does not exist"),
    ("train-resume-finished", lambda w: ["train", "--resume", w / "run"], "finished"),
    ("train-resume-old-version", lambda w: ["train", "--resume", w / "oldrun"], "incompatible"),
    ("train-no-args", lambda w: ["train"], "needs --config"),
    ("data-bad-source", lambda w: ["data", "--root", w / "d", "--source", "web"], "unknown"),
    ("data-root-is-file", lambda w: ["data", "--root", w / "good.yaml"], "is a file"),
    ("data-bad-flag", lambda w: ["data", "--colour", "red"], "unrecognized"),
    ("evaluate-missing", lambda w: ["evaluate", w / "nothere"], "does not exist"),
    ("evaluate-not-run", lambda w: ["evaluate", w / "norun"], "not a run directory"),
    ("evaluate-old-version", lambda w: ["evaluate", w / "oldrun"], "incompatible"),
    ("evaluate-torn-checkpoint", lambda w: ["evaluate", w / "truncated"], "unreadable"),
    ("evaluate-bad-split", lambda w: ["evaluate", w / "run", "--split", "dev"], "invalid choice"),
    ("predict-empty-file", lambda w: ["predict", w / "run", w / "empty.xyz"], "empty"),
    ("predict-garbage-xyz", lambda w: ["predict", w / "run", w / "garbage.xyz"], "atom count"),
    (
        "predict-unknown-element",
        lambda w: ["predict", w / "run", w / "unknown_el.xyz"],
        "unknown element",
    ),
    ("predict-non-qm9-element", lambda w: ["predict", w / "run", w / "uranium.xyz"], "not in QM9"),
    ("predict-nan", lambda w: ["predict", w / "run", w / "nan.xyz"], "NaN"),
    ("predict-inf", lambda w: ["predict", w / "run", w / "inf.xyz"], "infinite"),
    ("predict-overlap", lambda w: ["predict", w / "run", w / "overlap.xyz"], "on top of"),
    ("predict-single-atom", lambda w: ["predict", w / "run", w / "single.xyz"], "single atom"),
    ("predict-empty-molecule", lambda w: ["predict", w / "run", w / "zero_atoms.xyz"], "no atoms"),
    ("predict-short-xyz", lambda w: ["predict", w / "run", w / "short.xyz"], "expected 5"),
    ("predict-missing-file", lambda w: ["predict", w / "run", w / "nope.xyz"], "does not exist"),
    ("predict-dir", lambda w: ["predict", w / "run", w / "adir.xyz"], "directory"),
    ("predict-non-utf8", lambda w: ["predict", w / "run", w / "latin1.xyz"], "UTF-8"),
    ("predict-unknown-type", lambda w: ["predict", w / "run", w / "molecule.txt"], "file type"),
    ("predict-garbage-sdf", lambda w: ["predict", w / "run", w / "garbage.sdf"], "sdf"),
    ("predict-sdf-uranium", lambda w: ["predict", w / "run", w / "uranium.sdf"], "not in QM9"),
    ("predict-bad-smiles", lambda w: ["predict", w / "run", "--smiles", "C1CC(("], "SMILES"),
    ("predict-nothing", lambda w: ["predict", w / "run"], "no molecules"),
    (
        "predict-output-exists",
        lambda w: ["predict", w / "run", "--smiles", "C", "--output", w / "good.yaml"],
        "pass --overwrite",
    ),
    ("predict-no-run", lambda w: ["predict", w / "norun", "--smiles", "C"], "not a run"),
    (
        "predict-bad-device",
        lambda w: ["predict", w / "run", "--smiles", "C", "--device", "tpu"],
        "device must be cpu or cuda",
    ),
    ("unknown-command", lambda w: ["fly"], "unknown command"),
    (
        "study-unknown-variant-filter",
        lambda w: ["study", "run", w / "spec_sinc.yaml", "--out", w / "st"],
        "variant a: unknown filter",
    ),
    (
        "study-unknown-target",
        lambda w: ["study", "run", w / "spec_energy.yaml", "--out", w / "st"],
        "energy",
    ),
    (
        "study-missing-spec",
        lambda w: ["study", "run", w / "nospec.yaml", "--out", w / "st"],
        "study spec",
    ),
    ("study-malformed-spec", lambda w: ["study", "report", w / "malformed.yaml"], "not valid YAML"),
    (
        "study-zero-jobs",
        lambda w: ["study", "run", w / "spec_ok.yaml", "--jobs", "0", "--out", w / "st"],
        "--jobs",
    ),
    ("study-no-action", lambda w: ["study"], "required"),
    (
        "benchmark-zero-batch",
        lambda w: ["benchmark", "--skip-build", "--batch-size", "0"],
        "batch-size",
    ),
    (
        "benchmark-negative-cutoff",
        lambda w: ["benchmark", "--skip-build", "--cutoff", "-1"],
        "cutoff",
    ),
    ("benchmark-no-gpu", lambda w: ["benchmark", "--skip-build", "--device", "cuda"], "cuda"),
    ("benchmark-bad-number", lambda w: ["benchmark", "--batches", "many"], "expected an integer"),
    (
        "benchmark-unknown-model",
        lambda w: ["benchmark", "--skip-build", "--models", "schnet,transformer"],
        "unknown model 'transformer'",
    ),
    (
        "benchmark-unknown-filter",
        lambda w: ["benchmark", "--skip-build", "--models", "schnet", "--filter", "cubic"],
        "unknown filter 'cubic'",
    ),
    (
        "benchmark-filter-without-models",
        lambda w: ["benchmark", "--skip-build", "--filter", "coords"],
        "add --models",
    ),
    ("train-unknown-model", lambda w: ["train", "--model", "gpt"], "unknown model 'gpt'; choose"),
    # every YAML read from a user: size and alias limits, no key twice (issue 30)
    ("train-alias-bomb", lambda w: ["train", "--config", w / "bomb.yaml"], "100,000 values"),
    ("train-dev-zero", lambda w: ["train", "--config", "/dev/zero"], "larger than 1,048,576"),
    ("study-alias-bomb", lambda w: ["study", "run", w / "bomb.yaml"], "100,000 values"),
    ("study-dev-zero", lambda w: ["study", "report", "/dev/zero"], "larger than 1,048,576"),
    ("sweep-alias-bomb", lambda w: ["sweep", w / "bomb.yaml"], "100,000 values"),
    ("sweep-dev-zero", lambda w: ["sweep", "/dev/zero"], "larger than 1,048,576"),
    ("study-key-twice", lambda w: ["study", "report", w / "twice.yaml"], "sets 'method' twice"),
    ("sweep-key-twice", lambda w: ["sweep", w / "twice.yaml"], "sets 'method' twice"),
    (
        "train-processes-without-molecules",
        lambda w: ["train", "--config", C(w, train_size=1, processes=2)],
        "train_size (1) must be at least the number of processes (2)",
    ),
    ("filters-root-is-file", lambda w: ["filters", "--root", w / "good.yaml"], "is a file"),
]
if os.geteuid() != 0:  # root reads files whatever their mode
    CASES.append(
        (
            "train-unreadable-config",
            lambda w: ["train", "--config", w / "unreadable.yaml"],
            "not readable",
        )
    )


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(ws, case):
    _, build, match = case
    argv = build(ws)
    before = snapshot(str(ws))
    proc = run_here(*argv)  # in this process: no interpreter start-up per case
    assert_one_line_error(proc, match)
    after = snapshot(str(ws))
    changed = [p for p in before if before[p] != after.get(p)]
    assert not changed, f"files changed: {changed}"


# One case per subcommand through the real executable, to show the process
# exit code and stderr are what the in-process runs report (every case runs
# in process above; each executable start costs about 6 s of imports).
SUBPROCESS = [
    "study-unknown-target",
    "benchmark-zero-batch",
    "train-malformed-yaml",
    "data-root-is-file",
    "evaluate-torn-checkpoint",
    "predict-non-qm9-element",
    "unknown-command",
]


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c[0] in SUBPROCESS],
    ids=[c[0] for c in CASES if c[0] in SUBPROCESS],
)
def test_bad_input_subprocess(ws, case):
    _, build, match = case
    argv = build(ws)  # may write the case's config file: before the snapshot
    before = snapshot(str(ws))
    proc = cli(*argv, timeout=300)
    assert_one_line_error(proc, match)
    assert snapshot(str(ws)) == before


def test_overwrite_flag_replaces_finished_run(ws, tmp_path):
    out = tmp_path / "r"
    cfg = write_config(tmp_path / "c.yaml", out=str(out), epochs=1)
    assert run_here("train", "--config", cfg, "--quiet").returncode == 0
    proc = run_here("train", "--config", cfg, "--quiet")
    assert_one_line_error(proc, "already holds a finished run")
    proc = run_here("train", "--config", cfg, "--quiet", "--overwrite")
    assert proc.returncode == 0, proc.stderr


def test_read_only_run_dir_stops_with_clear_message(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    out = tmp_path / "ro"
    cfg = write_config(tmp_path / "c.yaml", out=str(out), epochs=1)
    out.mkdir()
    out.chmod(0o500)
    try:
        proc = cli("train", "--config", cfg, "--quiet")
        assert_one_line_error(proc, "not writable")
    finally:
        out.chmod(0o700)


@pytest.mark.parametrize("flag", ["--limit=0", "--limit=-9990", "--batch-size=-1"])
def test_evaluate_refuses_sizes_below_one(flag):
    assert_one_line_error(run_here("evaluate", "--model", "qm9-U0", flag), "at least 1")


def test_a_bad_molecule_loses_none_of_the_others(ws, tmp_path):
    """A chlorine atom in the middle of three molecules: the two good ones are
    predicted and written, the bad one's row says why, one error line, exit 2;
    --overwrite replaces the output, which is otherwise refused."""
    water = "3\nwater\nO 0.0 0.0 0.1173\nH 0.0 0.7572 -0.4692\nH 0.0 -0.7572 -0.4692\n"
    mixed = tmp_path / "mixed.xyz"
    mixed.write_text(water + "2\nhcl\nH 0 0 0\nCl 0 0 1.27\n" + water.replace("water", "w2"))
    out = tmp_path / "pred.csv"
    proc = run_here("predict", ws / "run", mixed, "-o", out)
    assert_one_line_error(proc, "1 of 3 molecule(s) not predicted: hcl: element(s)")
    rows = list(csv.DictReader(open(out)))
    assert [r["name"] for r in rows] == ["water", "hcl", "w2"]
    assert rows[0]["U0_eV"] and rows[2]["U0_eV"] and not rows[1]["U0_eV"]
    assert "not in QM9" in rows[1]["error"] and not rows[0]["error"]
    assert_one_line_error(run_here("predict", ws / "run", mixed, "-o", out), "--overwrite")
    again = run_here("predict", ws / "run", "--smiles", "CCO", "-o", out, "--overwrite")
    assert again.returncode == 0, again.stderr
    assert [r["name"] for r in csv.DictReader(open(out))] == ["CCO"]
