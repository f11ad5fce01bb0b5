#!/usr/bin/env bash
# The runs of the published scale-MNIST table, many at once on one accelerator
# host: the runs of scripts/reproduce_mnist_scale.sh (same layout, read by
# python -m scalenet.tables), PARALLEL train+evaluate jobs at a time.
#
#   PARALLEL=12 ROOT=/tmp/runs/mnist_5k MODELS="mnist_cnn_28 mnist_ses_scalar_28" \
#     REALIZATIONS="0 1 2" SETTINGS="plain plus" \
#     bash scripts/run_gpu_table.sh [--dry-run] [--config.KEY=VALUE ...]
#
# Environment (space-separated lists):
#   MODELS        default: every mnist_* key of scalenet.models.MODELS
#   REALIZATIONS  default: "0 1 2 3 4 5"
#   SETTINGS      default: "plain plus"; plus = --config.augment_scale="(0.5, 2.0)";
#                 multires = CONFIG:<model>,multires (fourier_se_mnist)
#   PLUS_MODELS   default: MODELS; the models run in the plus setting
#   MULTIRES_MODELS default: the models of MODELS with a prediction stack
#                 (configs/sesn_table.py MULTIRES_MODELS), run in the multires setting
#   CONFIG        default: configs/sesn_table.py (called as CONFIG:<model>)
#   ROOT          default: workdirs/mnist_scale; runs in ROOT/<model>/<setting>/r<k>
#   PARALLEL      default: 8 jobs at a time (one GPU: jobs share it; each job
#                 compiles on the host's CPU, which is what parallelism buys)
#   DEADLINE      optional: epoch seconds after which no new job starts
#   PYTHON        default: .venv/bin/python if present, else python3
#   XLA_PYTHON_CLIENT_PREALLOCATE  default here: false (else the first job
#                 takes 75% of the GPU's memory and the next ones fail)
# Extra arguments are config overrides passed to train.py and evaluate.py.
# Jobs run realization by realization (every model's r0 first), each model's
# runs after its first one reuse compiled programs where JAX_COMPILATION_CACHE_DIR
# is set. Data sets are prepared once, before any job starts (no two processes
# build one tfds data set).
#
# Each run is scripts/_run_one.sh (resumable as the reproduction script: a run
# with eval/results.json is skipped, an interrupted one resumes from its latest
# checkpoint, a trained one is only evaluated; wall times in <run>/train_seconds
# and <run>/eval_seconds), its output in <run>/log.txt.
#
# Measured (2026-11-25, one H100, 16 cores, PARALLEL=14, 15 epochs of mnist_5k):
# a run's first realization took 1.3-4.7 min of wall time (train + evaluate,
# mostly compilation), later ones 0.8-1.9 min with the compilation cache; 63
# runs in about 10 min of wall time (results/mnist_scale.md).
set -euo pipefail
cd "$(dirname "$0")/.."
DRY_RUN=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY_RUN=1; shift; fi
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
CONFIG=${CONFIG:-configs/sesn_table.py}
REALIZATIONS=${REALIZATIONS:-"0 1 2 3 4 5"}
SETTINGS=${SETTINGS:-"plain plus"}
ROOT=${ROOT:-workdirs/mnist_scale}
PARALLEL=${PARALLEL:-8}
DEADLINE=${DEADLINE:-}
if [[ -z "${MODELS:-}" ]]; then
  MODELS=$("$PYTHON" -c 'from scalenet.models import MODELS
print(" ".join(m for m in MODELS if m.startswith("mnist_")))')
fi
for s in $SETTINGS; do
  [[ "$s" == plain || "$s" == plus || "$s" == multires ]] || {
    echo "SETTINGS may hold plain, plus and multires; got '$s'." >&2; exit 2; }
done
PLUS_MODELS=${PLUS_MODELS:-$MODELS}
# 'multires' trains a prediction stack: only models that have one.
MULTIRES_MODELS=${MULTIRES_MODELS:-$("$PYTHON" -c 'import sys
sys.path.insert(0, ".")
from configs import sesn_table
print(" ".join(m for m in sys.argv[1:] if m in sesn_table.MULTIRES_MODELS))' $MODELS)}
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}
export PYTHON CONFIG ROOT DEADLINE DRY_RUN

one_run() {  # one_run MODEL SETTING REALIZATION [overrides...]: scripts/_run_one.sh, logged.
  local m=$1 setting=$2 r=$3; shift 3
  local dir="$ROOT/$m/$setting/r$r" extra=() option=
  [[ "$setting" == plus ]] && extra=("--config.augment_scale=(0.5, 2.0)")
  [[ "$setting" == multires ]] && option=,multires
  local args=("$dir" "$CONFIG:$m$option" --config.realization="$r" --config.seed="$r" "${extra[@]}" "$@")
  if [[ "$DRY_RUN" == 1 ]]; then bash scripts/_run_one.sh "${args[@]}"; return; fi
  if [[ -f "$dir/eval/results.json" ]]; then echo "== $m $setting r$r: done, skipped"; return; fi
  if [[ -n "$DEADLINE" && $(date +%s) -ge $DEADLINE ]]; then
    echo "== $m $setting r$r: not started (deadline)"; return
  fi
  mkdir -p "$dir"
  local start=$SECONDS
  if ! bash scripts/_run_one.sh "${args[@]}" >> "$dir/log.txt" 2>&1; then
    echo "== $m $setting r$r: FAILED ($dir/log.txt)"; tail -5 "$dir/log.txt"; return
  fi
  echo "== $m $setting r$r: done (train+eval $((SECONDS - start)) s)"
}
export -f one_run

# Prepare every data set the jobs read, one at a time, before any job starts.
if [[ "$DRY_RUN" != 1 ]]; then
  first=${MODELS%% *}
  for r in $REALIZATIONS; do
    "$PYTHON" scripts/_prepare_data.py "$CONFIG:$first" "$r" "$@"
  done
fi

# The job list: one job per line, its fields quoted for xargs.
jobs_file=$(mktemp)
for r in $REALIZATIONS; do
  for s in $SETTINGS; do
    models=$MODELS; [[ "$s" == plus ]] && models=$PLUS_MODELS
    [[ "$s" == multires ]] && models=$MULTIRES_MODELS
    for m in $models; do
      printf '%q ' "$m" "$s" "$r" "$@" >> "$jobs_file"; echo >> "$jobs_file"
    done
  done
done
echo "== $(wc -l < "$jobs_file") runs, $PARALLEL at a time, in $ROOT"
# -d '\n': each line is one argument, unparsed by xargs; eval undoes printf %q.
xargs -d '\n' -n 1 -P "$PARALLEL" bash -c 'eval "one_run $1"' _ < "$jobs_file"
rm -f "$jobs_file"
