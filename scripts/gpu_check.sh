#!/usr/bin/env bash
# GPU check of the engine at the study's scale, for one CUDA device (no weights needed):
# random-init open_clip ViT-L/14, a synthetic 224-px world of 99 classes, batch 32 in bf16.
#   1. `ktmu perf`: every method's step against a plain step, evaluation throughput, peak memory, MFU
#      (without gradient checkpointing);
#   2. a short nhl-kl run with gradient checkpointing (the 24 GB setting), its step time and peak memory.
# Usage: bash scripts/gpu_check.sh [OUT_DIR]     (2 min 21 s on one H200, measured 2026-11-30)
set -euo pipefail
cd "$(dirname "$0")/.."
KTMU=${KTMU:-.venv/bin/ktmu}
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-${OUT:-runs/gpu_check}}
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA device here; this check measures the engine on a GPU. Run it on a machine with one (see README, 'Performance')." >&2
  exit 2
fi
mkdir -p "$OUT"
"$PY" -c "import torch; print('device:', torch.cuda.get_device_name(0), '| torch', torch.__version__)"
echo "== 1. ktmu perf: ViT-L/14 (random init), 99 classes, 224 px, batch 32, bf16, no gradient checkpointing"
timeout 240 "$KTMU" perf --model open_clip:ViT-L-14 --device cuda --precision bf16 --train both --classes 99 --image-size 224 \
  --batch-size 32 --steps 3 --epochs 2 --images 1024 --eval-batch-size 128 --workers 4 --quiet --json "$OUT/perf_bf16.json"
echo "== 2. the same with gradient checkpointing (memory for a 24 GB card), nhl-kl and plain steps only"
timeout 120 "$KTMU" perf --model open_clip:ViT-L-14 --device cuda --precision bf16 --train both --classes 99 --image-size 224 \
  --batch-size 32 --steps 3 --epochs 1 --images 256 --eval-batch-size 128 --methods nhl-kl --grad-checkpointing --quiet \
  --json "$OUT/perf_bf16_ckpt.json"
echo "wrote $OUT/perf_bf16.json and $OUT/perf_bf16_ckpt.json"
