#!/usr/bin/env bash
# Install and run the test suite (offline; W&B runs in offline/disabled mode).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export WANDB_MODE=offline WANDB_SILENT=true
.venv/bin/python -m ruff format --check pyg_schnet tests   # formatting
.venv/bin/python -m ruff check pyg_schnet tests    # lint (pyflakes, pycodestyle, bugbear)
.venv/bin/python -m mypy                            # types (settings in pyproject.toml)
.venv/bin/python -m pytest -q -n auto --durations=25 "$@"
