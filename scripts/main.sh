#!/usr/bin/env bash
# Install, build QM9 from the embedded qm9pack source, and run a short real
# training (U0, gaussian filter, 5,000-molecule subset) into runs/quickstart.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PYG_SCHNET_DATA="$PWD/data/qm9"   # this clone keeps its QM9 cache in data/qm9
.venv/bin/pyg-schnet data
.venv/bin/pyg-schnet train --config quickstart --overwrite
.venv/bin/pyg-schnet evaluate runs/quickstart
