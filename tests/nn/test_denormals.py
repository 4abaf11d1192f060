"""No float32 denormals in a model's passes, for every filter in both modes:
x86 CPUs compute with denormals (below 1.2e-38) many times slower unless
flushing is on, and only ``pyg-schnet train`` turns it on; a model called from
Python must be as fast without it. Measures nothing: counts values."""

from typing import List

import pytest
import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes
from torch.utils._pytree import tree_flatten

from pyg_schnet.nn.filters import BASIS_ZERO, FILTERS
from pyg_schnet.nn.schnet import build_model

#: float32's smallest normal number
NORMAL = torch.finfo(torch.float32).tiny
#: PyG's cutoff: the ``distance_scaled`` filter's hidden units reach -100 there
SMALL = dict(hidden_channels=16, num_filters=16, num_interactions=2, cutoff=10.0)


def _below(t: object, bound: float) -> int:
    """Nonzero float32 values of ``t`` smaller than ``bound`` in magnitude."""
    if not isinstance(t, Tensor) or t.dtype != torch.float32:
        return 0
    return int(((t != 0) & (t.abs() < bound)).sum())


#: Operators that allocate without writing: their outputs (and views of them)
#: hold whatever the memory held, until an operator that is checked writes them
#: (the blocked pair sums fill slices of such buffers with ``out=``).
_ALLOCATIONS = {
    torch.ops.aten.empty.memory_format,
    torch.ops.aten.empty_like.default,
    torch.ops.aten.empty_strided.default,
    torch.ops.aten.new_empty.default,
    torch.ops.aten.new_empty_strided.default,
}


class _Denormals(TorchDispatchMode):
    """Names the operators whose outputs hold denormals (not allocations or
    views: their values are checked where they are computed)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: List[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        if func in _ALLOCATIONS or func.is_view:
            return out
        if any(_below(t, NORMAL) for t in tree_flatten(out)[0]):
            self.found.append(str(func))
        return out


@pytest.fixture
def one_thread():
    """One thread: the checks are hundreds of small operators, which two
    threads on a busy machine make 20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("fast", [False, True], ids=["exact", "fast"])
@pytest.mark.parametrize("name", list(FILTERS))
def test_no_denormals_in_forward_and_backward(name, fast, qm9_batch, one_thread):
    torch.manual_seed(0)
    model = build_model(name, **SMALL, fast=fast)
    tiny: List[str] = []  # modules whose outputs, times a weight, would be denormal

    def check(module: torch.nn.Module, inputs: object, out: object) -> None:
        with _disable_current_modes():  # not through the mode below
            if _below(out, BASIS_ZERO):
                tiny.append(type(module).__name__)

    for module in model.modules():
        module.register_forward_hook(check)
    b = qm9_batch
    mode = _Denormals()
    # the fast mode's kernels run eagerly (same operators): compiling them
    # under the mode costs seconds per case
    with torch._dynamo.config.patch(disable=True), mode:
        model.eval()
        with torch.no_grad():  # the in-place inference path
            model(b.z, b.pos, b.batch)
        model.train()
        model(b.z, b.pos, b.batch).sum().backward()
    assert not mode.found, f"denormals from {sorted(set(mode.found))}"
    assert not tiny, f"values below 2^-100 out of {sorted(set(tiny))}"
