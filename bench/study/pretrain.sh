#!/usr/bin/env bash
# Study step 1-3: synthetic data, SaDL pretraining with a per-epoch probe, then the probe of random and SaDL.
set -euo pipefail
PY=${PY:-.venv/bin/python}
DC=${DC:-$(dirname "$PY")/densechange}
OUT=${OUT:-runs/study}
[ -d "$OUT/scenes" ] || $DC synth "$OUT/scenes" kind=image-mask n=1024 size=128 seed=10
[ -d "$OUT/pairs" ] || $DC synth "$OUT/pairs" kind=change n=240 size=128 seed=11
# Pretraining reads the first 384 training scenes (list/train384.txt): four short epochs, each ending with a probe.
head -384 "$OUT/scenes/list/train.txt" > "$OUT/scenes/list/train384.txt"
[ -f "$OUT/sadl/encoder.safetensors" ] || $DC pretrain --config configs/pretrain/demo.yaml \
    data.root="$OUT/scenes" data.split=train384 trainer.epochs=4 trainer.batch_size=16 trainer.log_every=4 \
    trainer.save_every=8 trainer.resume=auto probe.every=1 probe.data="$OUT/scenes" probe.split=val \
    probe.max_images=64 run.dir="$OUT/sadl"
for encoder in random "$OUT/sadl/encoder.safetensors"; do
    $DC probe encoder="$encoder" data.root="$OUT/scenes" data.split=val data.max_images=64
done | tee "$OUT/probe.txt"
