#!/usr/bin/env bash
# Create .venv and install pyg_schnet with its test extras. Idempotent: a second
# run finds everything installed (and pip's wheel cache holds the compiled
# torch-cluster wheel), so nothing is rebuilt.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip --disable-pip-version-check -q"
# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
.venv/bin/python -c "import torch; assert torch.__version__.startswith('2.13.0')" 2>/dev/null \
  || $PIP install torch==2.13.0 ninja "setuptools>=61" wheel
# torch-cluster is source-only on PyPI and compiles against torch. (torch-scatter
# is not needed: PyG's scatter and index_add_ measured faster here, see README.)
.venv/bin/python -c "import torch_cluster" 2>/dev/null \
  || MAX_JOBS=2 $PIP install --no-build-isolation torch-cluster
.venv/bin/python -c "import pyg_schnet, sweeps, nbclient, ruff, mypy, ase" 2>/dev/null \
  || $PIP install --no-build-isolation -e ".[test]"
