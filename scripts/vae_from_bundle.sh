#!/bin/bash
# The shipped bundle's VAE trained again with another likelihood, from the bundle's own AE (the run
# folder the bundle came from is not kept), and installed in place of the bundle only if it wins
# (scripts/vae_compare.py). Run from the repository root with the training extra installed.
#   scripts/vae_from_bundle.sh [LIKELIHOOD] [DATA_DIR]
# Leaves runs/vae-LIKELIHOOD (the run, resumable), runs/bundle-LIKELIHOOD (the bundle with the new
# VAE) and runs/eval-{old,new}.json; prints the comparison.
set -euo pipefail
KIND=${1:-logistic}
DATA=${2:-${FMNIST_DATA:?give DATA_DIR or set FMNIST_DATA}}
BUNDLE=src/fmnist/default_bundle
RUN=runs/vae-$KIND
NEW=runs/bundle-$KIND
[ -f "$RUN/ae/best.ckpt" ] || python -m fmnist.export.ae_from_bundle "$BUNDLE" "$RUN" --data-dir "$DATA"
if [ ! -f "$RUN/vae/summary.json" ]; then
  if [ -f "$RUN/vae/last.ckpt" ]; then FLAGS=(--resume); else FLAGS=(--model vae --vae-likelihood "$KIND"); fi
  fmnist train "${FLAGS[@]}" --run-dir "$RUN" --data-dir "$DATA" --no-progress
fi
rm -rf "$NEW" && mkdir -p "$NEW" && cp -a "$BUNDLE/." "$NEW/"
python -m fmnist.export.refit "$NEW" --vae-run "$RUN" --data-dir "$DATA"
[ -f runs/eval-old.json ] || fmnist evaluate --json --artifacts "$BUNDLE" --data-dir "$DATA" > runs/eval-old.json
fmnist evaluate --json --artifacts "$NEW" --data-dir "$DATA" > runs/eval-new.json
if python scripts/vae_compare.py runs/eval-old.json runs/eval-new.json; then
  STAGE=$(mktemp -d -p "$(dirname "$BUNDLE")" ".$(basename "$BUNDLE").tmp-$$-XXXXXX")
  cp -a "$NEW/." "$STAGE/"
  python -c 'import sys; from pathlib import Path; from fmnist.export import install; install.install(Path(sys.argv[1]), Path(sys.argv[2]))' "$STAGE" "$BUNDLE"
  echo "installed $NEW in place of $BUNDLE"
fi
