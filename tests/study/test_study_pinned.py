"""``scripts/study_pinned.sh``: a study trained on the commit it started with in a
worktree beside the checkout, and its finished runs brought back. Checked in a
throwaway repository whose ``.venv`` holds stand-ins that record how they were
called (the real training is the study runner's, tested in test_study.py)."""

import os
import shutil
import stat
import subprocess

from conftest import REPO

SCRIPT = os.path.join(REPO, "scripts", "study_pinned.sh")
RUN = "experiments/studies/x/runs/U0/a/n10_seed{}"


def _git(repo, *args):
    base = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    return subprocess.run(base + list(args), check=True, capture_output=True, text=True).stdout


def _stand_in(path, log):
    """An executable that appends its arguments and PYTHONPATH to ``log``."""
    path.write_text(f'#!/bin/sh\necho "$PYTHONPATH $*" >> {log}\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _finished(folder, seed, with_checkpoint=True):
    d = folder / RUN.format(seed)
    d.mkdir(parents=True)
    (d / "metrics.json").write_text('{"test_mae": 0.1}')
    (d / "config.yaml").write_text("seed: %d\n" % seed)
    if with_checkpoint:
        (d / "last.pt").write_text("optimizer state")
    return d


def test_run_trains_in_a_worktree_of_the_commit_and_sync_brings_runs_back(tmp_path):
    repo = tmp_path / "proj"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, repo / "scripts")
    (repo / "experiments" / "studies").mkdir(parents=True)
    (repo / "experiments" / "studies" / "x.yaml").write_text("name: x\n")
    (repo / "data").mkdir()
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "study spec")
    start = _git(repo, "rev-parse", "HEAD").strip()
    (repo / "later.txt").write_text("code after the study started\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "later")
    _finished(repo, 0, with_checkpoint=False)  # committed here by an earlier sitting
    (repo / ".venv" / "bin").mkdir(parents=True)
    log = tmp_path / "calls.txt"
    _stand_in(repo / ".venv" / "bin" / "python", log)
    _stand_in(repo / ".venv" / "bin" / "pyg-schnet", log)
    spec = "experiments/studies/x.yaml"

    proc = subprocess.run(
        ["bash", SCRIPT.replace(REPO, str(repo)), "run", spec, start],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    wt = tmp_path / "proj-x"
    assert _git(wt, "rev-parse", "HEAD").strip() == start  # the study's own commit
    assert not (wt / "later.txt").exists()
    assert (wt / RUN.format(0) / "metrics.json").is_file()  # not trained again
    assert os.path.realpath(wt / "data") == str(repo / "data")
    assert log.read_text().split() == [
        str(wt), "-m", "pyg_schnet.cli", "study", "run", spec, "--jobs", "2",
    ]  # fmt: skip

    # a run finishes in the worktree: sync copies it without its optimizer state
    _finished(wt, 1)
    proc = subprocess.run(
        ["bash", str(repo / "scripts" / "study_pinned.sh"), "sync", spec],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    back = repo / RUN.format(1)
    assert (back / "metrics.json").is_file() and not (back / "last.pt").exists()
    assert "study report " + spec in log.read_text()
    assert "1 newly finished run(s) (2 finished)" in _git(repo, "log", "-1", "--format=%s")
    assert RUN.format(1) + "/metrics.json" in _git(repo, "ls-files")

    # a worktree at another commit is refused, before anything runs
    calls = log.read_text()
    proc = subprocess.run(
        ["bash", str(repo / "scripts" / "study_pinned.sh"), "run", spec, "HEAD"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.strip().endswith("is not at HEAD")
    assert log.read_text() == calls
