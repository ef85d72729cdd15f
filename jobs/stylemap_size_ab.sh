#!/usr/bin/env bash
# Does a finer stylemap swap small parts better? faces64-stylemap's architecture trained from
# scratch twice on CPU, side by side, one core each, alike but for the stylemap size (8x8, the
# bundled model's, and 16x16), then both measured the same way (README, "Local editing on
# synthfaces": a cell of the 8x8 reaches two to three cells, 16 to 24 px).
#   MINUTES=95 bash jobs/stylemap_size_ab.sh train    # resumable: run again to go on (runs/stylemap-ab-s{8,16}, untracked)
#   bash jobs/stylemap_size_ab.sh measure             # local edits (input stylemap, per layer), cell reach, encoder
# measure writes benchmarks/results_cpu_stylemap_ab_s{8,16}_{local_edit,local_edit_per_layer,cell_reach,encoder}.json
# (about 2 minutes).
set -eu
PY=${PY:-.venv/bin/python}
MINUTES=${MINUTES:-95}
SIZES=${SIZES:-8 16}
case "${1:-}" in
  train)
    pids=()
    for s in $SIZES; do
      OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $PY -m latentatlas.cli train-stylemap --out "runs/stylemap-ab-s$s" \
        --latent-spatial-size "$s" --batch 16 --kimg 10000 --max-minutes "$MINUTES" --device cpu \
        >"runs/stylemap-ab-s$s.out" 2>"runs/stylemap-ab-s$s.err" &
      pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    for s in $SIZES; do tail -1 "runs/stylemap-ab-s$s.out"; done
    ;;
  measure)
    for s in $SIZES; do
      m=runs/stylemap-ab-s$s/model.safetensors
      r=benchmarks/results_cpu_stylemap_ab_s$s
      $PY benchmarks/local_edit_quality.py --model "$m" --pairs 256 >"$r"_local_edit.json.tmp && mv "$r"_local_edit.json.tmp "$r"_local_edit.json
      $PY benchmarks/local_edit_quality.py --model "$m" --pairs 256 --per-layer >"$r"_local_edit_per_layer.json.tmp \
        && mv "$r"_local_edit_per_layer.json.tmp "$r"_local_edit_per_layer.json
      $PY benchmarks/stylemap_cell_reach.py --model "$m" --pairs 64 --out "$r"_cell_reach.json
      $PY benchmarks/encoder_vs_projector.py --stylemap "$m" --device cpu --num 64 --no-projector --out "$r"_encoder.json >/dev/null
    done
    ;;
  *) echo "usage: bash jobs/stylemap_size_ab.sh train|measure" >&2; exit 2 ;;
esac
