#!/usr/bin/env bash
# One resumable run: train, then evaluate its selected checkpoint.
#
#   scripts/_run_one.sh DIR CONFIG [--config.KEY=VALUE ...]
#
# A run with DIR/eval/results.json is skipped; an interrupted one resumes from
# its latest checkpoint; a trained one (marker file DIR/trained) is only
# evaluated. Wall seconds are added to DIR/train_seconds and DIR/eval_seconds
# (summed over resumes). The extra arguments go to both train.py and
# evaluate.py. PYTHON (default .venv/bin/python); DRY_RUN=1 prints the
# commands instead of running them; LABEL names the run in messages (DIR). Used by reproduce_mnist_scale.sh and
# run_study.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -lt 2 ]]; then
  echo "usage: scripts/_run_one.sh DIR CONFIG [--config.KEY=VALUE ...]" >&2; exit 2
fi
dir=$1 config=$2; shift 2
PYTHON=${PYTHON:-.venv/bin/python}
DRY_RUN=${DRY_RUN:-0}
LABEL=${LABEL:-$dir}
args=(--config "$config" --workdir "$dir" "$@" --config.progress_bar=false)

run() {  # Prints the command; runs it unless DRY_RUN=1, adding its seconds to $1.
  local log=$1; shift
  printf '%q ' "$@"; echo
  if [[ "$DRY_RUN" != 1 ]]; then
    local start=$SECONDS
    "$@"
    echo $((SECONDS - start)) >> "$dir/$log"
  fi
}

if [[ -f "$dir/eval/results.json" ]]; then
  echo "== $LABEL: done, skipped"; exit 0
fi
if [[ ! -f "$dir/trained" ]]; then
  echo "== $LABEL: training"
  [[ "$DRY_RUN" == 1 ]] || mkdir -p "$dir"
  run train_seconds "$PYTHON" train.py "${args[@]}"
  [[ "$DRY_RUN" == 1 ]] || touch "$dir/trained"
fi
echo "== $LABEL: evaluating"
run eval_seconds "$PYTHON" evaluate.py "${args[@]}"
