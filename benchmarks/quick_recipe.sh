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
recipe="fmnist train --arch seed --epochs 3 --iw-samples 10 --run-dir runs/quick && fmnist export --run-dir runs/quick"
t0=$(date +%s.%N)
fmnist train --arch seed --epochs 3 --iw-samples 10 --run-dir runs/quick > train.log 2>&1
t1=$(date +%s.%N)
fmnist export --run-dir runs/quick > export.log 2>&1
t2=$(date +%s.%N)
{
  echo "$recipe"
  awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN { printf "wall time: train %.1f s, export %.1f s, total %.1f s\n", b - a, c - b, c - a }'
  cat train.log export.log | tr '\r' '\n' | sed 's/\x1b\[A//g' | grep -v -e '%|' -e '^Training:' -e '^Validation:' -e '^ *$'
} > "$out/quick_recipe.txt"
fmnist evaluate --artifacts artifacts --json > "$out/quick_evaluate.json"
cat "$out/quick_recipe.txt"
