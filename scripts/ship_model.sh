#!/usr/bin/env bash
# Export, evaluate and document a trained run; with SHIP=1, also ship it into demo/models/.
#
#   bash scripts/ship_model.sh RUN [NAME] [VARIANT] [LABEL] [NOTES]
#   SHIP=1 bash scripts/ship_model.sh runs/best generator fp16 "H200 best" "notes..."
#   SHIP=1 bash scripts/ship_model.sh runs/report-dcgan/Generator-best.pth report-dcgan   # the run's best by FID
#
# RUN is a run folder (its Generator.pth) or a checkpoint in one (Generator-best.pth, with its
# generator-best.json). Writes build/TAG/ (TAG = the run folder's name, "-best" added for
# Generator-best.pth: every variant that passes its parity gate, parity.json, eval*.json: FID-5k,
# duplicates and memorisation of each variant) and docs/models/TAG/ (card.json, samples.png = seeds
# 0-63, losses.png, the reports). With SHIP=1 the chosen variant becomes demo/models/NAME.onnx with
# its card demo/models/NAME.json and its steering directions demo/models/NAME.directions.json: the
# app, the CLI and the browser page list it from there. SKIP_EVAL=1 reuses reports already in
# build/TAG/. DATA names the real faces the evaluation compares with (default
# data/anime-faces-64.zip; docs/data.md says how to get them). DIRECTIONS_SAMPLES: faces the
# steering directions are fitted on (default 10000).
set -euo pipefail
USAGE="usage: ship_model.sh RUN [NAME] [VARIANT] [LABEL] [NOTES]"
RUN=${1:?$USAGE}
if [ -d "$RUN" ]; then CKPT=$RUN/Generator.pth; else CKPT=$RUN; RUN=$(dirname "$RUN"); fi
if [ ! -f "$CKPT" ]; then
  echo "error: no $CKPT: give a run folder with Generator.pth (python -m trainer.train writes one) or a checkpoint in it" >&2
  exit 2
fi
TAG=$(basename "$RUN")
case "$(basename "$CKPT")" in
  Generator.pth) ;;
  Generator-*.pth) TAG=$TAG-$(basename "$CKPT" .pth | sed 's/^Generator-//') ;;
  *) echo "error: $CKPT is not a run's Generator.pth or Generator-NAME.pth" >&2; exit 2 ;;
esac
NAME=${2:-$TAG}
VARIANT=${3:-fp16}
LABEL=${4:-$NAME}
NOTES=${5:-}
DATA=${DATA:-data/anime-faces-64.zip}
if [ "${SKIP_EVAL:-0}" != 1 ] && [ ! -e "$DATA" ]; then
  echo "error: no data at $DATA for the evaluation: set DATA=PATH (docs/data.md), or SKIP_EVAL=1 with reports in build/" >&2
  exit 2
fi
B=build/$TAG
D=docs/models/$TAG
mkdir -p "$B" "$D"
# Parity failures of a variant are reported, not fatal: that variant is simply not written.
python -m export.to_onnx --checkpoint "$CKPT" --out "$B/generator.onnx" --fp16 --int8 --report "$B/parity.json" || true
test -f "$B/generator.onnx"
if [ "${SKIP_EVAL:-0}" != 1 ]; then
  for v in "" -fp16 -int8; do
    if [ -f "$B/generator$v.onnx" ]; then
      python -m metrics.evaluate --generator "$B/generator$v.onnx" --data "$DATA" --out "$B/eval$v.json" --quiet &
    fi
  done
  wait
fi
if [ -f "$B/eval.json" ]; then  # again, with each variant's FID in its metadata (same weights, same parity figures)
  python -m export.to_onnx --checkpoint "$CKPT" --out "$B/generator.onnx" --fp16 --int8 --report "$B/parity.json" \
    --eval "$B/eval.json" || true
fi
SRC=$B/generator.onnx
[ "$VARIANT" = fp32 ] || SRC=$B/generator-$VARIANT.onnx
card=(python -m scripts.model_card card --run "$CKPT" --build "$B" --variant "$VARIANT" --label "$LABEL" --notes "$NOTES")
if [ "${SHIP:-0}" = 1 ]; then
  cp "$SRC" "demo/models/$NAME.onnx"
  "${card[@]}" --shipped "demo/models/$NAME.onnx" --out "demo/models/$NAME.json"
  python -m export.directions --model "demo/models/$NAME.onnx" --samples "${DIRECTIONS_SAMPLES:-10000}" | tee "$D/directions.md"
fi
"${card[@]}" --out "$D/card.json"
cp "$B"/eval*.json "$B/parity.json" "$D/" 2>/dev/null || true
if [ -f "$RUN/losses.png" ]; then cp "$RUN/losses.png" "$D/losses.png"; fi
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
