#!/usr/bin/env bash
# The whole study behind docs/study.md (resumable: finished steps and cells are skipped).
# On a CPU shared with other jobs, one thread per process and one process per seed use it best:
# the seeds of each grid run side by side (OMP_NUM_THREADS=1), then one more call writes the tables.
set -euo pipefail
here=$(dirname "$0")
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/study}
mkdir -p "$OUT"
$PY bench/synthetic_stats.py | tee "$OUT/synthetic_stats.txt"
bash "$here/pretrain.sh"
for grid in grid_synthetic grid_levir grid_budget; do
    for seed in 0 1 2; do SEEDS=$seed OMP_NUM_THREADS=1 bash "$here/$grid.sh" > "$OUT/$grid.seed$seed.log" 2>&1 & done
    wait
    bash "$here/$grid.sh"
done
# How far finetuning moved the pretrained encoder: SaDL DeepCL cells at 54 and at 108 steps.
for grid in synthetic synthetic-108; do
    $PY bench/study/washout.py "$OUT/sadl/encoder.safetensors" "$OUT/$grid"/sadl/deepcl/f1/s* | tee "$OUT/washout-$grid.txt"
done
# Where hardness weighting (gamma 2) puts the metric loss's weight, in the DeepCL and gamma-0 detectors.
for variant in deepcl gamma0; do
    $PY bench/study/hardness.py "$OUT"/synthetic/random/$variant/f1/s*/final.safetensors --data "$OUT/pairs" | tee "$OUT/hardness-$variant.txt"
done
