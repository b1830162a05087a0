#!/usr/bin/env bash
# One call of the long training run on the GPU machine (the device tool): continue the published
# state in checkpoints/ (or start the run), train until BUDGET_S seconds after this script began,
# and leave a complete snapshot in $OUT every ~90 s, so even a killed call returns the latest one.
#
#   here:   python -m scripts.long_run prepare          # data + proxy into .gpu/, heavy files aside
#   device: run(command="bash scripts/gpu_session.sh", carry=[".gpu"], timeout_s=570)
#   here:   python -m scripts.long_run unpack /work/.device/files   # publish, run folder, files back
#
# Settings (environment): BUDGET_S (510: the whole call, data loading and saving included, ends by
# then), SNAPSHOT_S (90), STATE (checkpoints/sngan-long), DATA (.gpu/anime-faces-64-q80.zip), PROXY
# (.gpu/proxy.pt), RECIPE (sngan, for a fresh start), DEVICE (cuda), PYTHON (python3), OUT,
# EXTRA (more trainer.long_run flags; the CPU tests use it for tiny networks).
set -uo pipefail
START=$(date +%s.%N)  # the budget counts from here, before Python even starts
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:?OUT must name the output folder}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } | tee "$OUT/session.log"
# shellcheck disable=SC2086
$PY -m trainer.long_run --data "${DATA:-.gpu/anime-faces-64-q80.zip}" --state "${STATE:-checkpoints/sngan-long}" \
  --out "$OUT" --started-at "$START" --budget-s "${BUDGET_S:-510}" --snapshot-s "${SNAPSHOT_S:-90}" \
  --proxy "${PROXY:-.gpu/proxy.pt}" --recipe "${RECIPE:-sngan}" --device "${DEVICE:-cuda}" \
  --bf16 --channels-last ${EXTRA:-} 2>&1 | tee -a "$OUT/session.log"
rc=${PIPESTATUS[0]}
ls -la "$OUT" | tee -a "$OUT/session.log"
echo "call: $(( $(date +%s) - ${START%.*} )) s, exit $rc" | tee -a "$OUT/session.log"
exit "$rc"
