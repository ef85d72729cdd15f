"""The factor monitor's lines of a run folder, cut to what a job log shows: kimg, factor FID, the
capped mean std ratio and the factors under half (RUN/metrics.jsonl, training/factor_monitor.py).
  python jobs/monitor_lines.py RUN [LAST]    # every line, or the LAST ones
Used by faces64_gpu.sh and faces64_cpu_gamma.sh."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from latentatlas.training.stats_log import METRICS_FILE, read_lines

KEYS = ("kimg", "factor_fid", "mean_std_ratio_capped", "factors_under_half")

if __name__ == "__main__":
    lines = read_lines(Path(sys.argv[1]) / METRICS_FILE)
    last = int(sys.argv[2]) if len(sys.argv) > 2 else len(lines)
    for line in lines[len(lines) - last:]:
        print(json.dumps({k: line[k] for k in KEYS}))
