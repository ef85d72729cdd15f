#!/usr/bin/env bash
# The bundled faces64's run resumed on 2 CPU cores with a larger R1 weight, for the sessions that
# get no GPU (issue 3: seven factors vary less than half as much as in the renders). It is the B
# arm of the lease's A/B test (jobs/faces64_gpu.sh GAMMA_B=0.1) without its side-by-side control:
# the control is the starting point, measured first with the same latents and renders as every
# later factor monitor line (1000 samples every 10 kimg), and the run's own history under the
# default weight (README, "faces64 and how it is measured": mean std ratio, not capped, 0.57, 0.63, 0.67 at
# 345, 505, 690 kimg). The 32 px stand-in (jobs/gamma_proxy_cpu.sh SWITCH=1) widened the factors
# only from about 80 kimg after the switch (faces64 turned at about 90), and this runs at
# 0.29-0.43 kimg/min alone (AMD EPYC, Intel Xeon): a chunk per session, each resumed from the
# portable checkpoint that the last one committed.
# Its five chunks (690.5 -> 865.3 kimg, 2026-11-29) gave the bundled faces64 (837 kimg), and the
# GPU A/B the same day settled the weight; runs/faces64-narrow/portable is that checkpoint now, so
# a new run of this script starts a fresh CPU run from the bundled model (the old run's 865 kimg
# checkpoint is in git history: git log -- runs/faces64-narrow-cpu-gamma0.1/portable; put its four
# files back in $RUN/portable and the script goes on from there, as the sixth chunk did).
# Coverage swings by up to 3 factors under half between lines 10 kimg apart, so the chunk keeps
# its best line's model (--keep-best coverage: $RUN/best.safetensors); `latentatlas evaluate` on
# 10k samples decides between it, the chunk's end and the bundled model.
#   MINUTES=120 bash jobs/faces64_cpu_gamma.sh    # its $RUN/portable (27 MB) stays out of git unless bundled:
#                                                 # each commit of one adds 27 MB to .git, and a GPU lease sends at most 64 MiB
#   python jobs/faces64_cpu_gamma_report.py --from-kimg K --device D --minutes M   # the chunk's JSON and table
# Batch 32, not the lease's 128: the generator's EMA half-life follows the batch (10 kimg here
# against 40), which a 50-kimg chunk needs to show anything. Run it alone: anything else on the
# two cores cuts its speed by half or more.
set -eu
GAMMA=${GAMMA:-0.1}
MINUTES=${MINUTES:-120}
PY=${PY:-.venv/bin/python}
FROM=${FROM:-runs/faces64-narrow}
RUN=${RUN:-runs/faces64-narrow-cpu-gamma$GAMMA}
if [ ! -f "$RUN/portable/train.safetensors" ]; then
  mkdir -p "$RUN"
  cp -r "$FROM/portable" "$RUN/"
  $PY jobs/bundle_faces64.py --run "$FROM" --model-only "$RUN/start.safetensors"
  $PY - "$RUN" <<'EOF'
import json
import sys
from pathlib import Path

import torch

from latentatlas.io.checkpoints import load_model, read_model_metadata
from latentatlas.training.factor_monitor import FactorMonitor

run = Path(sys.argv[1])
generator, _ = load_model(run / "start.safetensors")
kimg = json.loads(read_model_metadata(run / "start.safetensors")["info"])["kimg"]
FactorMonitor(run, 1000, 64, torch.device("cpu")).measure(generator.eval(), kimg)
EOF
  rm -f "$RUN/start.safetensors"
fi
$PY -m latentatlas.cli train --out "$RUN" --batch 32 --channel-base 2048 --channel-max 128 --d-channel-base 8192 \
  --gamma "$GAMMA" --kimg 100000 --snapshot-kimg 200 --sample-kimg 20 --metrics-kimg 10 --metrics-num 1000 \
  --keep-best coverage --max-minutes "$MINUTES" --device cpu
$PY jobs/monitor_lines.py "$RUN"
