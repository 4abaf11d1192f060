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


def _script(repo, *args, cwd):
    return subprocess.run(
        ["bash", str(repo / "scripts" / "study_pinned.sh"), *args],
        capture_output=True, text=True, cwd=cwd,
    )  # fmt: skip


def test_carry_takes_an_unfinished_run_to_a_fresh_machine_and_sync_drops_its_checkpoints(
    tmp_path,
):
    """A run longer than a sitting: ``carry`` commits it with its checkpoints,
    ``run`` on another machine (a fresh clone, no worktree) resumes from them,
    and the ``sync`` that brings it back finished removes them from git."""
    repo = tmp_path / "a" / "proj"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, repo / "scripts")
    (repo / "experiments" / "studies").mkdir(parents=True)
    (repo / "experiments" / "studies" / "x.yaml").write_text("name: x\n")
    (repo / ".gitignore").write_text("last.pt\nbest.pt\n.venv\n/data\n")
    (repo / "data").mkdir()
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "study spec")
    start = _git(repo, "rev-parse", "HEAD").strip()
    spec = "experiments/studies/x.yaml"
    (repo / ".venv" / "bin").mkdir(parents=True)
    _stand_in(repo / ".venv" / "bin" / "python", tmp_path / "calls.txt")
    _stand_in(repo / ".venv" / "bin" / "pyg-schnet", tmp_path / "calls.txt")
    assert _script(repo, "run", spec, start, cwd=tmp_path).returncode == 0
    wt = tmp_path / "a" / "proj-x"
    # the sitting ends with one run finished and one halfway
    _finished(wt, 0)
    half = wt / RUN.format(1)
    half.mkdir(parents=True)
    for f, text in [("last.pt", "epoch 30"), ("best.pt", "best 29"), ("log.csv", "epoch\n30\n")]:
        (half / f).write_text(text)
    (half / ".lock").write_text("")
    assert _script(repo, "sync", spec, cwd=tmp_path).returncode == 0
    proc = _script(repo, "carry", spec, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    tracked = _git(repo, "ls-files").split()
    assert RUN.format(1) + "/last.pt" in tracked and RUN.format(1) + "/best.pt" in tracked
    assert RUN.format(1) + "/.lock" not in tracked
    assert RUN.format(0) + "/last.pt" not in tracked  # a finished run carries nothing
    assert "carry 1 unfinished run(s)" in _git(repo, "log", "-1", "--format=%s")

    # another machine: a clone of the repository, no worktree yet
    other = tmp_path / "b" / "proj"
    other.parent.mkdir()
    _git(other.parent, "clone", "-q", str(repo), str(other))
    shutil.copytree(repo / ".venv", other / ".venv")
    (other / "data").mkdir()
    proc = _script(other, "run", spec, start, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    wt2 = tmp_path / "b" / "proj-x"
    assert (wt2 / RUN.format(1) / "last.pt").read_text() == "epoch 30"  # resumed from it
    assert (wt2 / RUN.format(1) / "best.pt").read_text() == "best 29"
    assert (wt2 / RUN.format(0) / "metrics.json").is_file()
    # a worktree's own newer checkpoint is never replaced by the carried one
    (wt2 / RUN.format(1) / "last.pt").write_text("epoch 45")
    assert _script(other, "run", spec, start, cwd=tmp_path).returncode == 0
    assert (wt2 / RUN.format(1) / "last.pt").read_text() == "epoch 45"

    # the run finishes there: sync brings it back and drops its checkpoints from git
    (wt2 / RUN.format(1) / "metrics.json").write_text('{"test_mae": 0.1}')
    proc = _script(other, "sync", spec, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    tracked = _git(other, "ls-files").split()
    assert RUN.format(1) + "/metrics.json" in tracked
    assert not {RUN.format(1) + "/last.pt", RUN.format(1) + "/best.pt"} & set(tracked)
    assert not (other / RUN.format(1) / "last.pt").exists()
    assert _git(other, "status", "--porcelain").strip() == ""
