#!/bin/bash
# The VAE likelihoods compared (benchmarks/results/2026-12-02/vae_likelihoods.txt), run from the
# repository root, then: python benchmarks/vae_likelihoods.py --data-dir DIR runs/lik-gaussian runs/lik-gaussian-pixel runs/lik-logistic
# AE once, then one VAE per likelihood started from it; seed arch, 3 epochs each, the first 6,000
# training images after the seeded shuffle (a busy machine), seed 0
set -e
export OMP_NUM_THREADS=1
C="--arch seed --epochs 3 --seed 0 --limit-train 6000 --no-download --no-progress"
fmnist train --model ae $C --run-dir runs/lik-ae
for k in gaussian gaussian-pixel logistic; do
  fmnist train --model vae $C --vae-likelihood $k --ae-run runs/lik-ae --run-dir runs/lik-$k
done
echo ALL DONE
