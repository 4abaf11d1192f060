"""Issue 30 in study folders: a corrupt file is one error line naming it
with nothing changed, and a finished run that another sitting holds does not
stop this one."""

import os
import os.path as osp
import shutil

import pytest
import yaml

from conftest import SAMPLE_ARGS
from helpers import assert_one_line_error, run_here, snapshot

SPEC = dict(
    name="tiny",
    base=dict(
        hidden_channels=8,
        num_filters=8,
        num_interactions=1,
        cutoff=4.0,
        num_gaussians=8,
        batch_size=50,
        epochs=1,
    ),
    variants={"a": {}},
    targets=["gap"],
    seeds=[0],
    train_sizes=[100],
    val_size=50,
    test_size=50,
)
RUN = osp.join("runs", "gap", "a", "n100_seed0")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A finished one-run study (about 3 s)."""
    d = tmp_path_factory.mktemp("study")
    (d / "s.yaml").write_text(yaml.safe_dump(SPEC))
    proc = run_here("study", "run", d / "s.yaml", "--out", d / "out", *SAMPLE_ARGS)
    assert proc.returncode == 0, proc.stderr
    return d


CORRUPT_STUDY = [
    ("log-values", osp.join(RUN, "log.csv"), "epoch,train_loss\n1,abc,7\n"),
    ("log-binary", osp.join(RUN, "log.csv"), "\0\0garbage"),
    ("metrics", osp.join(RUN, "metrics.json"), "{torn"),
    ("sittings", "sittings.csv", "started,wall_seconds\n2020,x\n"),
]


@pytest.mark.parametrize("action", ["run", "report"])
@pytest.mark.parametrize(
    "rel,text", [c[1:] for c in CORRUPT_STUDY], ids=[c[0] for c in CORRUPT_STUDY]
)
def test_a_corrupt_file_in_a_study_folder_is_one_error(study, tmp_path, action, rel, text):
    out = tmp_path / "out"
    shutil.copytree(study / "out", out)
    (out / rel).write_text(text)
    before = snapshot(str(out))
    proc = run_here(
        "study", action, study / "s.yaml", "--out", out, *(SAMPLE_ARGS if action == "run" else [])
    )
    assert_one_line_error(proc, str(out / rel))
    assert snapshot(str(out)) == before


def test_a_finished_run_held_by_another_sitting_does_not_stop_this_one(study, tmp_path):
    """A sitting measures the symmetry of finished runs that lack it; one
    whose directory another sitting holds (measuring it now) is left to that
    one: the sitting stopped with "is in use" before."""
    from pyg_schnet.io import locked

    out = tmp_path / "out"
    shutil.copytree(study / "out", out)
    os.remove(out / RUN / "symmetry.json")
    with locked(str(out / RUN / ".lock"), wait=False):  # as another process would hold it
        proc = run_here("study", "run", study / "s.yaml", "--out", out, *SAMPLE_ARGS)
    assert proc.returncode == 0, proc.stderr
    assert "(1 finished, 0 to train)" in proc.stdout
