"""``predict`` at scale: the shipped qm9-U0 model on 2,000 molecules of its
card's test split from one XYZ file (QM9's DFT geometries), timed as the
command a user runs, start-up included: wall clock and CPU seconds (user +
system) of each of ``REPEATS`` fresh processes. Run from the repository root
(the checkout's ``pyg_schnet`` is the one timed)::

    taskset -c 1 env OMP_NUM_THREADS=1 python experiments/results/predict_speed/measure.py [REPEATS]
"""

import os
import resource
import subprocess
import sys
import tempfile
import time

from pyg_schnet.data.molio import SYMBOL
from pyg_schnet.hub import pretrained_data

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
