#!/usr/bin/env bash
# One GPU lease for the bundled faces64 model, in a fixed time budget:
#   1. generator throughput benchmark on the quiet GPU (JSON),
#   2. the factor predictor, trained in the background (weights written even if cut short),
#   3. a resumable chunk of faces64 StyleGAN2 training (resumes from $RUN/state.pt when a warm
#      machine still has it, else from $RUN/portable, which travels with the repo), then
#      benchmarks/critic_probe.py (what the critic rewards: seconds on a GPU) and a quick
#      evaluation if time is left (its PPL is exact only since 2026-11-27: TF32 off).
# Everything worth keeping lands in $OUT (at most 8 files, each under 16 MiB):
#   log.txt bench.json [factors.safetensors] samples.png portable/{G,D,G_ema,train}.safetensors
#   and best.safetensors (KEEP_BEST, fp16) when that makes at most 8
# Then, here: copy $OUT/portable/* to $RUN/portable/, and evaluate both the last G_ema
# (bundle_faces64.py --run $RUN --model-only M) and best.safetensors on 10k (`latentatlas evaluate`);
# bundle the better (python jobs/bundle_faces64.py --run $RUN, or --model best.safetensors), commit.
# With GAMMA_B=G (an A/B test of the R1 weight from one checkpoint, arm A with GAMMA, which is 0.1
# unless set: `GAMMA= GAMMA_B=G` tests G against the heuristic default; use it with BENCH_CONFIGS= and
# no predictor): log.txt samples.png portable_a.tar.0N portable_b.tar.0N instead of portable/; here:
#   FILES=<files_at> DEV=h100|h200 GAMMA_B=G bash jobs/after_gamma_ab.sh
# (unpacks both arms, evaluates each, and compares them, with their factor monitor lines).
# Usage (device tool): BUDGET=540 bash jobs/faces64_gpu.sh  (BENCH_CONFIGS= skips the benchmark,
# PRED_STEPS=0 the predictor; the checkpoint in $RUN/portable travels with the repo).
# The widths are the run's (a resumed run keeps them; `train` refuses others): the default,
# CHANNEL_BASE=2048 into RUN=runs/faces64-narrow, is the bundled faces64's run (bundled at 837 kimg), which meets the CPU
# targets (README, "faces64 and how it is measured"); CHANNEL_BASE=8192 D_CHANNEL_BASE= RUN=runs/faces64
# goes on with the earlier, wider faces64 (restore its checkpoint from git history first:
# README, "Layout").
# On CPU, for a smoke test (RUN elsewhere: the default run's checkpoint is tracked):
#   DEVICE=cpu BUDGET=90 BENCH_CONFIGS=64 BENCH_VARIANTS=fp32 PRED_STEPS=4 PRED_BATCH=8 \
#   RUN=/tmp/smoke CHANNEL_BASE=256 CHANNEL_MAX=16 BATCH=8 [GAMMA_B=0.1] OUT=/tmp/out bash jobs/faces64_gpu.sh
set -u
BENCH_CONFIGS=${BENCH_CONFIGS-64,256,1024}
BENCH_BATCHES=${BENCH_BATCHES:-1,16,32}
BENCH_VARIANTS=${BENCH_VARIANTS:-fp32,tf32,bf16,graph,graph-tf32}
PRED_STEPS=${PRED_STEPS:-0}      # the predictor is bundled (latentatlas/weights/factors.safetensors); >0 retrains it
PRED_BATCH=${PRED_BATCH:-256}
RUN=${RUN:-runs/faces64-narrow}
CHANNEL_BASE=${CHANNEL_BASE:-2048}
CHANNEL_MAX=${CHANNEL_MAX:-128}
BATCH=${BATCH:-128}              # images per step (60 kimg/min against 36 at 64 on the H200); a resumed run may change it
GAMMA=${GAMMA-0.1}               # R1 weight, 0.1 since the 2026-11-29 A/B (README, "The A/B on the GPU"); GAMMA= (empty):
                                 # the ADA heuristic 0.0002 * 64^2 / BATCH (0.0064 at 128). A resumed run takes the one given
METRICS_KIMG=${METRICS_KIMG:-20}  # factor monitor (metrics.jsonl, 2000 samples): every N kimg and at the end; 0: off
KEEP_BEST=${KEEP_BEST-coverage}  # `train --keep-best`: the best monitor line's G_ema as $RUN/best.safetensors, back in
                                 # $OUT (coverage swings between lines: README, "faces64 and how it is measured"); empty: off
[ "$METRICS_KIMG" = 0 ] && KEEP_BEST=
GAMMA_B=${GAMMA_B:-}             # an A/B test: a second arm, $RUN resumed with this R1 weight into $RUN-gamma$GAMMA_B,
                                 # trained beside the first (both launch-bound) for as long; both come back as tar parts
# The critic stays as wide as faces64's (128 channels everywhere); empty for runs/faces64 (its
# config has no such setting, so resuming it with one is refused).
D_CHANNEL_BASE=${D_CHANNEL_BASE-8192}
. "$(dirname "$0")/common.sh"
mkdir -p "$OUT/portable" "$RUN" runs
{ date; nvidia-smi -L 2>/dev/null; $PY -c "import torch; print('torch', torch.__version__)"; } >>"$LOG" 2>&1

if [ -n "$BENCH_CONFIGS" ]; then
  echo "== benchmark ($(left) s left)" >>"$LOG"
  timeout 150 $PY benchmarks/generate_throughput.py --device "$DEVICE" --configs "$BENCH_CONFIGS" \
    --batches "$BENCH_BATCHES" --variants "$BENCH_VARIANTS" >"$OUT/bench.json" 2>>"$LOG" || echo "benchmark failed: $?" >>"$LOG"
fi

PRED_PID=
if [ "$PRED_STEPS" -gt 0 ]; then
echo "== factor predictor in the background ($(left) s left)" >>"$LOG"
PRED_MIN=$(minutes "$(left) - 120")
( $LA train-predictor --out runs/factors.safetensors --steps "$PRED_STEPS" --batch "$PRED_BATCH" \
    --max-minutes "$PRED_MIN" --device "$DEVICE" >"$OUT/predictor.txt" 2>&1; echo "predictor exit $?" >>"$OUT/predictor.txt" ) &
PRED_PID=$!
fi

# `train_arm FOLDER GAMMA TAG`: a chunk of training into FOLDER (R1 weight GAMMA, empty: the heuristic).
train_arm() {
  $LA train --out "$1" --batch "$BATCH" --channel-base "$CHANNEL_BASE" --channel-max "$CHANNEL_MAX" \
    ${D_CHANNEL_BASE:+--d-channel-base "$D_CHANNEL_BASE"} ${2:+--gamma "$2"} --kimg 100000 --snapshot-kimg 200 --sample-kimg 100 \
    --metrics-kimg "$METRICS_KIMG" ${KEEP_BEST:+--keep-best "$KEEP_BEST"} \
    --max-minutes "$TRAIN_MIN" --device "$DEVICE" 2>"$OUT/train_err_$3.txt" >"$OUT/train_$3.txt" \
    || { echo "training $3 failed: $?" >>"$OUT/train_$3.txt"; tail -30 "$OUT/train_err_$3.txt" >>"$OUT/train_$3.txt"; }
  grep -a "a new best starts" "$OUT/train_err_$3.txt" >>"$OUT/train_$3.txt"  # a kept best set aside, said at the start
  tail -c 600 "$OUT/train_err_$3.txt" | tr '\r' '\n' | tail -3 >>"$OUT/train_$3.txt"
  rm -f "$OUT/train_err_$3.txt"
}
# With GAMMA_B, the B arm starts where $RUN stands (its state.pt on a warm machine, else the
# portable checkpoint) unless a warm machine still has the B arm's own state from the last call.
RUN_B=
if [ -n "$GAMMA_B" ]; then
  RUN_B="${RUN}-gamma${GAMMA_B}"
  if [ ! -f "$RUN_B/state.pt" ]; then
    rm -rf "$RUN_B"; mkdir -p "$RUN_B"; cp -r "$RUN/portable" "$RUN_B/"
    rm -f "$RUN/best.safetensors"  # both arms start without a kept best (an earlier call's came back already)
    [ -f "$RUN/state.pt" ] && cp "$RUN/state.pt" "$RUN/stats.jsonl" "$RUN_B/" 2>/dev/null
  fi
fi
echo "== faces64 training ($(left) s left)${RUN_B:+, beside it $RUN_B with R1 gamma $GAMMA_B}" >>"$LOG"
TRAIN_MIN=$(minutes "$(left) - 75")
PID_B=
if [ -n "$RUN_B" ]; then train_arm "$RUN_B" "$GAMMA_B" b & PID_B=$!; fi
train_arm "$RUN" "$GAMMA" a
[ -n "$PID_B" ] && wait $PID_B
for arm in a b; do [ -f "$OUT/train_$arm.txt" ] && { cat "$OUT/train_$arm.txt" >>"$LOG"; rm -f "$OUT/train_$arm.txt"; }; done
if [ -n "$PRED_PID" ]; then
  wait $PRED_PID
  tr '\r' '\n' <"$OUT/predictor.txt" | grep -v '^factor predictor:' | tail -8 >>"$LOG"
  tr '\r' '\n' <"$OUT/predictor.txt" | grep '^factor predictor:' | tail -1 >>"$LOG"
  rm -f "$OUT/predictor.txt"
fi

# train.safetensors carries stats.jsonl too. Two arms come back as tar files in 15 MB parts
# (at most 8 files of 16 MiB): cat $OUT/portable_b.tar.* | tar -xf - -C runs/faces64-narrow-gammaG/
# An arm's kept best (KEEP_BEST, fp16, 3.6 MB) goes into its tar: both arms come to about 60 MiB
# of the 64 that come back. A single run's best follows the other files, below.
best() { [ -f "$1/best.safetensors" ] && echo best.safetensors; }
if [ -z "$RUN_B" ]; then
  cp "$RUN"/portable/*.safetensors "$OUT/portable/" 2>>"$LOG"
else
  rmdir "$OUT/portable" 2>/dev/null
  tar -cf - -C "$RUN" portable $(best "$RUN") | split -b 15M -d - "$OUT/portable_a.tar."
  tar -cf - -C "$RUN_B" portable $(best "$RUN_B") | split -b 15M -d - "$OUT/portable_b.tar."
fi
for R in "$RUN" $RUN_B; do
  echo "== $R: stats.jsonl, last ticks (means over 4 kimg)" >>"$LOG"
  tail -5 "$R/stats.jsonl" >>"$LOG" 2>&1
  echo "== $R: metrics.jsonl (factor monitor), this chunk's lines" >>"$LOG"
  $PY jobs/monitor_lines.py "$R" 12 >>"$LOG" 2>&1
  if [ "$(left)" -gt 60 ]; then
    echo "== $R: critic probe ($(left) s left)" >>"$LOG"
    timeout 40 $PY benchmarks/critic_probe.py --run "$R" --device "$DEVICE" >>"$LOG" 2>&1 || echo "critic probe stopped: $?" >>"$LOG"
  fi
done
last=$(ls "$RUN"/samples-*.png 2>/dev/null | tail -1); [ -n "$last" ] && cp "$last" "$OUT/samples.png"
[ -f runs/factors.safetensors ] && cp runs/factors.safetensors "$OUT/"
# The kept best last, and only while $OUT holds under 8 files (the most that come back; with a
# predictor and the benchmark there would be 9): the portable checkpoint goes first.
if [ -z "$RUN_B" ] && [ -n "$(best "$RUN")" ]; then
  if [ "$(find "$OUT" -type f | wc -l)" -lt 8 ]; then cp "$RUN/best.safetensors" "$OUT/"
  else echo "best.safetensors left out: \$OUT holds 8 files already" >>"$LOG"; fi
fi
PRED=factors; [ -f runs/factors.safetensors ] && PRED=runs/factors.safetensors
if [ -z "$RUN_B" ] && [ "$(left)" -gt 50 ] && [ -f "$RUN/model.safetensors" ]; then  # an A/B test is evaluated here, on 10k
  echo "== evaluate ($(left) s left)" >>"$LOG"
  timeout $(( $(left) - 15 )) $LA evaluate "$RUN/model.safetensors" --predictor "$PRED" \
    --num 5000 --ppl-samples 2000 --device "$DEVICE" >>"$LOG" 2>&1 || echo "evaluate stopped: $?" >>"$LOG"
fi
echo "== done after $((SECONDS - T0)) s" >>"$LOG"
ls -la "$OUT" "$OUT/portable" >>"$LOG"
cat "$LOG"
