#!/usr/bin/env bash
# Study step 5: a smaller grid on the real LEVIR-CD samples (skipped when ../shared/data is absent).
# Random init against the encoder pretrained on synthetic scenes, DeepCL, all 32 training crops, 3 seeds,
# 48 optimiser steps of 4 crops of 256x256 (six epochs); scored on the whole held-out tile.
set -euo pipefail
PY=${PY:-.venv/bin/python}
DC=${DC:-$(dirname "$PY")/densechange}
OUT=${OUT:-runs/study}
SHARED=${SHARED:-../shared/data}
if [ ! -d "$SHARED/levir-cd-1024" ]; then echo "no $SHARED/levir-cd-1024: LEVIR grid skipped"; exit 0; fi
[ -f "$OUT/levir/list/test.txt" ] || $PY bench/study/levir_data.py "$SHARED/levir-cd-1024" "$OUT/levir"
$DC compare --config configs/finetune/demo.yaml grid.out="$OUT/levir-48" \
    "grid.encoders=[random,sadl=$OUT/sadl/encoder.safetensors]" "grid.variants=[deepcl]" "grid.fractions=[1]" \
    "grid.seeds=[${SEEDS:-0,1,2}]" grid.steps=48 "grid.baselines=[random/deepcl]" \
    data.root="$OUT/levir" data.crop_size=256 data.val_split=null trainer.batch_size=4 \
    val.window.size=256 val.window.overlap=64
