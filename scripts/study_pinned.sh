#!/usr/bin/env bash
# A study on the code it started with, across sittings and fresh machines.
#
#   bash scripts/study_pinned.sh run  experiments/studies/NAME.yaml COMMIT   # train (resumable)
#   bash scripts/study_pinned.sh sync experiments/studies/NAME.yaml          # bring results back
#   bash scripts/study_pinned.sh carry experiments/studies/NAME.yaml         # end of a sitting
#
# `run` trains in a git worktree of COMMIT beside this checkout (../REPO-NAME), with this
# checkout's .venv and data/, after copying in the runs this checkout already holds finished
# (and the study's sittings.csv), so only the rest are trained; an interrupted run resumes
# from its last.pt there. `sync` copies the worktree's newly finished runs here (no
# optimizer checkpoints), writes the report with this checkout's code and commits them.
# `carry` (once, at the end of a sitting whose runs take longer than one) commits the
# worktree's unfinished runs here with their last.pt and best.pt, so that `run` on a fresh
# machine resumes them where they stopped; `sync` removes both again when a run has finished.
# JOBS (default 2) is passed to `study run --jobs`.
set -euo pipefail
cmd=${1:?run or sync}
spec=${2:?a study spec}
repo=$(cd "$(dirname "$0")/.." && pwd)
name=$(basename "$spec" .yaml)
rel="experiments/studies/$name"
wt="$(dirname "$repo")/$(basename "$repo")-$name"
# the finished runs of folder $1 (their directories, relative to it) not finished in $2
newly_finished() {
  (cd "$1/$rel" 2>/dev/null && find runs -name metrics.json) | while read -r m; do
    [ -f "$2/$rel/$m" ] || dirname "$m"
  done
}
copy_run() {  # $1 from, $2 to, $3 run directory: everything but optimizer checkpoints
  mkdir -p "$2/$rel/$3"
  find "$1/$rel/$3" -maxdepth 1 -type f ! -name last.pt ! -name best.pt \
    -exec cp -p {} "$2/$rel/$3/" \;
}
# the unfinished runs of folder $1 that can be resumed (a last.pt, no metrics.json)
unfinished() {
  (cd "$1/$rel" 2>/dev/null && find runs -name last.pt) | while read -r c; do
    [ -f "$1/$rel/$(dirname "$c")/metrics.json" ] || dirname "$c"
  done
}
copy_whole() {  # $1 from, $2 to, $3 run directory: every file, checkpoints included
  mkdir -p "$2/$rel/$3"
  find "$1/$rel/$3" -maxdepth 1 -type f ! -name '.*' -exec cp -p {} "$2/$rel/$3/" \;
}
case "$cmd" in
  run)
    commit=${3:?the commit the study started with}
    if [ ! -d "$wt" ]; then
      git -C "$repo" worktree add -f "$wt" "$commit"
    fi
    [ "$(git -C "$wt" rev-parse HEAD)" = "$(git -C "$repo" rev-parse "$commit^{commit}")" ] \
      || { echo "error: $wt is not at $commit" >&2; exit 2; }
    for d in $(newly_finished "$repo" "$wt"); do copy_run "$repo" "$wt" "$d"; done
    # runs carried from another machine: resumed here unless this worktree has its own
    for d in $(unfinished "$repo"); do
      [ -f "$wt/$rel/$d/last.pt" ] || [ -f "$wt/$rel/$d/metrics.json" ] || copy_whole "$repo" "$wt" "$d"
    done
    if [ -f "$repo/$rel/sittings.csv" ] && [ ! -f "$wt/$rel/sittings.csv" ]; then
      cp -p "$repo/$rel/sittings.csv" "$wt/$rel/sittings.csv"
    fi
    ln -sfn "$repo/data" "$wt/data"
    cd "$wt"
    PYTHONPATH="$wt" PYG_SCHNET_DATA="$repo/data/qm9" exec "$repo/.venv/bin/python" \
      -m pyg_schnet.cli study run "$rel.yaml" --jobs "${JOBS:-2}"
    ;;
  sync)
    [ -d "$wt" ] || { echo "error: no worktree $wt (start it with: run $spec COMMIT)" >&2; exit 2; }
    new=0
    for d in $(newly_finished "$wt" "$repo"); do
      copy_run "$wt" "$repo" "$d"
      new=$((new + 1))
      for f in last.pt best.pt; do  # a carried run has finished: its checkpoints go
        if [ -f "$repo/$rel/$d/$f" ]; then
          git -C "$repo" rm -q --cached --ignore-unmatch "$rel/$d/$f"
          rm -f "$repo/$rel/$d/$f"
        fi
      done
    done
    [ -f "$wt/$rel/sittings.csv" ] && cp -p "$wt/$rel/sittings.csv" "$repo/$rel/sittings.csv"
    cd "$repo"
    PYG_SCHNET_DATA="$repo/data/qm9" .venv/bin/pyg-schnet study report "$spec"
    git add "$rel"
    if [ "$new" -gt 0 ]; then
      total=$(find "$rel/runs" -name metrics.json | wc -l)
      git commit -q -m "Study $name: results of $new newly finished run(s) ($total finished)"
      git log --oneline -1
    else
      echo "no newly finished runs"
    fi
    ;;
  carry)
    [ -d "$wt" ] || { echo "error: no worktree $wt (start it with: run $spec COMMIT)" >&2; exit 2; }
    n=0
    for d in $(unfinished "$wt"); do
      copy_whole "$wt" "$repo" "$d"
      git -C "$repo" add -f "$rel/$d"
      n=$((n + 1))
    done
    [ -f "$wt/$rel/sittings.csv" ] && cp -p "$wt/$rel/sittings.csv" "$repo/$rel/sittings.csv" \
      && git -C "$repo" add "$rel/sittings.csv"
    if [ "$n" -gt 0 ]; then
      git -C "$repo" commit -q -m "Study $name: carry $n unfinished run(s) to the next sitting (last.pt and best.pt, removed when each run finishes)"
      git -C "$repo" log --oneline -1
    else
      echo "no unfinished runs to carry"
    fi
    ;;
  *) echo "error: the command is run, sync or carry, not $cmd" >&2; exit 2 ;;
esac
