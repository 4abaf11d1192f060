#!/usr/bin/env bash
# Install, build QM9 from the embedded qm9pack source, and run a short real
# training (U0, gaussian filter, 5,000-molecule subset) into runs/quickstart.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/pyg-schnet data --root data/qm9
.venv/bin/pyg-schnet train --config experiments/configs/quickstart.yaml --overwrite
.venv/bin/pyg-schnet evaluate runs/quickstart
