"""The package as users meet it: its version, its public API and that API's
reference page, where ``export`` writes and how ``--model NAME`` finds a
model, ``--device`` where a model runs, and the commands' flag names and help."""

import configparser
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import types

import pytest
import yaml

import pyg_schnet
from conftest import REPO
from helpers import assert_one_line_error, run_here, snapshot, train_tiny
from pyg_schnet.errors import UserError
from pyg_schnet.hub import WEIGHTS_DIR


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny finished run (300 molecules: ``max_molecules``), its folder, and
    the run exported as a model (by the library, into ``exported/tiny``)."""
    from pyg_schnet.hub import export_model

    where = tmp_path_factory.mktemp("package")
    run, _ = train_tiny(where, epochs=1)
    export_model(str(run), "tiny", str(where / "exported"))
    return where, run


def _code_version_of(copy: str) -> str:
    """``code_version()`` of the package file ``copy`` (a copy of version.py in
    a ``pyg_schnet`` folder), in a fresh process."""
    script = (
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('v', sys.argv[1])\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "print(m.code_version())"
    )
    proc = subprocess.run([sys.executable, "-c", script, copy], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_code_version_names_the_checkout_commit(tmp_path):
    """What a run records as its code: the version alone outside a checkout and
    for a copy that is not the checkout's own package folder (a virtual
    environment inside it); in a checkout, its commit, and ``.dirty`` once the
    package's files change."""
    source = osp.join(REPO, "pyg_schnet", "version.py")
    outside = tmp_path / "plain" / "pyg_schnet"
    outside.mkdir(parents=True)
    shutil.copy(source, outside / "version.py")
    assert _code_version_of(str(outside / "version.py")) == pyg_schnet.__version__
    repo = tmp_path / "checkout"
    (repo / "pyg_schnet").mkdir(parents=True)
    shutil.copy(source, repo / "pyg_schnet" / "version.py")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    for args in (["init", "-q"], ["add", "pyg_schnet"], ["commit", "-q", "-m", "v"]):
        subprocess.run(git + args, check=True, capture_output=True)
    commit = subprocess.run(
        git + ["rev-parse", "--short=12", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    copy = str(repo / "pyg_schnet" / "version.py")
    assert _code_version_of(copy) == f"{pyg_schnet.__version__}+g{commit}"
    installed = repo / ".venv" / "site-packages" / "pyg_schnet"
    installed.mkdir(parents=True)
    shutil.copy(source, installed / "version.py")
    assert _code_version_of(str(installed / "version.py")) == pyg_schnet.__version__
    with open(copy, "a") as f:
        f.write("# changed\n")
    assert _code_version_of(copy) == f"{pyg_schnet.__version__}+g{commit}.dirty"


def test_version_has_one_source():
    """``--version`` prints the package's version, which setup.cfg reads from
    pyg_schnet/version.py and CITATION.cff repeats."""
    proc = run_here("--version")
    assert proc.returncode == 0 and proc.stdout == f"pyg-schnet {pyg_schnet.__version__}\n"
    cfg = configparser.ConfigParser()
    cfg.read(osp.join(REPO, "setup.cfg"))
    assert cfg["metadata"]["version"] == "attr: pyg_schnet.version.__version__"
    with open(osp.join(REPO, "CITATION.cff")) as f:
        assert str(yaml.safe_load(f)["version"]) == pyg_schnet.__version__


def test_every_public_name_is_importable_and_in_the_api_page():
    """Each name of ``pyg_schnet.__all__`` resolves and is listed in
    docs/api.md, and the page lists no top-level name that is not public."""
    with open(osp.join(REPO, "docs", "api.md")) as f:
        page = f.read()
    listed = set(re.findall(r"`pyg_schnet\.(\w+)[`(]", page))
    modules = {n for n in listed if osp.exists(osp.join(REPO, "pyg_schnet", n))} | {
        n for n in listed if osp.isfile(osp.join(REPO, "pyg_schnet", n + ".py"))
    }
    assert listed - modules == set(pyg_schnet.__all__)
    for name in pyg_schnet.__all__:
        assert getattr(pyg_schnet, name) is not None, name
    assert pyg_schnet.QM9.__module__ == "pyg_schnet.data.qm9"
    leaked = {
        n
        for n, v in vars(pyg_schnet).items()
        if not n.startswith("_") and not isinstance(v, types.ModuleType)
    }
    assert leaked <= set(pyg_schnet.__all__), leaked  # no helper names such as Any or Dict
    with pytest.raises(AttributeError, match="no attribute 'Dict'"):
        pyg_schnet.Dict  # noqa: B018


def test_import_loads_no_torch():
    """``import pyg_schnet`` stays light: every command starts with it."""
    code = "import sys, pyg_schnet; print(sorted({'torch', 'numpy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stderr


def test_predicting_with_a_schnet_imports_no_pyg(tmp_path):
    """``predict --model qm9-U0`` (a SchNet) runs without importing PyG, whose
    import (through ``torch._dynamo``) took more than half of predicting
    2,000 molecules (docs/speed.md), nor scipy, which torch-cluster's package
    imports (0.5 s) and whose radius operator alone is loaded."""
    water = tmp_path / "w.xyz"
    water.write_text("3\nwater\nO 0.0 0.0 0.1173\nH 0.0 0.7572 -0.4692\nH 0.0 -0.7572 -0.4692\n")
    code = (
        "import sys; from pyg_schnet.cli import main; "
        f"code = main(['predict', '--model', 'qm9-U0', {str(water)!r}, '-o', "
        f"{str(tmp_path / 'w.csv')!r}]); "
        "print(code, sorted({'torch_geometric', 'torch._dynamo', 'scipy', 'torch_cluster'} "
        "& set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.stdout.strip() == "0 []", out.stderr
    assert (tmp_path / "w.csv").read_text().startswith("name,source,num_atoms,U0_eV")


def test_the_sweep_command_starts_without_pyg_or_the_trainer():
    """``pyg-schnet sweep`` runs each of its runs in a process of its own: the
    sweep's own process needs the spec and sweep modules only, not PyG (with
    ``torch._dynamo``, about 2 s of imports here), matplotlib or the trainer
    (``pyg_schnet.study`` imports its report and runner on first use)."""
    code = (
        "import sys; import pyg_schnet.cli.sweep, pyg_schnet.study; "
        "print(sorted({'torch_geometric', 'torch._dynamo', 'matplotlib', 'pyg_schnet.run.trainer', "
        "'pyg_schnet.study.runner'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stderr


WATER = "3\nwater {}\nO 0.0 0.0 0.1173\nH 0.0 0.7572 -0.4692\nH 0.0 -0.7572 -0.4692\n"


@pytest.mark.parametrize("n,bad", [(10, False), (1000, True)])
def test_the_program_ends_predict_without_teardown_and_loses_no_output(tmp_path, n, bad):
    """``pyg-schnet predict`` (:func:`pyg_schnet.cli.console`) ends its
    process without the interpreter's teardown (an ``atexit`` hook does not
    run), yet its CSV on a pipe arrives whole (10 rows, less than the
    stream's buffer holds; 1,000, more) and its exit code is main's: 0, or 2
    with the one error line when a molecule (chlorine) cannot be predicted.
    Other commands exit as usual (the hook runs)."""
    xyz = tmp_path / "many.xyz"
    blocks = [WATER.format(i) for i in range(n)]
    if bad:
        blocks.insert(n // 2, "2\nhcl\nH 0 0 0\nCl 0 0 1.27\n")
    xyz.write_text("".join(blocks))
    hook = "import atexit, sys; atexit.register(lambda: print('teardown', file=sys.stderr)); "

    def program(*args):
        code = (
            hook
            + f"sys.argv = ['pyg-schnet', *{list(args)!r}]; "
            + "from pyg_schnet.cli import console; console()"
        )
        buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
        return subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=buffered
        )

    out = program("predict", "--model", "qm9-U0", str(xyz))
    rows = out.stdout.splitlines()
    assert rows[0].startswith("name,source,num_atoms,U0_eV") and len(rows) == n + 1 + bad
    assert rows[-1].startswith(f"water_{n - 1},xyz,3,")
    assert "teardown" not in out.stderr
    if bad:
        assert out.returncode == 2
        assert_one_line_error(out, f"1 of {n + 1} molecule(s) not predicted")
    else:
        assert out.returncode == 0, out.stderr
    version = program("--version")
    assert version.returncode == 0 and "teardown" in version.stderr


def _model(folder):
    """A copy of the shipped qm9-U0 model's files at ``folder``."""
    folder.mkdir(parents=True)
    for name in ("model.pt", "card.json"):
        shutil.copy(osp.join(WEIGHTS_DIR, "qm9-U0", name), folder / name)
    return folder


@pytest.mark.parametrize(
    "folders, name, expect",
    [
        (["my-U0"], "my-U0", "my-U0"),  # a bare folder name in the current directory
        (["models/my-U0"], "my-U0", "models/my-U0"),  # where export writes by default
        ([], "qm9-U0", "shipped"),
        (["qm9-U0"], "./qm9-U0", "./qm9-U0"),  # a path chooses the folder
        (["qm9-U0"], "qm9-U0", "error: is ambiguous: ./qm9-U0 and the shipped model qm9-U0"),
        (["my-U0", "models/my-U0"], "my-U0", "error: is ambiguous: ./my-U0 and ./models/my-U0"),
        ([], "my-U0", "error: unknown pretrained model 'my-U0'; available: qm9-U0, qm9-gap"),
        (["empty/.keep"], "./empty", "error: model folder ./empty holds no model.pt"),
        ([], "./gone", "error: model folder ./gone does not exist"),
    ],
)
def test_model_names_and_folders(tmp_path, monkeypatch, folders, name, expect):
    from pyg_schnet.hub import model_folder

    for f in folders:
        if f.endswith(".keep"):
            (tmp_path / f).parent.mkdir(parents=True)
        else:
            _model(tmp_path / f)
    monkeypatch.chdir(tmp_path)
    if expect.startswith("error: "):
        with pytest.raises(UserError, match=re.escape(expect[len("error: ") :])):
            model_folder(name)
        return
    want = osp.join(WEIGHTS_DIR, "qm9-U0") if expect == "shipped" else expect
    assert model_folder(name) == want
    assert pyg_schnet.model_card(name)["name"] == "qm9-U0"


def test_the_shipped_folder_itself_is_not_ambiguous(monkeypatch):
    from pyg_schnet.hub import model_folder

    monkeypatch.chdir(WEIGHTS_DIR)  # ./qm9-U0 is the shipped model
    assert osp.realpath(model_folder("qm9-U0")) == osp.join(WEIGHTS_DIR, "qm9-U0")


def test_export_writes_under_the_current_directory_and_predict_finds_it(tiny):
    """``export`` without ``--to`` writes ./models/NAME, not into the installed
    package, and ``--model NAME`` then finds it; the card records the threads
    the run used and says its molecules are a random subset."""
    where, run = tiny
    shipped = snapshot(WEIGHTS_DIR)
    proc = run_here("export", run, "--name", "tiny-U0", cwd=where)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("tiny-U0: models/tiny-U0 ")
    assert snapshot(WEIGHTS_DIR) == shipped
    card = json.loads((where / "models" / "tiny-U0" / "card.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert card["training_threads"] == metrics["threads"] == 1
    assert "of a seeded random subset of 300 (QM9(max_molecules=300))" in card["split"]
    proc = run_here("predict", "--model", "tiny-U0", "--smiles", "C", cwd=where)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1].startswith("C,")


@pytest.mark.parametrize(
    "command",
    [
        ["evaluate", "{run}"],
        ["evaluate", "--model", "exported/tiny", "--root", "{root}", "--limit", "20"],
        ["probes", "{run}", "--limit", "20"],
    ],
    ids=["evaluate", "evaluate-model", "probes"],
)
def test_device_where_a_model_runs(tiny, command):
    """``--device cpu`` runs; a device this machine lacks, or no device at all,
    is one error line before any file is written."""
    from conftest import SAMPLE_ROOT

    where, run = tiny
    argv = [a.format(run=run, root=SAMPLE_ROOT) for a in command]
    before = snapshot(run)
    for device, error in [
        ("gpu", "device must be cpu or cuda[:N], got 'gpu'"),
        ("cuda:7", "no CUDA GPU is available"),
    ]:
        assert_one_line_error(run_here(*argv, "--device", device, cwd=where), error)
        assert snapshot(run) == before
    proc = run_here(*argv, "--device", "cpu", cwd=where)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("flag", ["--hidden-channels", "--hidden_channels", "--hidden"])
def test_benchmark_takes_trains_flag_names(flag):
    """The model's sizes under train's names, the old short names kept."""
    assert_one_line_error(
        run_here("benchmark", "--skip-build", flag, "0"),
        "argument --hidden-channels/--hidden_channels/--hidden: must be at least 1",
    )


def test_throughput_help_is_plain_text(capsys):
    from pyg_schnet.cli.throughput import main

    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "``" not in text and ":func:" not in text
    assert "pyg-schnet throughput times real pyg-schnet train runs" in text
