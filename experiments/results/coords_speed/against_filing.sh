#!/usr/bin/env bash
# Issue 31's coords goal is "at least 2x faster than today": the exact path of the commit
# before the issue's first change (c5035f5) and of that first change (1e450d5, the shifted
# softplus' floor), against today's exact and fast paths and the fast path as the trainer
# takes its steps (fused Adam, pairs found once); each process times 10 training steps
# (step_time.py), alternating within each round on core 1. The older checkouts are
# git worktrees beside this one and build their own QM9 copy (their processed format may
# differ).
#   bash experiments/results/coords_speed/against_filing.sh [ROUNDS]
set -euo pipefail
repo=$(cd "$(dirname "$0")/../../.." && pwd)
rounds=${1:-5}
py="$repo/.venv/bin/python"
step="$repo/experiments/results/coords_speed/step_time.py"
time_steps() {  # $1 checkout, $2 data root, $3 exact or fast
  (cd "$1" && PYTHONPATH="$1" taskset -c 1 "$py" "$step" "$2" "$3" 2>/dev/null)
}
old=()
for c in c5035f5 1e450d5; do
  wt="$(dirname "$repo")/$(basename "$repo")-$c"
  [ -d "$wt" ] || git -C "$repo" worktree add -f "$wt" "$c" >/dev/null 2>&1
  old+=("$wt")
done
echo "round,filing_exact,floor_exact,today_exact,today_fast,today_trainer"
for r in $(seq "$rounds"); do
  a=$(time_steps "${old[0]}" "${old[0]}/data/qm9" exact)
  b=$(time_steps "${old[1]}" "${old[1]}/data/qm9" exact)
  c=$(time_steps "$repo" "$repo/data/qm9" exact)
  d=$(time_steps "$repo" "$repo/data/qm9" fast)
  e=$(time_steps "$repo" "$repo/data/qm9" trainer)
  echo "$r,$a,$b,$c,$d,$e"
done
