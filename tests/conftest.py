import os
import os.path as osp

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
# The full QM9 cache is built once per checkout and shared by the tests (and by
# the README's main command): building it is itself tested in test_data.py.
DATA_ROOT = os.environ.get("PYG_SCHNET_TEST_ROOT", osp.join(REPO, "data", "qm9"))


@pytest.fixture(scope="session")
def qm9():
    from pyg_schnet.data import QM9
    return QM9(DATA_ROOT)


@pytest.fixture(scope="session")
def qm9_batch(qm9):
    """A fixed batch of 16 QM9 molecules (z, pos, batch)."""
    import torch
    from pyg_schnet.loader import MoleculeLoader
    idx = torch.arange(1000, 130_000, 8123)[:16]
    b = MoleculeLoader(qm9, idx, 16).gather(idx)
    return b
