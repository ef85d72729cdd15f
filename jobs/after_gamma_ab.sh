#!/usr/bin/env bash
# After a lease's faces64 R1-weight A/B test (jobs/faces64_gpu.sh GAMMA_B=G, issue 3), here on CPU:
# unpack both arms' portable checkpoints from the lease's files, write each arm's G_ema as a model
# file, evaluate it on NUM samples against NUM renders (`latentatlas evaluate`: factor FID,
# per-factor statistics, PPL), probe its critic (benchmarks/critic_probe.py), and put the two side
# by side in benchmarks/results_${DEV}_gamma_ab_64px.json (benchmarks/gamma_ab_summary.py). An arm's
# kept best (best.safetensors in its tar) is evaluated the same way into ARM.best.eval.json.
# The arms go to runs/faces64-narrow-ab-default (arm A, faces64_gpu.sh's GAMMA: the default weight when the lease ran with GAMMA=; the run it trained in
# runs/faces64-narrow) and runs/faces64-narrow-gamma$GAMMA_B; runs/faces64-narrow itself is not
# touched. Bundling the winner is a separate, deliberate step: copy its portable/ to
# runs/faces64-narrow/portable, set faces64_gpu.sh's GAMMA default to its weight, then
# `python jobs/bundle_faces64.py --run runs/faces64-narrow` and `bash jobs/measure_faces64_cpu.sh`.
#   FILES=<the lease's files_at> DEV=h200 GAMMA_B=0.1 bash jobs/after_gamma_ab.sh    # about 25 minutes on 2 cores
# Smoke test (any run's portable as both arms):
#   mkdir -p /tmp/ab && tar -cf - -C runs/gamma-proxy-32/default portable | split -b 15M -d - /tmp/ab/portable_a.tar. &&
#   cp /tmp/ab/portable_a.tar.00 /tmp/ab/portable_b.tar.00 && FILES=/tmp/ab DEV=cpu NUM=200 PREFIX=/tmp/ab/run RESULT=/tmp/ab/r.json bash jobs/after_gamma_ab.sh
set -eu
FILES=${FILES:?set FILES to the folder the lease files came back in (portable_a.tar.0N, portable_b.tar.0N)}
DEV=${DEV:?set DEV to the GPU the arms trained on: h100 or h200}
GAMMA_B=${GAMMA_B:-0.1}
NUM=${NUM:-10000}
PY=${PY:-.venv/bin/python}
PREFIX=${PREFIX:-runs/faces64-narrow}   # the arm folders: PREFIX-ab-default, PREFIX-gammaG
RESULT=${RESULT:-benchmarks/results_${DEV}_gamma_ab_64px.json}
ARMS=("$PREFIX-ab-default" "$PREFIX-gamma$GAMMA_B")
TAGS=(a b)
for i in 0 1; do
  dir=${ARMS[$i]}
  parts=("$FILES"/portable_${TAGS[$i]}.tar.*)
  [ -f "${parts[0]}" ] || { echo "no $FILES/portable_${TAGS[$i]}.tar.* : did the lease run with GAMMA_B?" >&2; exit 1; }
  rm -rf "$dir"; mkdir -p "$dir"
  cat "${parts[@]}" | tar -xf - -C "$dir"
  $PY jobs/bundle_faces64.py --run "$dir" --model-only "$dir/model.safetensors"
  $PY -m latentatlas.cli evaluate "$dir/model.safetensors" --num "$NUM" --ppl-samples "$NUM" --device cpu \
    --json-out "$dir.eval.json" --force
  if [ -f "$dir/best.safetensors" ]; then  # the arm's best monitor line (faces64_gpu.sh KEEP_BEST), evaluated alike
    $PY -m latentatlas.cli evaluate "$dir/best.safetensors" --num "$NUM" --ppl-samples "$NUM" --device cpu \
      --json-out "$dir.best.eval.json" --force
  fi
  $PY benchmarks/critic_probe.py --run "$dir" --out "$dir.probe.json" >/dev/null
done
$PY benchmarks/gamma_ab_summary.py --out "$RESULT" \
  --experiment "R1 weight A/B of faces64-narrow, both arms resumed from one checkpoint (jobs/faces64_gpu.sh GAMMA_B=$GAMMA_B)" \
  --device "one $DEV GPU, both arms side by side; evaluated on 2 CPU cores, $NUM samples" "${ARMS[@]}"
