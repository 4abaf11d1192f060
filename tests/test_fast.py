"""The fast mode (tabulated Gaussian filters): within its stated tolerance of
the exact model, for predictions and gradients, and rebuilt from hparams."""
import pytest
import torch

from pyg_schnet.fast import FAST_TOLERANCE, enable_fast
from pyg_schnet.model import build_model

PYG_SIZE = dict(hidden_channels=128, num_filters=128, num_interactions=6, num_gaussians=50,
                cutoff=10.0)


def _pair(**kw):
    torch.manual_seed(0)
    exact = build_model("gaussian", **kw)
    fast = build_model("gaussian", **kw, fast=True)
    fast.load_state_dict(exact.state_dict())
    return exact, fast


def test_fast_predictions_within_tolerance(qm9_batch):
    b = qm9_batch
    exact, fast = _pair(**PYG_SIZE, mean=-4.0, std=0.2)
    with torch.no_grad():
        a = exact(b.z, b.pos, b.batch)
        f = fast(b.z, b.pos, b.batch)
    err = float((a - f).abs().max()) / float(a.std())
    assert err <= FAST_TOLERANCE, err
    assert err > 0  # it is an approximation, not the same code path


def test_fast_gradients_close(qm9_batch):
    b = qm9_batch
    exact, fast = _pair(**PYG_SIZE)
    grads = []
    for m in (exact, fast):
        m.zero_grad()
        (m(b.z, b.pos, b.batch) ** 2).mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters()]))
    rel = float((grads[0] - grads[1]).norm() / grads[0].norm())
    assert rel < 1e-2, rel


def test_fast_flag_survives_rebuild():
    _, fast = _pair(hidden_channels=16, num_filters=16, num_interactions=2, cutoff=4.0)
    again = build_model(**fast.hparams())
    assert again.fast and fast.hparams()["fast"] is True


@pytest.mark.parametrize("name", ["coords", "conv1d"])
def test_fast_leaves_other_filters_exact(name, qm9_batch):
    b = qm9_batch
    torch.manual_seed(0)
    exact = build_model(name, hidden_channels=16, num_filters=16, num_interactions=2)
    fast = enable_fast(build_model(name, hidden_channels=16, num_filters=16, num_interactions=2))
    fast.load_state_dict(exact.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(exact(b.z, b.pos, b.batch), fast(b.z, b.pos, b.batch))
