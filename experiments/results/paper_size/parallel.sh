#!/usr/bin/env bash
# Both cores for the long runs (issue "Shipped models at the paper's accuracy": "the
# data-parallel default or two runs side by side, whichever measures faster"): one run of
# two data-parallel processes (one thread each, sharing every batch of 50) against two runs
# at once, one core and one thread each, alternating in ROUNDS rounds. The shipped size
# (128 features, 3 blocks, 5 Å, fast mode), 10,000 training and 1,000 validation molecules,
# 3 epochs; training molecules per second of epochs 2-3 (training and validation, from
# log.csv), all processes together.
#   bash experiments/results/paper_size/parallel.sh [ROUNDS]
set -euo pipefail
repo=$(cd "$(dirname "$0")/../../.." && pwd)
rounds=${1:-2}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
train() { "$repo/.venv/bin/pyg-schnet" train --hidden-channels 128 --num-filters 128 \
  --num-interactions 3 --cutoff 5 --fast true --train-size 10000 --val-size 1000 \
  --test-size 500 --epochs 3 --num-threads 1 --wandb disabled --quiet "$@" >/dev/null 2>&1; }
rate() {  # training molecules per second of epochs 2-3 of run directory $1
  "$repo/.venv/bin/python" -c "
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1] + '/log.csv')))[1:]
print(sum(float(r['molecules_per_second']) for r in rows) / len(rows))" "$1"
}
echo "round,data_parallel,side_by_side,side_by_side/data_parallel"
for r in $(seq "$rounds"); do
  train --processes 2 --out "$out/dp$r"
  taskset -c 0 bash -c "$(declare -f train); repo=$repo; train --processes 1 --out $out/a$r" &
  taskset -c 1 bash -c "$(declare -f train); repo=$repo; train --processes 1 --seed 1 --out $out/b$r"
  wait
  dp=$(rate "$out/dp$r")
  sbs=$("$repo/.venv/bin/python" -c "print($(rate "$out/a$r") + $(rate "$out/b$r"))")
  "$repo/.venv/bin/python" -c "print(f'$r,{$dp:.0f},{$sbs:.0f},{$sbs / $dp:.3f}')"
done
