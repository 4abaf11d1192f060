"""The matrix-multiply bound that ``pyg-schnet benchmark`` prints."""

import torch
from torch import nn

from pyg_schnet.analysis.dense_bound import dense_bound, linear_shapes


def test_shapes_and_products_of_a_training_step():
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 5))
    x = torch.randn(2, 7, 3)  # leading dimensions count as rows
    shapes = linear_shapes(net, lambda: net(x))
    assert shapes == [(14, 3, 4, False), (14, 4, 5, True)]
    bound = dense_bound(shapes)
    # forward and weight gradient of both; the input gradient of the second only
    assert bound.products == 5
    assert bound.flops == 2 * (14 * 3 * 4 * 2 + 14 * 4 * 5 * 3)
    assert 0 < bound.peak_seconds <= bound.dense_seconds
    assert bound.peak_gflops > 0
