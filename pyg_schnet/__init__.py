"""SchNet with swappable edge filters on PyTorch Geometric, trained on QM9."""
import os as _os

# PyTorch's OpenMP threads spin while they wait. When the cores are shared with
# another busy process that turns a training step 50x slower (measured here:
# 20 instead of 1,000 molecules/s); passive waiting costs little when the
# machine is idle. Only takes effect if torch is not imported yet; an explicit
# setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
