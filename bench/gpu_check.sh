#!/usr/bin/env bash
# The GPU check, on one CUDA device, in under 10 minutes: the tests marked `cuda` (an nccl process
# group of one rank, bf16 channels-last SaDL and DeepCL steps, compile, windowed prediction, faiss-gpu
# when installed), then the step benchmarks in bf16 + channels-last, eager and compiled, and the
# prediction speed (PyTorch fp32 and auto, ONNX Runtime's CUDA provider when installed, the forward
# bound). Writes
# bench/results/<gpu-name>-<date>.md and prints it. CI has no GPU: there the `cuda` tests skip.
#
#     bash bench/gpu_check.sh                 # uses .venv/bin/python when it exists
#     PYTHON=python3 bash bench/gpu_check.sh
#
# Every part has its own time limit (170 + 80 + 140 + 60 + 90 s = 9 minutes at most), so the whole
# check ends within 9.5 minutes even when a part hangs; a part that runs out of time is marked.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi

gpu="$("$PY" -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")')"
if [ -z "$gpu" ]; then
    echo "gpu_check: no CUDA device visible to $PY; nothing to check." >&2
    exit 2
fi
slug="$(printf '%s' "$gpu" | tr '[:upper:]' '[:lower:]' | sed -e 's/^nvidia //' -e 's/[^a-z0-9]\{1,\}/-/g' -e 's/^-//' -e 's/-$//')"
out="bench/results/${slug}-$(date -u +%Y-%m-%d).md"
failed=0

# section TITLE LIMIT_S COMMAND...: the command's last lines, its exit status, in a code block.
section() {
    local title="$1" limit="$2"
    shift 2
    local start=$SECONDS log
    log="$(mktemp)"
    timeout --signal=TERM --kill-after=5 "$limit" "$@" >"$log" 2>&1
    local status=$?
    [ "$status" -eq 0 ] || failed=1
    {
        echo "## $title"
        echo
        echo '```'
        echo "\$ $*"
        grep -v -e '^\s*$' -e 'it/s\]' "$log" | tail -n 25
        echo '```'
        case "$status" in
            0) echo "exit 0, $((SECONDS - start)) s" ;;
            124|137) echo "**stopped at its ${limit} s limit**" ;;
            *) echo "**exit $status**, $((SECONDS - start)) s" ;;
        esac
        echo
    } >>"$out"
    rm -f "$log"
}

{
    echo "# GPU check: $gpu, $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo '```'
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>/dev/null || true
    "$PY" -c 'import torch, faiss; print("torch", torch.__version__, "cuda", torch.version.cuda, "| faiss", faiss.__version__, "GPUs:", faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0)'
    echo '```'
    echo
} >"$out"

section "Tests marked cuda" 170 "$PY" -m pytest -q -m cuda tests -p no:cacheprovider
section "bench/pretrain_step.py, bf16 (auto), channels-last, eager" 80 \
    "$PY" bench/pretrain_step.py --device cuda --batch 64 --size 256 --precision auto --steps 10 --warmup 3
section "bench/pretrain_step.py, bf16 (auto), channels-last, compiled" 140 \
    "$PY" bench/pretrain_step.py --device cuda --batch 64 --size 256 --precision auto --steps 10 --warmup 3 --compile
section "bench/finetune_step.py, bf16 (auto), channels-last, eager" 60 \
    "$PY" bench/finetune_step.py --device cuda --batch 32 --size 256 --precision auto --steps 10 --warmup 3
section "bench/predict.py: PyTorch fp32 and auto, ONNX Runtime, forward bound; random 4096² GeoTIFF pair" 90 \
    "$PY" bench/predict.py --device cuda --size 4096 --batch-size 32 --repeats 2
# Two processes need two GPUs: nccl refuses two ranks on one device.
if [ "$("$PY" -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
    section "bench/predict_ranks.py: predict under torchrun (nccl), 1 against 2 processes, 8 pairs and a scene in bands" 150 \
        "$PY" bench/predict_ranks.py --device cuda --side 2048 --large 8192 --band-rows 4096
else
    echo "## bench/predict_ranks.py: skipped, one GPU (two nccl ranks need two devices)" >>"$out"
fi

cat "$out"
echo "results written to $out"
exit "$failed"
