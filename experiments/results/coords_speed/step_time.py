"""CPU seconds of 10 training steps of an untrained ``coords`` SchNet at the
studies' size (64 features, 3 blocks, 5 Å; batches of 50, Adam, one thread,
denormals flushed as ``pyg-schnet train`` does), after 2 warm-up steps (the fast
path compiles there). ``exact`` and ``fast`` use only names that the package had
before issue 31's work, so the same file times older checkouts
(``against_filing.sh``); ``trainer`` is the fast path as ``pyg-schnet train``
takes its steps today (fused Adam, each molecule's pairs found once by a
``PairTable``, built before the clock starts)::

    python experiments/results/coords_speed/step_time.py DATA_ROOT {exact,fast,trainer}
"""

import sys
import time

import torch

from pyg_schnet.data import QM9
from pyg_schnet.data.loader import MoleculeLoader
from pyg_schnet.nn.models import build
from steps import train_steps

torch.set_num_threads(1)
torch.set_flush_denormal(True)
root, mode = sys.argv[1], sys.argv[2]
ds = QM9(root)
idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))
trainer = mode == "trainer"
if trainer:  # today's names only
    from pyg_schnet.data.loader import PairTable

    pairs = PairTable.build(ds, idx[1000:1600], 5.0)
    batches = list(MoleculeLoader(ds, idx[1000:1600], 50, target=7, pairs=pairs))
else:
    batches = list(MoleculeLoader(ds, idx[1000:1600], 50, target=7))  # 2 warm-up + 10 timed
torch.manual_seed(0)
model = build(
    filter="coords",
    hidden_channels=64,
    num_filters=64,
    num_interactions=3,
    cutoff=5.0,
    fast=mode != "exact",
)
opt = torch.optim.Adam(model.parameters(), lr=1e-4, **({"fused": True} if trainer else {}))


train_steps(model, opt, batches[:2])
t0 = time.process_time()
train_steps(model, opt, batches[2:])
print(f"{time.process_time() - t0:.4f}")
