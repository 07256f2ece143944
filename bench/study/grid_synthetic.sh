#!/usr/bin/env bash
# Study step 4: the grid on the synthetic change pairs (pseudo-changes in every pair, and again on the test pairs).
# Encoders random and SaDL, variants deepcl / gamma0 / no_metric, 20% and 100% of the labels, 3 seeds.
# 54 optimiser steps of 8 random 96x96 crops per run, one crop per pair and epoch (data.crops_per_epoch=144):
# 3 epochs of the 144 training pairs, 18 of the 29-pair subset.
# SEEDS=0 (or 1, 2) runs one seed's cells only; the run without SEEDS skips finished cells and writes the tables.
set -euo pipefail
PY=${PY:-.venv/bin/python}
DC=${DC:-$(dirname "$PY")/densechange}
OUT=${OUT:-runs/study}
$DC compare --config configs/finetune/demo.yaml grid.out="$OUT/synthetic" \
    "grid.encoders=[random,sadl=$OUT/sadl/encoder.safetensors]" "grid.variants=[deepcl,gamma0,no_metric]" \
    "grid.fractions=[0.2,1]" "grid.seeds=[${SEEDS:-0,1,2}]" grid.steps=54 \
    "grid.baselines=[random/deepcl,sadl/no_metric,sadl/deepcl,random/deepcl@1]" \
    data.root="$OUT/pairs" data.crop_size=96 data.crops_per_epoch=144 data.val_split=null
