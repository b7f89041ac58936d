#!/usr/bin/env bash
# GPU check of the engine at the study's scale, for one CUDA device (no weights needed):
# random-init open_clip ViT-L/14, a synthetic 224-px world of 99 classes, batch 32, both towers trained.
#   1. `ktmu perf` in bf16: every method's step against a plain step, evaluation throughput, checkpoint scoring
#      against its floor, peak memory, MFU, a profile of the plain step; beside it, in the same interleaved rounds:
#      the reference study's own loop in fp32 (--baseline study: vs_study), ktmu in fp32 and in TF32 (--precisions),
#      fused and foreach AdamW and channels-last (--variants), and torch.compile (--compile; compile time apart);
#      under --image-pipeline device (uint8 from the workers, normalised on the GPU), so the evaluation is timed
#      under both image pipelines in the same rounds (the table's two eval_ratio rows);
#   2. a short nhl-kl run with gradient checkpointing (the 24 GB setting), its step time and peak memory;
#   3. one table of all of the above, read from the two JSON records.
# Usage: bash scripts/gpu_check.sh [OUT_DIR]     (budget: under 5 minutes; the timeouts below add up to 4 min 50 s.
# The version without rows 1's baseline, precisions, variants and --compile took 2 min 21 s on one H200, 2026-11-30;
# this one has not been run on a GPU yet.)
set -euo pipefail
cd "$(dirname "$0")/.."
KTMU=${KTMU:-.venv/bin/ktmu}
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-${OUT:-runs/gpu_check}}
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA device here; this check measures the engine on a GPU. Run it on a machine with one (see docs/performance.md)." >&2
  exit 2
fi
mkdir -p "$OUT"
"$PY" -c "import torch; print('device:', torch.cuda.get_device_name(0), '| torch', torch.__version__)"
echo "== 1. ktmu perf: ViT-L/14 (random init), 99 classes, 224 px, batch 32, bf16; the study's fp32 loop, fp32, TF32, AdamW, channels-last, --compile beside"
timeout 210 "$KTMU" perf --model open_clip:ViT-L-14 --device cuda --precision bf16 --train both --classes 99 --image-size 224 \
  --batch-size 32 --steps 3 --epochs 2 --repeats 3 --images 1024 --eval-batch-size 128 --workers 4 \
  --baseline study --precisions fp32 tf32 --variants adamw-fused adamw-foreach channels-last --compile --profile --image-pipeline device \
  --quiet --json "$OUT/perf_bf16.json"
echo "== 2. the same with gradient checkpointing (memory for a 24 GB card), nhl-kl and plain steps only"
timeout 75 "$KTMU" perf --model open_clip:ViT-L-14 --device cuda --precision bf16 --train both --classes 99 --image-size 224 \
  --batch-size 32 --steps 3 --epochs 1 --repeats 1 --images 256 --eval-batch-size 128 --methods nhl-kl --grad-checkpointing --quiet \
  --json "$OUT/perf_bf16_ckpt.json"
echo "== 3. one table"
"$PY" - "$OUT/perf_bf16.json" "$OUT/perf_bf16_ckpt.json" <<'PYTABLE'
import json, sys
r, c = (json.load(open(p)) for p in sys.argv[1:3])
pct = lambda x: "-" if x is None else f"{100 * x:.1f} %"
rows = [("plain step, bf16 (ms)", f"{r['step_seconds']['plain-ce'] * 1000:.0f}", ""),
        ("MFU of the plain step, bf16", pct(r["mfu"]), ">= 40 % (with --compile and fused AdamW)"),
        ("worst step_ratio, every method", f"{max(r['step_ratio'].values()):.2f}", "<= 1.1"),
        ("vs_study nhl-kl (study fp32 / ktmu bf16)", f"{r['vs_study']['nhl-kl']:.2f}", ">= 5"),
        ("model-FLOP ratio of the two designs", f"{r['study_flop_ratio']:.2f}", ""),
        ("vs_study_run nhl-kl (8 x 47 steps)", f"{r['vs_study_run']['nhl-kl']:.2f}", "")]
for name, v in r["variants"].items():
    extra = f", compile {v['compile_seconds']:.0f} s" if v.get("compile_seconds") is not None else ""
    rows.append((f"variant {name}: plain step (ms), speedup, MFU", f"{v['plain_step_seconds'] * 1000:.0f}, {v['speedup']['ratio']:.2f}, "
                 f"{pct(v.get('mfu'))}{extra}", ""))
    if name in r["vs_study_by_variant"]:
        rows.append((f"vs_study nhl-kl, ktmu {name}", f"{r['vs_study_by_variant'][name]:.2f}", ""))
pipes = r.get("eval_by_image_pipeline", {})
rows += [("eval_ratio, 1,024 images", f"{pipes.get('host', r)['eval_ratio']:.2f}", ">= 0.9"),
         ("eval_ratio, --image-pipeline device", "-" if "device" not in pipes else
          f"{pipes['device']['eval_ratio']:.2f} ({'preprocessed once' if pipes['device']['cached'] else 'streamed'})", ">= 0.9"),
         ("epoch_overhead_ratio / scoring_floor", f"{r['epoch_overhead_ratio']:.3f} / {r['scoring_floor']:.3f}", "<= 1.1 x floor"),
         ("peak GPU memory (GB), no checkpointing / checkpointing", f"{r['peak_mem_mb'] / 1e3:.1f} / {c['peak_mem_mb'] / 1e3:.1f}", "<= 24"),
         ("attention kernels (image; text)", "; ".join(", ".join(v) or "none fused" for v in r["attention_ops"].values()), "")]
if r.get("profile"):
    rows.append(("device busy during the plain step", pct(r["profile"].get("busy_share")), ""))
w = max(len(a) for a, _, _ in rows)
for a, b, t in rows:
    print(f"{a:<{w}}  {b:>28}  {t}")
PYTABLE
echo "wrote $OUT/perf_bf16.json and $OUT/perf_bf16_ckpt.json"
