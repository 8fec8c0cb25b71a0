#!/usr/bin/env bash
# The README's test commands, timed from the checkout: the fast tier, then the whole suite. Writes
# OUT_DIR/suite_fast.txt and OUT_DIR/suite_full.txt: the load average before, wall and CPU time, pytest's
# summary and its slowest tests, then per pytest-xdist worker the summed CPU and wall time of its tests
# (benchmarks/pytest_cpu.py) and the 25 costliest tests by CPU. Run it on an otherwise idle machine for
# the README's figures.
#
#     FMNIST_DATA=DIR bash benchmarks/suite_time.sh OUT_DIR
set -euo pipefail
out=$(realpath "${1:?usage: suite_time.sh OUT_DIR}")
export FMNIST_DATA=$(realpath "${FMNIST_DATA:?set FMNIST_DATA to the folder holding FashionMNIST/raw}")
cd "$(dirname "$0")/.."
mkdir -p "$out"

timed() {  # NAME PYTEST_ARGS...: one pytest run, timed, into OUT_DIR/suite_NAME.txt
  local name=$1
  shift
  {
    echo "pytest $* (git $(git rev-parse --short HEAD), $(nproc) CPUs)"
    echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    SUITE_CPU="$out/.cpu_$name" /usr/bin/time -f "wall %e s, CPU %U s user + %S s system" \
      python -m pytest -p no:cacheprovider -p benchmarks.pytest_cpu -q --durations=25 "$@" 2>&1 |
      grep -v '^\s*$' || true
    for f in "$out/.cpu_$name".*; do
      awk -v w="${f##*.}" '{c += $1; t += $2} END {printf "%s: %d tests, CPU %.0f s, wall %.0f s\n", w, NR, c, t}' "$f"
    done
    echo "costliest 25 by CPU (seconds CPU, wall; CPU counts the children a test waited for):"
    sort -rn "$out/.cpu_$name".* | head -25 || true  # head's early exit is not a failure
    rm -f "$out/.cpu_$name".*
  } > "$out/suite_$name.txt" 2>&1
  grep -E "(passed|failed|error).* in [0-9.]+s|^wall " "$out/suite_$name.txt" || true
}

timed fast -m "not slow"
timed full
