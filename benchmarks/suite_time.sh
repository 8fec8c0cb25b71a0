#!/usr/bin/env bash
# The README's test commands, timed from the checkout: the fast tier, then the whole suite. Writes
# OUT_DIR/suite_fast.txt and OUT_DIR/suite_full.txt: the load average before, wall and CPU time, pytest's
# summary and its slowest tests. Run it on an otherwise idle machine for the README's figures.
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
    /usr/bin/time -f "wall %e s, CPU %U s user + %S s system" \
      python -m pytest -p no:cacheprovider -q --durations=25 "$@" 2>&1 | grep -v '^\s*$' || true
  } > "$out/suite_$name.txt" 2>&1
  tail -n 3 "$out/suite_$name.txt"
}

timed fast -m "not slow"
timed full
