#!/usr/bin/env bash
# One prepared session on a GPU machine: measure the trainer's speed, train the seed report's recipe
# for its 100 epochs and the candidate recipes one after another within a fixed budget, and pack
# what comes back into at most 8 files of at most 16 MiB (64 MiB in all).
#
#   mkdir -p data && cp ../shared/data/anime-faces-64-compact.zip data/    # the WebP copy, 49 MiB
#   bash scripts/gpu_session.sh                                            # on the GPU machine
#   python scripts/gpu_pack.py unpack <the files from $OUT> --runs runs/gpu  # back here
#   SHIP=1 bash scripts/ship_model.sh runs/gpu/<best candidate> generator fp16 "<label>"
#   SHIP=1 bash scripts/ship_model.sh runs/gpu/seed-dcgan seed-dcgan fp16 "<label>"
#
# Where everything sent to the GPU machine must fit 64 MiB (the data included), keep the shipped
# models and the browser runtime here for the call: list data/ and .offload/ in .git/info/exclude,
# `mv demo/models/*.onnx demo/web/vendor .offload/` before and move them back after; send data/ along.
#
# Settings (environment): MINUTES total training minutes (9), SEED_MINUTES cap for the seed recipe (3.5;
# 100 epochs take about 2.5 at 16,000 images/s), CANDIDATES ("resnet r3"; each gets an equal share of
# the rest), CAND_FLAGS ("--bf16 --channels-last"), EXTRA_ARGS (added to every training command),
# BENCH_STEPS (15; 0 skips the speed table), DATA, DEVICE (cuda), RUNS (runs/gpu-session), OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
MINUTES=${MINUTES:-9}
SEED_MINUTES=${SEED_MINUTES:-3.5}
CANDIDATES=${CANDIDATES:-resnet r3}
CAND_FLAGS=${CAND_FLAGS:---bf16 --channels-last}
EXTRA_ARGS=${EXTRA_ARGS:-}
BENCH_STEPS=${BENCH_STEPS:-15}
DATA=${DATA:-data/anime-faces-64-compact.zip}
DEVICE=${DEVICE:-cuda}
RUNS=${RUNS:-runs/gpu-session}
OUT=${OUT:-/tmp/gpu-out}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$RUNS/logs"
LOGS=$RUNS/logs
start=$(date +%s)
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch; print('torch', torch.__version__)"; } | tee "$LOGS/machine.txt"

if [ "$BENCH_STEPS" != 0 ]; then  # images/s per recipe and setting, and proof of a sync-free step loop
  # shellcheck disable=SC2086
  $PY bench/train_speed.py --device "$DEVICE" --steps "$BENCH_STEPS" --recipes "best,${CANDIDATES// /,}" \
    --settings tf32 bf16 bf16+cl $EXTRA_ARGS 2>&1 | tee "$LOGS/speed.txt" || echo "speed table failed" | tee -a "$LOGS/speed.txt"
fi

train() {  # name, minutes, recipe flags...
  local name=$1 minutes=$2
  shift 2
  mkdir -p "$RUNS/$name"
  # shellcheck disable=SC2086
  $PY -m trainer.train --data "$DATA" --device "$DEVICE" --out "$RUNS/$name" --quiet --log-every 50 \
    --checkpoint-minutes 100 --max-minutes "$minutes" "$@" $EXTRA_ARGS > "$RUNS/$name/train.log" 2>&1 \
    || echo "$name stopped with exit code $?" | tee -a "$LOGS/failures.txt"
  tail -n 3 "$RUNS/$name/train.log"
}

# The seed report's recipe exactly (fp32/TF32, BCELoss arithmetic), 100 epochs or SEED_MINUTES.
train seed-dcgan "$SEED_MINUTES" --recipe seed-dcgan --epochs 100
used=$(( ($(date +%s) - start) ))
n=$(wc -w <<< "$CANDIDATES")
share=$($PY -c "print(max(0.5, ($MINUTES * 60 - $used) / 60 / $n))")
for c in $CANDIDATES; do
  # shellcheck disable=SC2086
  train "$c" "$share" --recipe "$c" --epochs 100000 $CAND_FLAGS
done

runs=()
for d in "$RUNS"/*/; do [ -f "$d/Generator.pth" ] && runs+=("${d%/}"); done
$PY scripts/gpu_pack.py pack "${runs[@]}" --out "$OUT" --extra "$LOGS"/*.txt
ls -la "$OUT"
echo "session: $(( $(date +%s) - start )) s"
