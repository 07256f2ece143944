#!/usr/bin/env bash
# Study step 4b: does a longer finetuning wash out the initialisation? The synthetic grid's DeepCL
# cells again at three times its budget: 162 optimiser steps of 8 random 96x96 crops.
# SEEDS=0 (or 1, 2) runs one seed's cells only; the run without SEEDS skips finished cells and writes the tables.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/study}
$PY -m finetune.compare --config configs/finetune/demo.yaml --out "$OUT/synthetic-162" \
    --encoders random,sadl="$OUT/sadl/encoder.safetensors" --variants deepcl \
    --fractions 0.2,1 --seeds "${SEEDS:-0,1,2}" --steps 162 \
    --baseline random/deepcl --baseline random/deepcl@1 \
    data.root="$OUT/pairs" data.crop_size=96 data.crops_per_epoch=144 data.val_split=null
