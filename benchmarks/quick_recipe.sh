#!/usr/bin/env bash
# The README's quick recipe as a user types it, in an empty folder, timed; then `fmnist evaluate`
# on its bundle. Prints the wall times and what the commands printed (progress bars left out).
#
#     FMNIST_DATA=DIR bash benchmarks/quick_recipe.sh OUT_DIR     # writes OUT_DIR/quick_recipe.txt, quick_evaluate.json
set -euo pipefail
out=$(realpath "${1:?usage: quick_recipe.sh OUT_DIR}")
export FMNIST_DATA=$(realpath "${FMNIST_DATA:?set FMNIST_DATA to the folder holding FashionMNIST/raw}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
load=$(cut -d' ' -f1-3 /proc/loadavg)
recipe="fmnist train --arch seed --epochs 3 --iw-samples 10 --run-dir runs/quick && fmnist export --run-dir runs/quick"
timed() {  # LOG CMD...: run CMD into LOG; its "wall user system" seconds into LOG.time
  local log=$1
  shift
  /usr/bin/time -f "%e %U %S" -o "$log.time" "$@" > "$log" 2>&1
}
timed train.log fmnist train --arch seed --epochs 3 --iw-samples 10 --run-dir runs/quick
timed export.log fmnist export --run-dir runs/quick
{
  echo "$recipe"
  echo "$(nproc) CPUs, load average before: $load"
  cat train.log.time export.log.time | awk '{ w[NR] = $1; c[NR] = $2 + $3 } END {
    printf "wall time: train %.1f s, export %.1f s, total %.1f s (%.2f min)\n", w[1], w[2], w[1] + w[2], (w[1] + w[2]) / 60
    printf "CPU time (user + system): train %.1f s, export %.1f s, total %.1f s (%.2f min)\n", c[1], c[2], c[1] + c[2], (c[1] + c[2]) / 60
  }'
  cat train.log export.log | tr '\r' '\n' | sed 's/\x1b\[A//g' | grep -v -e '%|' -e '^Training:' -e '^Validation:' -e '^ *$'
} > "$out/quick_recipe.txt"
fmnist evaluate --artifacts artifacts --json > "$out/quick_evaluate.json"
cat "$out/quick_recipe.txt"
