#!/usr/bin/env bash
# One backbone through every stage on the CPU, a few steps each: pretrain (SaDL, embedded synthetic
# data) -> finetune (DeepCL from that encoder) -> predict a georeferenced GeoTIFF scene -> export to
# ONNX (verified against PyTorch) -> predict the same scene with ONNX Runtime. The last line says
# whether the two change maps agree.
#
#     bash bench/end_to_end.sh resnet50 [OUT]      # OUT defaults to runs/end_to_end/<backbone>
set -euo pipefail
cd "$(dirname "$0")/.."
BACKBONE=${1:-resnet50}
R=${2:-runs/end_to_end/$BACKBONE}
PY=${PYTHON:-.venv/bin/python}
DC=${DC:-$(dirname "$PY")/densechange}
WINDOW=${WINDOW:-512}  # the same window for both backends (a ViT's ONNX graph takes only its export's window)
rm -rf "$R/pre" "$R/ft"
mkdir -p "$R"
$DC pretrain --config configs/pretrain/demo.yaml data.root=synthetic model.backbone="$BACKBONE" model.init=random \
    trainer.max_steps=2 trainer.epochs=1 run.dir="$R/pre" 2>&1 | grep -v 'it/s\]' | tail -1
$DC finetune --config configs/finetune/demo.yaml model.encoder="$R/pre/encoder.safetensors" model.backbone="$BACKBONE" \
    trainer.max_steps=2 trainer.epochs=1 run.dir="$R/ft" 2>&1 | grep -v 'it/s\]' | tail -1
$PY -c "import sys; sys.path.insert(0, 'bench'); from pathlib import Path; from predict import random_pair; random_pair(Path('$R'), 1536)"
$DC predict checkpoint="$R/ft/final.safetensors" a="$R/a.tif" b="$R/b.tif" out="$R/change.tif" probability="$R/probability.tif" \
    precision=fp32 window.size="$WINDOW" progress=false
$DC export checkpoint="$R/ft/final.safetensors" out="$R/model.onnx" window.size="$WINDOW" 2>&1 | tail -1
$DC predict checkpoint="$R/model.onnx" a="$R/a.tif" b="$R/b.tif" out="$R/change_onnx.tif" \
    probability="$R/probability_onnx.tif" window.size="$WINDOW" progress=false
$PY -c "
import numpy as np, rasterio
with rasterio.open('$R/change.tif') as a, rasterio.open('$R/change_onnx.tif') as b:
    x, y = a.read(1), b.read(1)
with rasterio.open('$R/probability.tif') as p, rasterio.open('$R/probability_onnx.tif') as q:
    gap = float(np.abs(p.read(1).astype(np.float64) - q.read(1)).max())
print(f'$BACKBONE: {a.width}x{a.height} GeoTIFF in {a.crs}; PyTorch and ONNX Runtime change maps differ on '
      f'{np.mean(x != y):.4%} of pixels, quantised change probabilities (0-254) by at most {gap:.0f}')
"
