#!/usr/bin/env bash
# A small, CPU-sized stand-in for the R1-weight A/B test that the next GPU lease runs on faces64
# (jobs/faces64_gpu.sh GAMMA_B=...): two 32 px StyleGAN2 runs on synthfaces from the same seed,
# side by side on one core each, with the default R1 weight (0.0002 * 32^2 / 32 = 0.0064, the
# same as faces64's at batch 128) and with GAMMA_B, for MINUTES each; then for each the factor
# statistics of 5k samples against 5k renders (`latentatlas evaluate`, the predictor reading
# images up-sampled to its 64 px) and benchmarks/critic_probe.py, summed up in $RESULT by
# benchmarks/gamma_ab_summary.py, with the means of the last factor monitor lines (every 10 kimg,
# 1000 samples: training/factor_monitor.py; since 2026-11-27's SWITCH run).
# Resumable: run it again to train MINUTES more (each arm resumes from its state.pt).
#   MINUTES=50 GAMMA_B=0.1 bash jobs/gamma_proxy_cpu.sh   # 2026-11-27: 140 kimg an arm, README says what it showed
# SWITCH=1: the second arm is instead the default arm's run copied (once) to default-gammaG and
# resumed with GAMMA_B, as the GPU A/B test switches faces64's weight late in its training; the
# default arm goes on beside it as the control.
set -u
MINUTES=${MINUTES:-45}
GAMMA_B=${GAMMA_B:-0.1}
ROOT=${ROOT:-runs/gamma-proxy-32}
PY=${PY:-.venv/bin/python}
RESULT=${RESULT:-benchmarks/results_cpu_gamma_proxy_32px.json}
SWITCH=${SWITCH:-}
B_NAME=gamma$GAMMA_B
if [ -n "$SWITCH" ]; then
  B_NAME=default-gamma$GAMMA_B
  [ -d "$ROOT/$B_NAME" ] || cp -r "$ROOT/default" "$ROOT/$B_NAME" || exit 1
fi
ARGS=(--resolution 32 --batch 32 --channel-base 1024 --channel-max 64 --z-dim 128 --w-dim 128
      --kimg 100000 --snapshot-kimg 10 --sample-kimg 50 --metrics-kimg 10 --metrics-num 1000 --device cpu)
mkdir -p "$ROOT"
arm() {  # arm NAME CORE [--gamma G]
  local name=$1 core=$2; shift 2
  OMP_NUM_THREADS=1 taskset -c "$core" $PY -m latentatlas.cli train --out "$ROOT/$name" "${ARGS[@]}" "$@" \
    --max-minutes "$MINUTES" 2>"$ROOT/$name.err" | tail -1 >"$ROOT/$name.json"
}
arm default 0 & A=$!
arm "$B_NAME" 1 --gamma "$GAMMA_B" & B=$!
wait $A $B
for name in default "$B_NAME"; do
  $PY -m latentatlas.cli evaluate "$ROOT/$name/model.safetensors" --num 5000 --ppl-samples 500 --device cpu \
    --json-out "$ROOT/$name.eval.json" --force >/dev/null 2>&1 || echo "evaluate $name failed"
  $PY benchmarks/critic_probe.py --run "$ROOT/$name" --num 512 --out "$ROOT/$name.probe.json" >/dev/null 2>&1 || echo "probe $name failed"
done
$PY benchmarks/gamma_ab_summary.py --out "$RESULT" --experiment "R1 weight A/B at 32 px on CPU (jobs/gamma_proxy_cpu.sh)" \
  --device "2 CPU cores, one per arm" "$ROOT/default" "$ROOT/$B_NAME"
