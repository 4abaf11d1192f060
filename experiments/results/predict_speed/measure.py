"""``predict`` at scale: the shipped qm9-U0 model on 2,000 molecules of its
card's test split from one XYZ file (QM9's DFT geometries), timed as the
command a user runs, start-up included: wall clock and CPU seconds (user +
system) of each of ``REPEATS`` fresh processes. Then, in this process, the
model's part alone (the same 8 batches of 256 as ``predict``, kernels
uncompiled) with the fast kernels' in-place forms (``pyg_schnet.nn.fast.
_IN_PLACE``, the same bits) and with their autograd forms, alternating within
each of ``REPEATS`` rounds. Run from the repository root (the checkout's
``pyg_schnet`` is the one timed)::

    taskset -c 1 env OMP_NUM_THREADS=1 python experiments/results/predict_speed/measure.py [REPEATS]
"""

import os
import resource
import subprocess
import sys
import tempfile
import time

import torch

from pyg_schnet.analysis.evaluate import PREDICT_BATCH
from pyg_schnet.data.molio import SYMBOL, read_xyz
from pyg_schnet.hub import pretrained, pretrained_data
from pyg_schnet.nn import fast

repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
folder = tempfile.mkdtemp(prefix="predict_speed_")
ds, split = pretrained_data("qm9-U0", None)
blocks = []
for i in split.test_idx[:2000].tolist():
    d = ds[i]
    atoms = "".join(
        f"{SYMBOL[int(z)]} {x:.6f} {y:.6f} {w:.6f}\n"
        for z, (x, y, w) in zip(d.z, d.pos.tolist(), strict=True)
    )
    blocks.append(f"{d.z.numel()}\ngdb {i + 1}\n{atoms}")
xyz = os.path.join(folder, "many.xyz")
with open(xyz, "w") as f:
    f.write("".join(blocks))
cmd = [sys.executable, "-m", "pyg_schnet.cli", "predict", "--model", "qm9-U0", xyz]
print("predict --model qm9-U0, 2,000 molecules from one .xyz, a fresh process each")
for k in range(repeats):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = os.path.join(folder, f"out{k}.csv")
    subprocess.run([*cmd, "-o", out], check=True, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    print(f"run {k + 1}: {wall:.2f} s wall, {cpu:.2f} s CPU")

model = pretrained("qm9-U0").eval()
mols = read_xyz(xyz)
batches = []
for start in range(0, len(mols), PREDICT_BATCH):
    chunk = mols[start : start + PREDICT_BATCH]
    sizes = torch.tensor([m.z.numel() for m in chunk])
    batch = torch.repeat_interleave(torch.arange(len(chunk)), sizes)
    batches.append((torch.cat([m.z for m in chunk]), torch.cat([m.pos for m in chunk]), batch))
in_place = dict(fast._IN_PLACE)


@torch.no_grad()
def forward(use_in_place):
    """Seconds for the batches, and the values; the in-place forms switched
    off by emptying their table for this call (a measurement's toggle)."""
    if not use_in_place:
        fast._IN_PLACE.clear()
    try:
        start = time.perf_counter()
        with fast.eager_kernels():
            out = [model(z, pos, b, num_graphs=int(b[-1]) + 1).view(-1) for z, pos, b in batches]
        return time.perf_counter() - start, torch.cat(out)
    finally:
        fast._IN_PLACE.update(in_place)


forward(True), forward(False)  # warm-up
print(f"the model alone, {len(batches)} batches, {torch.get_num_threads()} thread(s), this process")
for k in range(repeats):
    (t_new, new), (t_old, old) = forward(True), forward(False)
    same = "the same bits" if torch.equal(new, old) else "VALUES DIFFER"
    print(
        f"round {k + 1}: autograd forms {t_old:.3f} s, in-place {t_new:.3f} s, "
        f"{t_old / t_new:.2f}x ({same})"
    )
