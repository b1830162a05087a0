#!/usr/bin/env bash
# Export, evaluate and document a trained run; with SHIP=1, also ship it into demo/models/.
#
#   bash scripts/ship_model.sh RUN_DIR NAME [VARIANT] [LABEL] [NOTES]
#   SHIP=1 bash scripts/ship_model.sh runs/best generator fp16 "H200 best" "notes..."
#
# Writes build/RUN/ (RUN = the run folder's name: every variant that passes its parity gate,
# parity.json, eval*.json: FID-5k, duplicates and memorisation of each variant, all three evaluations
# side by side) and docs/models/RUN/ (card.json, samples.png = seeds 0-63, losses.png, the reports).
# With SHIP=1 the chosen variant becomes demo/models/NAME.onnx with its card demo/models/NAME.json
# and its steering directions demo/models/NAME.directions.json: the app and the CLI list it from
# there. SKIP_EVAL=1 reuses reports already in build/RUN/. DATA names the real faces the evaluation
# compares with (default data/anime-faces-64.zip; docs/data.md says how to get them).
set -euo pipefail
RUN=${1:?usage: ship_model.sh RUN_DIR NAME [VARIANT] [LABEL] [NOTES]}
NAME=${2:?usage: ship_model.sh RUN_DIR NAME [VARIANT] [LABEL] [NOTES]}
VARIANT=${3:-fp16}
LABEL=${4:-$NAME}
NOTES=${5:-}
DATA=${DATA:-data/anime-faces-64.zip}
if [ ! -f "$RUN/Generator.pth" ] || [ ! -f "$RUN/generator.json" ]; then
  echo "error: $RUN is not a run folder (no Generator.pth and generator.json): train one with python -m trainer.train" >&2
  exit 2
fi
if [ "${SKIP_EVAL:-0}" != 1 ] && [ ! -e "$DATA" ]; then
  echo "error: no data at $DATA for the evaluation: set DATA=PATH (docs/data.md), or SKIP_EVAL=1 with reports in build/" >&2
  exit 2
fi
B=build/$(basename "$RUN")
D=docs/models/$(basename "$RUN")
mkdir -p "$B" "$D"
# Parity failures of a variant are reported, not fatal: that variant is simply not written.
python -m export.to_onnx --checkpoint "$RUN" --out "$B/generator.onnx" --fp16 --int8 --report "$B/parity.json" || true
test -f "$B/generator.onnx"
if [ "${SKIP_EVAL:-0}" != 1 ]; then
  for v in "" -fp16 -int8; do
    if [ -f "$B/generator$v.onnx" ]; then
      python -m metrics.evaluate --generator "$B/generator$v.onnx" --data "$DATA" --out "$B/eval$v.json" --quiet &
    fi
  done
  wait
fi
# Again, with each variant's FID in its metadata (same weights, same parity figures).
python -m export.to_onnx --checkpoint "$RUN" --out "$B/generator.onnx" --fp16 --int8 --report "$B/parity.json" \
  --eval "$B/eval.json" || true
SRC=$B/generator.onnx
[ "$VARIANT" = fp32 ] || SRC=$B/generator-$VARIANT.onnx
card=(python -m scripts.model_card card --run "$RUN" --build "$B" --variant "$VARIANT" --label "$LABEL" --notes "$NOTES")
if [ "${SHIP:-0}" = 1 ]; then
  cp "$SRC" "demo/models/$NAME.onnx"
  "${card[@]}" --shipped "demo/models/$NAME.onnx" --out "demo/models/$NAME.json"
  python -m export.directions --model "demo/models/$NAME.onnx" | tee "$D/directions.md"
fi
"${card[@]}" --out "$D/card.json"
cp "$B"/eval*.json "$B/parity.json" "$D/" 2>/dev/null || true
cp "$RUN/losses.png" "$D/losses.png"
if [ -f "$RUN/evals.csv" ]; then  # evaluations during the run (--eval-every): the table and its picture
  cp "$RUN/evals.csv" "$D/evals.csv"
  python -m scripts.model_card curve --run "$RUN" --out "$D/evals.png"
fi
python -m demo.generate --model "$SRC" --count 64 --grid 8x8 --out "$D/samples.png" --quiet
echo "documented $RUN in $D"
if [ "${SHIP:-0}" = 1 ]; then
  python -m scripts.model_card menu --write   # README's and demo/models/README.md's tables, the page's menu
  echo "shipped demo/models/$NAME.onnx"
fi
