#!/usr/bin/env bash
# DeepCL's pseudo-change claim measured with the flip rate, nuisance-induced false alarms and AUROC
# (bench/results/study-pseudo-change-cpu-2core-2026-12-05.md). Random init only; resumable.
#   1. budget sweep: random/deepcl seed 0 at 108, 216, 432, 864 optimiser steps of 8 crops of 96² (synthetic pairs);
#   2. the grid at 432 steps, then at 864: deepcl, no_metric, gamma0 x seeds 0, 1, 2;
#   3. the LEVIR-CD cells with the protocol of grid_levir.sh (48 steps of 4 crops of 256², test tile whole);
#   4. the evaluation nuisances against the pseudo-changes of real LEVIR-CD pairs.
# Every cell is scored by densechange evaluate pseudo_change=each: all nuisances together and each alone.
# SEEDS=0 (or 1, 2) runs one seed's cells only (one process per seed, OMP_NUM_THREADS=1, side by side).
set -euo pipefail
PY=${PY:-.venv/bin/python}
DC=${DC:-$(dirname "$PY")/densechange}
OUT=${OUT:-runs/pcs}
SHARED=${SHARED:-../shared/data}
BUDGET=${BUDGET:-432}
[ -d "$OUT/pairs" ] || $DC synth "$OUT/pairs" kind=change n=240 size=128 seed=11
syn=(--config configs/finetune/demo.yaml "grid.encoders=[random]" "grid.fractions=[1]"
     data.root="$OUT/pairs" data.crop_size=96 data.crops_per_epoch=144 data.val_split=null)
if [ -z "${SEEDS:-}" ] || [ "${SEEDS}" = 0 ]; then
    for steps in 108 216 432 864; do
        $DC compare "${syn[@]}" grid.out="$OUT/synthetic-$steps" "grid.variants=[deepcl]" "grid.seeds=[0]" grid.steps="$steps"
    done
fi
for steps in $BUDGET 864; do  # the grid, then again at twice the budget
    $DC compare "${syn[@]}" grid.out="$OUT/synthetic-$steps" "grid.variants=[deepcl,no_metric,gamma0]" \
        "grid.seeds=[${SEEDS:-0,1,2}]" grid.steps="$steps" "grid.baselines=[random/deepcl]"
done
if [ -d "$SHARED/levir-cd-1024" ]; then
    [ -f "$OUT/levir/list/test.txt" ] || $PY bench/study/levir_data.py "$SHARED/levir-cd-1024" "$OUT/levir"
    $DC compare --config configs/finetune/demo.yaml grid.out="$OUT/levir-48" "grid.encoders=[random]" \
        "grid.variants=[deepcl,no_metric,gamma0]" "grid.fractions=[1]" "grid.seeds=[${SEEDS:-0,1,2}]" grid.steps=48 \
        "grid.baselines=[random/deepcl]" \
        data.root="$OUT/levir" data.crop_size=256 data.val_split=null trainer.batch_size=4 \
        val.window.size=256 val.window.overlap=64
fi
$PY bench/study/nuisance_strength.py "$OUT/pairs" --levir "$SHARED/levir-cd-256" | tee "$OUT/nuisance_strength.txt"
# 5. The synthetic grid scored again under stronger nuisances, whose raw unchanged/changed difference ratio on
#    the synthetic test pairs (0.87) matches that of the real LEVIR-CD samples (0.89): strong_metrics.json per run.
STRONG=("nuisance.brightness=[0.5,1.5]" "nuisance.contrast=[0.6,1.4]" "nuisance.saturation=[0.4,1.6]"
        nuisance.hue=0.2 "nuisance.blur_sigma=[1.5,3.0]" nuisance.max_shift=6)
$PY bench/study/nuisance_strength.py "$OUT/pairs" --levir "$SHARED/levir-cd-256" brightness=[0.5,1.5] contrast=[0.6,1.4] \
    saturation=[0.4,1.6] hue=0.2 blur_sigma=[1.5,3.0] max_shift=6 | tee "$OUT/nuisance_strength_strong.txt"
for run in "$OUT/synthetic-$BUDGET"/random/*/f1/s*; do
    [ -f "$run/strong_metrics.json" ] || $DC evaluate checkpoint="$run/final.safetensors" pseudo_change=each \
        out="$run/strong_metrics.json" data.root="$OUT/pairs" data.split=test window.size=128 window.overlap=32 \
        window.margin=8 "${STRONG[@]}" > /dev/null
done
