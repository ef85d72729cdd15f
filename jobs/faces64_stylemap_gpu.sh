#!/usr/bin/env bash
# One GPU lease for faces64-stylemap (StyleMapGAN on synthfaces, 64 px, 8x8x64 stylemap), in a
# fixed time budget: a resumable chunk of `latentatlas train-stylemap` (resumes from
# runs/faces64-stylemap/portable when that folder was carried along), a reconstruction check with
# `latentatlas encode` on fresh renders, then issue 6's two benchmarks on the trained model:
# benchmarks/encoder_vs_projector.py (speed incl. the 256 px config for the 5 ms target, and
# reconstruction of encoder vs projector) and benchmarks/local_edit_quality.py (region swaps).
# What comes back in $OUT: at most 8 files, each under 16 MiB (the device tool's limits):
#   log.txt (with the encode JSON)  samples.png  portable.tar (G, D, E, G_ema, E_ema, train)
#   bench.json (encoder_vs_projector)  local_edit.json  local_edit_{eyes,mouth,hair}.png
# Then, here: tar -xf portable.tar -C runs/faces64-stylemap/ and commit runs/faces64-stylemap/portable.
# Usage (device tool): BUDGET=540 bash jobs/faces64_stylemap_gpu.sh
# On CPU, for a smoke test: DEVICE=cpu BUDGET=120 RESERVE=90 PAIRS=8 EVP="--num 4 --steps 5" OUT=/tmp/out bash jobs/faces64_stylemap_gpu.sh
set -u
RUN=${RUN:-runs/faces64-stylemap}
BATCH=${BATCH:-16}
RESERVE=${RESERVE:-150}         # seconds kept after training for the checks and benchmarks
PAIRS=${PAIRS:-256}             # local_edit_quality pairs
# cuDNN autotuning: without it the 256 px config took 225 ms at batch 1 against 33 ms per image at
# batch 64 on the H200 (2026-11-26), a sign of poorly chosen default algorithms at batch 1.
EVP=${EVP:---num 64 --steps 200 --projector-batch 64 --config256 --variants fp32,tf32,graph-tf32,bf16,graph-bf16 --cudnn-benchmark}
. "$(dirname "$0")/common.sh"
mkdir -p "$RUN"
{ date; nvidia-smi -L 2>/dev/null; $PY -c "import torch; print('torch', torch.__version__)"; } >>"$LOG" 2>&1

echo "== faces64-stylemap training ($(left) s left)" >>"$LOG"
TRAIN_MIN=$(minutes "$(left) - $RESERVE")
$LA train-stylemap --out "$RUN" --kimg 100000 --batch "$BATCH" --snapshot-kimg 100 --sample-kimg 50 \
  --max-minutes "$TRAIN_MIN" --device "$DEVICE" 2>"$OUT/train_err.txt" >>"$LOG" || { echo "training failed: $?" >>"$LOG"; tail -30 "$OUT/train_err.txt" >>"$LOG"; }
tail -c 600 "$OUT/train_err.txt" | tr '\r' '\n' | tail -3 >>"$LOG"
rm -f "$OUT/train_err.txt"
tar -cf "$OUT/portable.tar" -C "$RUN" portable 2>>"$LOG"
last=$(ls "$RUN"/samples-*.png 2>/dev/null | tail -1); [ -n "$last" ] && cp "$last" "$OUT/samples.png"

if [ "$(left)" -gt 20 ] && [ -f "$RUN/model.safetensors" ]; then
  echo "== reconstruction of 16 fresh renders ($(left) s left)" >>"$LOG"
  TMP=$(mktemp -d)
  $PY - "$TMP" <<'PYEOF' >>"$LOG" 2>&1
import sys
from latentatlas.data.synthfaces import sample
from latentatlas.io.images import make_grid, save_image
imgs, _ = sample(16, seed=31337, resolution=64)
for i, im in enumerate(imgs):
    save_image(f"{sys.argv[1]}/r{i:02d}.png", make_grid(im[None]))
PYEOF
  timeout $(( $(left) - 5 )) $LA encode "$RUN/model.safetensors" "$TMP" --out "$TMP/enc" --device "$DEVICE" >>"$LOG" 2>&1 \
    || echo "encode stopped: $?" >>"$LOG"
  rm -rf "$TMP"
fi
if [ "$(left)" -gt 30 ] && [ -f "$RUN/model.safetensors" ]; then
  echo "== local edit quality, $PAIRS pairs ($(left) s left)" >>"$LOG"
  timeout $(( $(left) - 20 )) $PY benchmarks/local_edit_quality.py --model "$RUN/model.safetensors" --pairs "$PAIRS" \
    --device "$DEVICE" --sheet "$OUT/local_edit.png" >"$OUT/local_edit.json" 2>>"$LOG" || echo "local_edit_quality stopped: $?" >>"$LOG"
fi
if [ "$(left)" -gt 20 ] && [ -f "$RUN/model.safetensors" ]; then
  echo "== encoder vs projector: $EVP ($(left) s left)" >>"$LOG"
  # --out: the parts finished before the timeout are kept (encoder, then the 256 px config, then the projector)
  # shellcheck disable=SC2086
  timeout $(( $(left) - 5 )) $PY benchmarks/encoder_vs_projector.py --stylemap "$RUN/model.safetensors" --device "$DEVICE" $EVP \
    --out "$OUT/bench.json" >/dev/null 2>>"$LOG" || echo "encoder_vs_projector stopped: $?" >>"$LOG"
fi
echo "== done after $((SECONDS - T0)) s" >>"$LOG"
ls -la "$OUT" >>"$LOG"; tar -tvf "$OUT/portable.tar" >>"$LOG" 2>&1
cat "$LOG"
