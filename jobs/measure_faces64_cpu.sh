#!/usr/bin/env bash
# Every CPU figure the README gives for faces64, measured again on the bundled model: run it after
# `python jobs/bundle_faces64.py --run ...` has bundled a new faces64 (the narrower one of
# jobs/faces64_gpu.sh). 1.5 to 3.5 hours on 2 cores by the machine (2026-11-29: 1.5, the directions table alone 1.3), so it resumes: a step whose output is newer than
# latentatlas/weights/faces64.safetensors is done and skipped; run it again after a cut. Each step
# writes to a temp file and renames it, so a cut step leaves no half-written result.
#
#   bash jobs/measure_faces64_cpu.sh            # all steps, in order
#   STEPS="speed clean" bash jobs/measure_faces64_cpu.sh
#
# Then update the README's tables from the files (each step names its own) and say which model
# (kimg, width) they were measured on. The GPU figures (directions at the GPU budget, 256 px
# speeds) come from jobs/gpu_lease.sh; faces64-stylemap's from its own bundle.
set -eu
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
LA="$PY -m latentatlas.cli"
MODEL=latentatlas/weights/faces64.safetensors
STEPS=${STEPS:-"speed1000 speed eval projection interpolation clean directions"}
KIMG=$($PY -c "from latentatlas.models.bundled import load_generator; print(round(load_generator('faces64')[1]['kimg']))")
CODES=runs/faces64_projection_codes.npz
mkdir -p runs

# `step NAME OUTFILE CMD...`: run CMD with stdout to OUTFILE (via a temp file) unless OUTFILE is
# newer than the model.
step() {
  local name=$1 out=$2; shift 2
  case " $STEPS " in *" $name "*) ;; *) return 0 ;; esac
  if [ -s "$out" ] && [ "$out" -nt "$MODEL" ]; then echo "== $name: done ($out)"; return 0; fi
  echo "== $name -> $out ($(date +%H:%M))"
  local s=$SECONDS
  "$@" >"$out.tmp"
  [ -s "$out.tmp" ] || { echo "$name wrote nothing" >&2; exit 1; }
  mv "$out.tmp" "$out"
  echo "   $(( (SECONDS - s) / 60 )) min"
}

# issue 4's target: a whole 1000-step W+ projection at batch 1 within 60 s
step speed1000 benchmarks/results_cpu_projection_1000steps_faces64.json $PY benchmarks/projection_speed.py --steps 1000 --batches 1
step speed benchmarks/results_cpu_projection_speed.json $PY benchmarks/projection_speed.py
# evaluate prints its table (to the log here) and writes the JSON the README links.
eval_json() { $LA evaluate faces64 --num 10000 --ppl-samples 10000 --device cpu --json-out runs/faces64_eval.json --force >&2 && cat runs/faces64_eval.json; }
step eval "docs/faces64_eval_${KIMG}kimg.json" eval_json
step projection benchmarks/results_cpu_projection_quality.json \
  $PY benchmarks/projection_quality.py --save-codes "$CODES" --sheet docs/projection_sheet.png
step interpolation benchmarks/results_cpu_interpolation_smoothness.json \
  $PY benchmarks/interpolation_smoothness.py --codes "$CODES"
# Random weights of faces64's shape at several widths, the same for any bundled model: only when
# asked for (STEPS=size), on a quiet machine.
step size benchmarks/results_cpu_faces64_size.json $PY benchmarks/faces64_size.py
step clean benchmarks/results_cpu_clean_tradeoff.json $PY benchmarks/clean_tradeoff.py
step directions benchmarks/results_cpu_directions_table.json \
  $PY benchmarks/directions_table.py --device cpu --seeds 0,1,2 --paths 10 --samples 20000 --supervised-samples 2000 \
    --warped-steps 400 --starts 32 --frames 9 --reconstructor-steps 300 --runs benchmarks/results_cpu_directions_runs.jsonl \
    --heatmaps runs/directions_cpu_heatmaps
# (docs/directions_*.png are the GPU budget's, from jobs/gpu_lease.sh; the README's CPU heat-maps are
# runs/directions_cpu_heatmaps/directions_<method>.png copied to docs/directions_cpu_<method>.png)
echo "== all done: faces64 at ${KIMG} kimg"
