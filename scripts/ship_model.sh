#!/usr/bin/env bash
# Export, evaluate and document a trained run as the shipped default model (issue 8).
#   bash scripts/ship_model.sh runs/cpu-best-w64
# Writes demo/models/ (the ONNX files and the run's generator.json) and docs/ (figures, reports).
set -euo pipefail
RUN=${1:?usage: ship_model.sh RUN_DIR}
DATA=${DATA:-../shared/data/anime-faces-64.zip}
mkdir -p docs demo/models
python export/to_onnx.py --checkpoint "$RUN" --out build/generator.onnx --fp16 --int8 --report docs/parity.json
for v in "" -fp16 -int8; do   # FID-5k of each variant, the three side by side
  python -m trainer.evaluate --generator "build/generator$v.onnx" --data "$DATA" --out "docs/eval$v.json" --quiet &
done
wait
# Re-export with each variant's FID in its metadata (same weights, same parity figures).
python export/to_onnx.py --checkpoint "$RUN" --out build/generator.onnx --fp16 --int8 --report docs/parity.json \
  --eval docs/eval.json \
  --model-card "$(cat "$RUN/MODEL_CARD.txt" 2>/dev/null || true)"
cp "$RUN/generator.json" demo/models/generator.json
cp "$RUN/losses.png" docs/losses.png
