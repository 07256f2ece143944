#!/usr/bin/env bash
# Study step 4b: do the differences of the synthetic grid hold with a longer finetuning? Its cells with all
# the labels again at twice its budget (108 optimiser steps of 8 random 96x96 crops): random and SaDL with
# DeepCL, and SaDL with gamma 0 (random init with gamma 0 is left out to keep the step under 40 minutes).
# SEEDS=0 (or 1, 2) runs one seed's cells only; the run without SEEDS skips finished cells and writes the tables.
set -euo pipefail
PY=${PY:-.venv/bin/python}
DC=${DC:-$(dirname "$PY")/densechange}
OUT=${OUT:-runs/study}
common=(--config configs/finetune/demo.yaml "grid.fractions=[1]" "grid.seeds=[${SEEDS:-0,1,2}]" grid.steps=108
        data.root="$OUT/pairs" data.crop_size=96 data.crops_per_epoch=144 data.val_split=null)
$DC compare grid.out="$OUT/synthetic-108" "grid.encoders=[sadl=$OUT/sadl/encoder.safetensors]" \
    "grid.variants=[deepcl,gamma0]" "grid.baselines=[sadl/deepcl]" "${common[@]}"
$DC compare grid.out="$OUT/synthetic-108-random" "grid.encoders=[random]" "grid.variants=[deepcl]" "${common[@]}"
