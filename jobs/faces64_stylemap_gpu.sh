#!/usr/bin/env bash
# One GPU lease for faces64-stylemap (StyleMapGAN on synthfaces, 64 px, 8x8x64 stylemap), in a
# fixed time budget: the encode+generate benchmark on the GPU, then a resumable chunk of
# `latentatlas train-stylemap` (resumes from runs/faces64-stylemap/portable when that folder
# was carried along), then a reconstruction check with `latentatlas encode` on fresh renders.
# What comes back in $OUT (each file under 16 MiB):
#   log.txt bench.json samples.png enc.json portable/{G,D,E,G_ema,E_ema,train}.safetensors
# Then, here: copy $OUT/portable/* to runs/faces64-stylemap/portable/ and commit them.
# Usage (device tool): BUDGET=540 bash jobs/faces64_stylemap_gpu.sh
# On CPU, for a smoke test: DEVICE=cpu BUDGET=60 OUT=/tmp/out bash jobs/faces64_stylemap_gpu.sh
set -u
OUT=${OUT:?set OUT to the folder that comes back}
BUDGET=${BUDGET:-540}            # seconds for the whole job
DEVICE=${DEVICE:-cuda}
RUN=${RUN:-runs/faces64-stylemap}
BATCH=${BATCH:-16}
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
LA="$PY -m latentatlas.cli"
T0=$SECONDS
left() { echo $((BUDGET - (SECONDS - T0))); }
minutes() { $PY -c "print(max(0.1, ($1) / 60))"; }
LOG=$OUT/log.txt
mkdir -p "$OUT/portable" "$RUN"
{ date; nvidia-smi -L 2>/dev/null; $PY -c "import torch; print('torch', torch.__version__)"; } >>"$LOG" 2>&1

echo "== benchmark ($(left) s left)" >>"$LOG"
timeout 60 $PY benchmarks/stylemap_speed.py --device "$DEVICE" --repeats 30 >"$OUT/bench.json" 2>>"$LOG" || echo "benchmark failed: $?" >>"$LOG"

echo "== faces64-stylemap training ($(left) s left)" >>"$LOG"
TRAIN_MIN=$(minutes "$(left) - 60")
$LA train-stylemap --out "$RUN" --kimg 100000 --batch "$BATCH" --snapshot-kimg 100 --sample-kimg 50 \
  --max-minutes "$TRAIN_MIN" --device "$DEVICE" 2>"$OUT/train_err.txt" >>"$LOG" || { echo "training failed: $?" >>"$LOG"; tail -30 "$OUT/train_err.txt" >>"$LOG"; }
tail -c 600 "$OUT/train_err.txt" | tr '\r' '\n' | tail -3 >>"$LOG"
rm -f "$OUT/train_err.txt"
cp "$RUN"/portable/*.safetensors "$OUT/portable/" 2>>"$LOG"
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
  timeout $(( $(left) - 5 )) $LA encode "$RUN/model.safetensors" "$TMP" --out "$TMP/enc" --device "$DEVICE" >"$OUT/enc.json" 2>>"$LOG" \
    || echo "encode stopped: $?" >>"$LOG"
  rm -rf "$TMP"
fi
echo "== done after $((SECONDS - T0)) s" >>"$LOG"
ls -la "$OUT" "$OUT/portable" >>"$LOG"
cat "$LOG"
