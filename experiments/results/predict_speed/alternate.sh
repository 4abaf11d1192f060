#!/usr/bin/env bash
# predict --model qm9-U0 on an .xyz file with an older checkout's code and with this one,
# alternating, a fresh process each, and `python -c "import torch"` beside them to show the
# host's phase. The CSVs must be the same byte for byte. Usage, from anywhere:
#   bash experiments/results/predict_speed/alternate.sh OLD_CHECKOUT FILE.xyz [ROUNDS]
# (OLD_CHECKOUT: e.g. `git worktree add /tmp/old d89e984`; FILE.xyz: measure.py writes one.)
set -euo pipefail
old=$(cd "$1" && pwd) xyz=$(realpath "$2") rounds=${3:-6}
new=$(cd "$(dirname "$0")/../../.." && pwd)
py=${PYTHON:-python}
out=$(mktemp -d)
seconds() { local s e; s=$(date +%s%N); "$@" > /dev/null 2>&1; e=$(date +%s%N); echo "scale=2; ($e - $s) / 1000000000" | bc; }
for r in $(seq "$rounds"); do
  b=$(cd "$out" && PYTHONPATH=$old seconds "$py" -m pyg_schnet.cli predict --model qm9-U0 "$xyz" -o old.csv --overwrite)
  n=$(cd "$out" && PYTHONPATH=$new seconds "$py" -m pyg_schnet.cli predict --model qm9-U0 "$xyz" -o new.csv --overwrite)
  i=$(seconds "$py" -c "import torch")
  echo "round $r: before $b s, now $n s, import torch alone $i s"
done
cmp "$out/old.csv" "$out/new.csv" && echo "the CSVs are the same byte for byte"
