#!/usr/bin/env bash
# One prepared run for a lent GPU (issue 8): time the step, then train the shipped recipe, the seed
# recipe, the seed architecture with the usual DCGAN settings (lr 2e-4, real labels capped at 1; known
# FID-5k 53.49 after 98 epochs) and WGAN-GP side by side for the same wall time, and bring back what
# is needed to export and evaluate here (Generator.pth, generator.json, losses, samples; never the data).
#
# Here, first:  mkdir -p data && cp ../shared/data/anime-faces-64-compact.zip data/ && echo data/ >> .git/info/exclude
# Then:         run(command="bash scripts/gpu_session.sh", carry=["data"], timeout_s=560)
# Tune with:    MINUTES=7 BEST_ARGS="--g-width 128 --batch-size 256 --lr-g 2e-4" bash scripts/gpu_session.sh
# Afterwards, here: unpack runs.tgz, then bash scripts/ship_model.sh runs/<run> (export, parity, FID-5k).
set -euo pipefail
MINUTES=${MINUTES:-7}
DATA=${DATA:-data/anime-faces-64-compact.zip}
OUT=${OUT:-/tmp/gpu-out}
BEST_ARGS=${BEST_ARGS:-}
mkdir -p "$OUT" runs
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 bench/train_speed.py --device cuda --recipe best --steps 30 $BEST_ARGS | tee -a "$OUT/gpu.txt"
common=(--data "$DATA" --device cuda --max-minutes "$MINUTES" --quiet --log-every 20 --checkpoint-minutes 2)
python3 -m trainer.train "${common[@]}" --recipe best --epochs 100000 --out runs/best $BEST_ARGS > "$OUT/best.log" 2>&1 &
python3 -m trainer.train "${common[@]}" --recipe seed-dcgan --epochs 100 --out runs/seed-dcgan > "$OUT/seed-dcgan.log" 2>&1 &
python3 -m trainer.train "${common[@]}" --recipe seed-dcgan --epochs 100 --lr 2e-4 --real-label 0.7,1.0 \
  --out runs/seed-dcgan-lr2e-4 > "$OUT/seed-dcgan-lr2e-4.log" 2>&1 &
python3 -m trainer.train "${common[@]}" --recipe wgan-gp --epochs 100000 --out runs/wgan-gp > "$OUT/wgan-gp.log" 2>&1 &
wait
# Generators and their cards (small), losses and the last sample grid per run; checkpoints stay behind.
tar czf "$OUT/runs.tgz" --exclude checkpoint.pt runs
ls -la "$OUT"
