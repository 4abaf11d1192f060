"""The crash classes of issue 30, at least five fresh inputs each: every one is
one ``error:`` line and exit 2, and no file of the finished run beside them
changes (bad settings come with ``--overwrite`` of that run, so a check made
after the old run is removed would show)."""

import json
import os
import resource
import shutil
import subprocess
import sys

import pytest

from helpers import assert_one_line_error, env, run_here, snapshot, train_tiny, write_config


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A finished tiny run ``run`` (its config ``cfg.yaml``) and a file ``note.txt``."""
    d = tmp_path_factory.mktemp("crash")
    train_tiny(d, epochs=1)
    (d / "note.txt").write_text("not a folder\n")
    (d / "outdir").mkdir()
    (d / "exists.csv").write_text("kept\n")
    return d


@pytest.fixture(scope="module", autouse=True)
def run_files(ws):
    """The finished run's files as trained, before any case ran (autouse: taken
    before the first test of the module, whichever it is)."""
    return snapshot(ws / "run")


@pytest.fixture
def check(ws, run_files):
    """Assert one ``error:`` line (with ``match``), exit 2, and every file of
    the finished run as it was (a derived file such as model.pt may appear)."""

    def check(proc, match=None):
        assert proc.returncode == 2, proc.stderr
        assert_one_line_error(proc, match)
        after = snapshot(ws / "run")
        changed = [f for f, digest in run_files.items() if after.get(f) != digest]
        assert not changed, f"files of the finished run changed: {changed}"

    return check


def train_over(ws, *flags):
    """``train`` of the finished run's config into the run, ``--overwrite``, with flags."""
    return ["train", "--config", ws / "cfg.yaml", "--overwrite", "--quiet", *flags]


# -- values checked too late or not at all ----------------------------------------
VALUES = [
    ("out-attribute", ["--out", "{run}/x/{filter.name}"], "{filter.name} is not a key"),
    ("out-index", ["--out", "{run}/x/{seed[0]}"], "{seed[0]} is not a key"),
    ("out-positional", ["--out", "{run}/x/{}"], "is not a key"),
    ("out-newline", ["--out", "{run}/x\ny"], "control character"),
    ("seed-negative", ["--seed", "-3"], "seed must be"),
    ("seed-2**32", ["--seed", "4294967296"], "seed must be"),
    ("seed-huge", ["--seed", "123456789012345678901234567890"], "seed must be"),
    ("device-cpu-index", ["--device", "cpu:3"], "device must be"),
    ("device-cuda-word", ["--device", "cuda:first"], "device must be"),
    ("device-cuda-space", ["--device", "cuda 0"], "device must be"),
    ("device-cuda-99", ["--device", "cuda:99"], "cuda"),
    ("target-index-19", ["--target", "19"], "out of range"),
]


@pytest.mark.parametrize("case", VALUES, ids=[c[0] for c in VALUES])
def test_values_are_checked_before_anything_is_written(ws, check, case):
    _, flags, match = case
    flags = [f.replace("{run}", str(ws)) for f in flags]
    if "--out" not in flags:
        flags += ["--out", str(ws / "run")]  # an --overwrite of the finished run
    check(run_here(*train_over(ws, *flags)), match)
    assert not (ws / "x").exists()


def test_a_target_given_by_index_is_taken(tmp_path):
    """``--help`` says "name or index": ``--target 7`` is U0."""
    cfg = write_config(tmp_path / "c.yaml", out=str(tmp_path / "r"), epochs=1)
    proc = run_here("train", "--config", cfg, "--target", "7", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "target: U0" in (tmp_path / "r" / "config.yaml").read_text()


# -- outputs checked only after the work ------------------------------------------
OUTPUTS = [
    ("predict-missing-folder", ["predict", "{ws}/run", "--smiles", "C", "-o", "{ws}/no/x.csv"]),
    ("predict-folder", ["predict", "{ws}/run", "--smiles", "C", "-o", "{ws}/outdir"]),
    ("predict-under-a-file", ["predict", "{ws}/run", "--smiles", "C", "-o", "{ws}/note.txt/x"]),
    ("predict-exists", ["predict", "{ws}/run", "--smiles", "C", "-o", "{ws}/exists.csv"]),
    ("probes-missing-folder", ["probes", "{ws}/run", "--out", "{ws}/no/p.csv"]),
    ("probes-folder", ["probes", "{ws}/run", "--out", "{ws}/outdir"]),
    ("export-to-a-file", ["export", "{ws}/run", "--name", "m", "--to", "{ws}/note.txt"]),
]


@pytest.mark.parametrize("case", OUTPUTS, ids=[c[0] for c in OUTPUTS])
def test_outputs_are_checked_before_the_work(ws, check, case):
    _, argv = case
    proc = run_here(*[a.replace("{ws}", str(ws)) for a in argv])
    check(proc)
    assert proc.stdout == ""  # nothing computed, nothing printed
    assert (ws / "exists.csv").read_text() == "kept\n"


# -- negative or zero sizes in evaluation commands ---------------------------------
SIZES = [
    ["evaluate", "{ws}/run", "--batch-size", "0"],
    ["evaluate", "--model", "qm9-U0", "--limit", "-1"],
    ["probes", "{ws}/run", "--limit", "0"],
    ["probes", "{ws}/run", "--batch-size", "-250"],
    ["filters", "--batch-size", "0"],
    ["benchmark", "--skip-build", "--batches", "0"],
    ["benchmark", "--skip-build", "--warmup", "-1"],
    ["throughput", "--epochs", "0"],
    ["sweep", "{ws}/note.txt", "--count", "0"],
]


@pytest.mark.parametrize("argv", SIZES, ids=[" ".join(a[:1] + a[-2:]) for a in SIZES])
def test_sizes_below_their_least_value(ws, check, argv):
    check(run_here(*[a.replace("{ws}", str(ws)) for a in argv]), "must be at least")


# -- files where folders are expected ----------------------------------------------
FILES = [
    ["evaluate", "{ws}/note.txt"],
    ["predict", "{ws}/note.txt", "--smiles", "C"],
    ["probes", "{ws}/note.txt"],
    ["train", "--resume", "{ws}/note.txt"],
    ["train", "--config", "{ws}/cfg.yaml", "--out", "{ws}/note.txt", "--overwrite"],
    ["data", "--root", "{ws}/note.txt"],
    ["export", "{ws}/note.txt", "--name", "m", "--to", "{ws}/models"],
]


@pytest.mark.parametrize("argv", FILES, ids=[a[0] + str(i) for i, a in enumerate(FILES)])
def test_a_file_where_a_folder_belongs(ws, check, argv):
    check(run_here(*[a.replace("{ws}", str(ws)) for a in argv]))
    assert (ws / "note.txt").read_text() == "not a folder\n"
    assert not (ws / "models").exists()


# -- a data root on a full or read-only filesystem ---------------------------------
@pytest.fixture
def raw_root(tmp_path):
    """A data root holding the sample's raw files only (the build writes ~1 MB)."""
    from conftest import SAMPLE_ROOT

    shutil.copytree(os.path.join(SAMPLE_ROOT, "raw"), tmp_path / "root" / "raw")
    return tmp_path / "root"


@pytest.mark.parametrize(
    "argv",
    [
        ["data", "--root", "{root}", "--source", "pyg"],
        ["train", "--config", "{ws}/cfg.yaml", "--root", "{root}", "--out", "{ws}/full"],
        ["evaluate", "{ws}/run", "--root", "{root}"],
        ["train", "--config", "{ws}/cfg.yaml", "--out", "{copy}", "--overwrite", "--epochs", "2"],
        ["export", "{copy}", "--name", "m", "--to", "{ws}/models"],
    ],
    ids=["data", "train-data", "evaluate-data", "train-checkpoint", "export"],
)
def test_a_full_disk(ws, check, raw_root, tmp_path, argv):
    """``ulimit -f`` (what a full disk does to a write, as EFBIG): the limit is
    set on this process for the one command and lifted after. A run it would
    replace or export is a copy of the finished one, checked file by file."""
    copy = tmp_path / "copy"
    shutil.copytree(ws / "run", copy)
    before = snapshot(copy)
    argv = [
        a.replace("{ws}", str(ws)).replace("{root}", str(raw_root)).replace("{copy}", str(copy))
        for a in argv
    ]
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, hard))  # below a tiny checkpoint
    try:
        proc = run_here(*argv)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    check(proc)
    assert snapshot(copy) == before
    assert not list(raw_root.rglob("*.tmp*")), "a temporary file was left"


def _unshare_works():
    try:
        return subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0
    except OSError:
        return False


@pytest.mark.skipif(not _unshare_works(), reason="needs user namespaces (unshare -rm)")
@pytest.mark.parametrize("what", ["data", "train"])
def test_a_read_only_filesystem(ws, raw_root, what):
    """A root mounted read-only (as root, too: not a permission bit)."""
    argv = {
        "data": ["data", "--root", raw_root, "--source", "pyg"],
        "train": ["train", "--config", ws / "cfg.yaml", "--root", raw_root, "--out", ws / "ro"],
    }[what]
    script = (
        f'mount --bind "{raw_root}" "{raw_root}" && mount -o remount,ro,bind "{raw_root}" && '
        f'exec "$0" "$@"'
    )
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, sys.executable, "-m", "pyg_schnet.cli", *argv],
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert_one_line_error(proc, "not writable")
    assert sorted(p.name for p in raw_root.iterdir()) == ["raw"]


# -- settings and inputs that need more memory than exists -------------------------
MEMORY = [
    ["--fast", "true", "--filter.rbf_width", "1e-9"],
    ["--hidden_channels", "10000000"],
    ["--num_gaussians", "1000000000"],
    ["--filter", "conv1d", "--filter.num_bins", "10000000000"],
    ["--num_interactions", "100000000"],
    ["--num_filters", "100000000"],
]


@pytest.mark.parametrize("flags", MEMORY, ids=[" ".join(f) for f in MEMORY])
def test_settings_that_need_more_memory_than_exists(ws, check, flags):
    proc = run_here(*train_over(ws, "--out", str(ws / "run"), *flags))
    line = assert_one_line_error(proc, "of memory")
    assert "GB" in line or "TB" in line
    check(proc)


def test_a_molecule_too_large_for_the_distance_checks(ws, check, tmp_path):
    """5,000 atoms need ~0.8 GB for the pairwise checks: refused with the size
    when less is available (``PYG_SCHNET_MEMORY``), the other input predicted."""
    big = tmp_path / "big.xyz"
    lines = ["5000", "big"] + [f"C {i * 1.5:.1f} 0 0" for i in range(5000)]
    big.write_text("\n".join(lines) + "\n")
    out = tmp_path / "p.csv"
    proc = run_here(
        "predict", ws / "run", big, "--smiles", "CCO", "-o", out,
        extra_env={"PYG_SCHNET_MEMORY": "1e8"},
    )  # fmt: skip
    check(proc, "needs about 800.0 MB of memory")
    assert "CCO" in out.read_text()


# -- rdkit's C++ stack trace before the error line ---------------------------------
@pytest.mark.parametrize("symbol", ["Xq", "Qq", "E", "999", "0", "Hx"])
def test_an_unknown_element_is_one_line(ws, check, capfd, tmp_path, symbol):
    """rdkit prints its C++ trace on file descriptor 2, below Python's sys.stderr."""
    f = tmp_path / "m.xyz"
    f.write_text(f"2\n\n{symbol} 0 0 0\nH 0 0 1.1\n")
    proc = run_here("predict", ws / "run", f)
    check(proc, f"unknown element '{symbol}'")
    assert "Stacktrace" not in capfd.readouterr().err


@pytest.mark.parametrize("name", ["a\nb", "tab\there", "nul\x00x"])
def test_a_variant_name_with_a_control_character(tmp_path, name):
    spec = tmp_path / "s.yaml"
    spec.write_text(
        f"base: {{hidden_channels: 8}}\nvariants: {{{json.dumps(name)}: {{}}}}\ntargets: [U0]\n"
        "seeds: 1\n"
        "train_sizes: [10]\nval_size: 5\ntest_size: 5\n"
    )
    proc = run_here("study", "run", spec, "--out", tmp_path / "st")
    assert proc.returncode == 2
    assert_one_line_error(proc, "cannot name a folder")
    assert not (tmp_path / "st").exists()


# -- --resume on a last.pt that is not a training checkpoint -----------------------
def _not_a_checkpoint(run, kind):
    import torch

    last = run / "last.pt"
    if kind == "model-file":
        shutil.copy(run / "model.pt", last)
    elif kind == "empty":
        last.write_bytes(b"")
    elif kind == "text":
        last.write_text("epoch 3\n")
    elif kind == "list":
        torch.save([1, 2, 3], last)
    elif kind == "dict-without-optimizer":
        torch.save({"model": {}, "epoch": 2}, last)
    elif kind == "truncated":
        last.write_bytes(last.read_bytes()[:300])
    elif kind == "folder":
        last.unlink()
        last.mkdir()


@pytest.mark.parametrize(
    "kind",
    ["model-file", "empty", "text", "list", "dict-without-optimizer", "truncated", "folder"],
)
def test_resume_from_what_is_not_a_training_checkpoint(ws, tmp_path, kind):
    run = tmp_path / "run"
    shutil.copytree(ws / "run", run)
    (run / "metrics.json").unlink()
    if not (run / "model.pt").exists():
        assert run_here("export", ws / "run", "--name", "m", "--to", tmp_path / "m").returncode == 0
        shutil.copy(tmp_path / "m" / "m" / "model.pt", run / "model.pt")
    _not_a_checkpoint(run, kind)
    before = snapshot(run)
    proc = run_here("train", "--resume", run)
    assert proc.returncode == 2, proc.stderr
    assert_one_line_error(proc)
    assert snapshot(run) == before
