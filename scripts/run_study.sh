#!/usr/bin/env bash
# The study's three experiments in one resumable command, then its report.
#
#   bash scripts/run_study.sh [--dry-run] [--config.KEY=VALUE ...]
#
#   A (section 3, equivariance in existing models): cnn, dcn, dss_v1, sscnn,
#     with mnist_ses_vector_28 and mnist_disco as context;
#   C (section 4.2, DSS v1 vs v2 vs deformable DSS): dss_v1 (A's runs), dss_v2,
#     deform_dss at the study's widths, and mnist_dss_vector_28,
#     mnist_dss_v2_28, mnist_deform_dss_28 at the published table's ~495k;
#   B (section 4.1, DSS hyperparameters): configs/sweep_dss_mnist.py for
#     dss_v1 (realizations SWEEP_REALIZATIONS) and deform_dss
#     (DEFORM_SWEEP_REALIZATIONS); each sweep's default point is A's (or
#     C's) run of that realization, not trained again.
# Every run has one protocol, the published benchmark's (Sosnovik et al.
# 2020: the reference generator, bicubic L_s without antialias, stratified
# 10k / 2k / 50k split of the 70k digits, input normalisation, Adam lr 0.01,
# batch 128) except the length: EPOCHS epochs, lr x0.1 at EPOCHS/3 and
# 2 EPOCHS/3. Evaluation: accuracy on the first EVAL_IMAGES images of every
# test split (the six fixed-scale ones included), layer-wise Delta on 1,000
# test images at every factor of FACTORS that acts exactly on a
# representation (others are recorded as skipped, never rounded).
# Then `python -m scalenet.study` copies each run's results.json, config.json,
# metrics.jsonl and times into results/study_runs/ and writes results/study.md
# with its figures.
#
# Environment:
#   DATA_SOURCE   default ../shared/data/mnist (the 70k digits, checked against
#                 the pinned checksums); mnist_5k for the 5,000-digit offline
#                 variant (say so), download with network access
#   EPOCHS        default 5 (this 2-core CPU: results/study.md's runs); GPU: EPOCHS=60
#   REALIZATIONS  default "0 1 2" (A and C)
#   SWEEP_REALIZATIONS default "0 1"; DEFORM_SWEEP_REALIZATIONS default "0";
#                 set to "" to leave that model's sweep out (B for one model)
#   SWEEP_AXES    default every swept key of configs/sweep_dss_mnist.py, in its
#                 order; B runs axis by axis (e.g. "learning_rate model.base")
#   EXPERIMENTS   default "A C B" (in this order: B reuses A's and C's runs)
#   MODELS        optional: only these models of A and C (e.g. "cnn dcn")
#   EVAL_IMAGES   default 10000 images per test split (of 50,000)
#   JOBS          runs at a time (default: one per 2 cores, at least 1)
#   ROOT          default workdirs/study; runs in ROOT/<experiment>/<model>/r<k>
#   PYTHON        default .venv/bin/python
#   RENDER        default 1: build the report at the end (0: runs only)
# Resumable: a run with eval/results.json is skipped, an interrupted one
# resumes from its checkpoint (scripts/_run_one.sh); the sweeps skip their
# evaluated points. Extra arguments are config overrides for every run.
#
# The GPU variant (one accelerator host, many runs at once), as
# scripts/run_gpu_table.sh does for the table:
#   JOBS=8 EPOCHS=60 ROOT=/tmp/study bash scripts/run_study.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DRY_RUN=${DRY_RUN:-0}
if [[ "${1:-}" == "--dry-run" ]]; then DRY_RUN=1; shift; fi
PYTHON=${PYTHON:-.venv/bin/python}
DATA_SOURCE=${DATA_SOURCE:-../shared/data/mnist}
EPOCHS=${EPOCHS:-5}
REALIZATIONS=${REALIZATIONS:-"0 1 2"}
SWEEP_REALIZATIONS=${SWEEP_REALIZATIONS-"0 1"}  # set but empty: that sweep does not run
DEFORM_SWEEP_REALIZATIONS=${DEFORM_SWEEP_REALIZATIONS-"0"}
EXPERIMENTS=${EXPERIMENTS:-"A C B"}
EVAL_IMAGES=${EVAL_IMAGES:-10000}
JOBS=${JOBS:-$(( $(nproc) / 2 > 1 ? $(nproc) / 2 : 1 ))}
ROOT=${ROOT:-workdirs/study}
RENDER=${RENDER:-1}
FACTORS="(0.25, 0.3333333333333333, 0.4, 0.5, 0.6666666666666666, 0.7937005259840998, 0.9090909090909091, 1.1, 1.5, 2.0)"

if [[ "$DATA_SOURCE" != mnist_5k && "$DATA_SOURCE" != download && ! -d "$DATA_SOURCE" ]]; then
  echo "DATA_SOURCE=$DATA_SOURCE is not a directory: give the folder of the four MNIST" \
       "idx files, or DATA_SOURCE=mnist_5k for the 5,000-digit offline variant." >&2
  exit 2
fi
if ! [[ "$EPOCHS" =~ ^[1-9][0-9]*$ ]]; then echo "EPOCHS must be a positive integer." >&2; exit 2; fi
for e in $EXPERIMENTS; do
  [[ "$e" == A || "$e" == B || "$e" == C ]] || { echo "EXPERIMENTS may hold A, B, C; got '$e'." >&2; exit 2; }
done
if [[ "$DRY_RUN" != 1 && "$JOBS" -gt 1 ]]; then  # No two jobs build one data set.
  for r in $REALIZATIONS $SWEEP_REALIZATIONS; do
    "$PYTHON" scripts/_prepare_data.py configs/dss_v1_mnist.py "$r" \
        --config.data_source="$DATA_SOURCE" --config.generator=reference "$@"
  done
fi
echo "== study: data $DATA_SOURCE, $EPOCHS epochs, realizations $REALIZATIONS, experiments" \
     "$EXPERIMENTS, $JOBS run(s) at a time, in $ROOT"

common=(--config.data_source="$DATA_SOURCE" --config.num_epochs="$EPOCHS"
        "--config.lr_decay_epochs=($(( (EPOCHS + 1) / 3 )), $(( (2 * EPOCHS + 1) / 3 )))"
        --config.generator=reference --config.rescale.method=cubic
        --config.rescale.antialias=False --config.input_norm=reference
        "--config.eval_equivariance_factors=$FACTORS" --config.eval_split_images="$EVAL_IMAGES")

jobs_file=$(mktemp)
trap 'rm -f "$jobs_file"' EXIT
add() {  # add DIR CONFIG [overrides]: one run of the current experiment's job list.
  printf '%q ' "$@" >> "$jobs_file"; echo >> "$jobs_file"
}
link() {  # link NAME TARGET: NAME is TARGET's run (relative symlink), not a new one.
  [[ "$DRY_RUN" == 1 || -e "$1" ]] && return 0
  mkdir -p "$(dirname "$1")"
  ln -s "$(realpath -m --relative-to="$(dirname "$1")" "$2")" "$1"  # -m: TARGET may not exist yet
}
run_jobs() {  # Runs the job list, JOBS at a time, then empties it.
  export DRY_RUN PYTHON
  xargs -d '\n' -n 1 -P "$JOBS" bash -c 'eval "bash scripts/_run_one.sh $1"' _ < "$jobs_file"
  : > "$jobs_file"
}
study_config() {  # The study's config file of a model.
  case $1 in
    mnist_*) echo "configs/sesn_table.py:$1" ;;
    *) echo "configs/$1_mnist.py" ;;
  esac
}

for e in $EXPERIMENTS; do
  case $e in
    A) models="cnn dcn dss_v1 sscnn mnist_ses_vector_28 mnist_disco" ;;
    C) models="dss_v2 deform_dss mnist_dss_vector_28 mnist_dss_v2_28 mnist_deform_dss_28" ;;
    B) models="" ;;
  esac
  if [[ -n "${MODELS:-}" ]]; then
    keep=""; for m in $models; do [[ " $MODELS " == *" $m "* ]] && keep="$keep $m"; done
    models=$keep
  fi
  for r in $REALIZATIONS; do
    for m in $models; do
      add "$ROOT/$e/$m/r$r" "$(study_config "$m")" --config.realization="$r" \
          --config.seed="$r" "${common[@]}" "$@"
    done
    if [[ "$e" == C ]]; then link "$ROOT/C/dss_v1/r$r" "$ROOT/A/dss_v1/r$r"; fi
  done
  if [[ "$e" == B ]]; then
    # Axis by axis, each axis to all its realizations before the next: a
    # stopped study leaves whole axes with n realizations, not n=1 everywhere.
    axes=${SWEEP_AXES:-$(PYTHONPATH=. "$PYTHON" -c 'from configs import sweep_dss_mnist as s
print(" ".join(k for k, _ in s.get_config().sweep))')}
    # A misspelt axis fails now, not after hours of the others.
    PYTHONPATH=. "$PYTHON" -c 'import sys
from configs import sweep_dss_mnist as s
for axis in sys.argv[1:]:
  s.get_config("only=" + axis)' $axes || exit 2
    for spec in "dss_v1:$SWEEP_REALIZATIONS" "deform_dss:$DEFORM_SWEEP_REALIZATIONS"; do
      m=${spec%%:*}
      for axis in $axes; do
        for r in ${spec#*:}; do
          arg=only=$axis; [[ "$m" == deform_dss ]] && arg=deform_dss,$arg
          base=$ROOT/A/$m/r$r; [[ "$m" == deform_dss ]] && base=$ROOT/C/$m/r$r
          link "$ROOT/B/$m/r$r/base" "$base"
          cmd=("$PYTHON" sweep.py --config "configs/sweep_dss_mnist.py:$arg"
               --workdir "$ROOT/B/$m/r$r" --config.realization="$r" --config.seed="$r"
               "${common[@]}" --config.progress_bar=false "$@")
          printf '%q ' "${cmd[@]}"; echo
          [[ "$DRY_RUN" == 1 ]] || "${cmd[@]}"
        done
      done
    done
  else
    run_jobs
  fi
done

if [[ "$RENDER" == 1 ]]; then
  cmd=("$PYTHON" -m scalenet.study "$ROOT" --runs-out results/study_runs --out results/study.md)
  [[ -f results/study_notes.md ]] && cmd+=(--notes results/study_notes.md)
  printf '%q ' "${cmd[@]}"; echo
  [[ "$DRY_RUN" == 1 ]] || "${cmd[@]}"
fi
