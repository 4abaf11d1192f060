#!/usr/bin/env bash
# Install and run the test suite (offline; W&B runs in offline/disabled mode).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export WANDB_MODE=offline WANDB_SILENT=true
.venv/bin/python -m pytest -q -n auto "$@"
