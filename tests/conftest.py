import os
import os.path as osp

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
# The full QM9 cache is built once per checkout and shared by the data tests
# (and by the README's main command): building it is itself tested in
# data/test_qm9.py. Everything else trains on a ~980-molecule sample of it
# (qm9_sample.py), built through the ``pyg`` source.
DATA_ROOT = os.environ.get("PYG_SCHNET_TEST_ROOT", osp.join(REPO, "data", "qm9"))
# the default root of every command the tests run (never the user's ~/.cache)
os.environ["PYG_SCHNET_DATA"] = DATA_ROOT
from qm9_sample import SAMPLE_ROOT, SAMPLE_SOURCE, ensure_sample  # noqa: E402

#: ``study run`` flags that point a study at the sample
SAMPLE_ARGS = ["--root", SAMPLE_ROOT, "--source", SAMPLE_SOURCE]


def pytest_collection_modifyitems(items):
    """The tests marked ``slow`` (20-60 s each, most of them subprocess trainings)
    first: pytest-xdist hands tests out in this order, so a long test no longer
    starts last while the other worker sits idle."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session", autouse=True)
def _sample_built():
    """Subprocess tests read the sample root: build it once, first."""
    ensure_sample()


@pytest.fixture(scope="session")
def qm9():
    from pyg_schnet.data import QM9

    return QM9(DATA_ROOT)


@pytest.fixture(scope="session")
def sample(_sample_built):
    """The unit tests' QM9 sample (about 980 molecules from all of QM9)."""
    from pyg_schnet.data import QM9

    return QM9(SAMPLE_ROOT, source=SAMPLE_SOURCE)


@pytest.fixture(scope="session")
def qm9_batch(sample):
    """A fixed batch of 16 QM9 molecules (z, pos, batch)."""
    import torch
    from pyg_schnet.data.loader import MoleculeLoader

    idx = torch.arange(3, len(sample), 24)[:16]
    b = MoleculeLoader(sample, idx, 16).gather(idx)
    return b
