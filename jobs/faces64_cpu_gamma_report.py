"""The figures of one chunk of jobs/faces64_cpu_gamma.sh as JSON in benchmarks/, the same way each session.

Why: the run's logs (RUN/metrics.jsonl, RUN/stats.jsonl) are not committed, only its portable
checkpoint, which carries them to the next session. Each chunk's results file holds the whole
monitor history from the start (the control) to the chunk's end, and the critic's tick means
of this chunk, so one file answers "wider than the start yet?".
  python jobs/faces64_cpu_gamma_report.py --from-kimg 743.8 --device "2 CPU cores (AMD EPYC), alone" --minutes 130
writes benchmarks/results_cpu_faces64_gamma0.1_<last kimg>kimg.json and prints the monitor table.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from latentatlas.io.atomic import write_json
from latentatlas.training import stats_log

ROOT = Path(__file__).resolve().parent.parent
MONITOR_KEYS = ("kimg", "num", "factor_fid", "mean_std_ratio_capped", "factors_under_half", "std_ratio")
TICK_KEYS = ("D_real", "D_fake", "R1", "sec_per_kimg")
TABLE_FACTORS = ("face_width", "roll", "mouth_open", "yaw")


def read_log(path: Path) -> list[dict]:
    if not path.is_file():
        sys.exit(f"{path}: no such log; run jobs/faces64_cpu_gamma.sh first (it restores the logs from the portable checkpoint)")
    return stats_log.read_lines(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=ROOT / "runs/faces64-narrow-cpu-gamma0.1")
    ap.add_argument("--from-kimg", type=float, required=True, help="Where this chunk resumed (the last chunk's end).")
    ap.add_argument("--device", required=True, help="The machine, in words, e.g. '2 CPU cores (AMD EPYC), alone'.")
    ap.add_argument("--minutes", type=float, required=True, help="The chunk's MINUTES.")
    ap.add_argument("--note", default="", help="Anything that differed from a plain chunk (other work on the cores).")
    args = ap.parse_args()

    monitor = [{k: line[k] for k in MONITOR_KEYS} for line in read_log(args.run / stats_log.METRICS_FILE)]
    ticks = [line for line in read_log(args.run / stats_log.LOG_FILE) if line["kimg"] > args.from_kimg]
    if not ticks:
        sys.exit(f"no training tick after {args.from_kimg} kimg in {args.run}/stats.jsonl: did the chunk run?")
    end = monitor[-1]["kimg"]
    if end <= args.from_kimg:  # would overwrite the last chunk's file with its own figures
        sys.exit(f"no monitor line after {args.from_kimg} kimg in {args.run}/metrics.jsonl: did the chunk run?")
    trained = end - args.from_kimg
    result = {
        "experiment": "faces64 (runs/faces64-narrow, 690.5 kimg, trained at batch 128 with R1 weight 0.0064) resumed on CPU "
                      "at batch 32 with R1 weight 0.1; the first monitor line is the start, measured with the factor "
                      "monitor's latents before training",
        "command": f"MINUTES={args.minutes:g} bash jobs/faces64_cpu_gamma.sh",
        "device": args.device,
        "date": date.today().isoformat(),
        "chunk_kimg": [args.from_kimg, end],
        "kimg_per_min": round(trained / args.minutes, 3),  # over the whole chunk, monitor lines included
        "note": args.note,
        "monitor": monitor,
        "critic_ticks": [{"kimg": t["kimg"], **{k: round(t[k], 3) for k in TICK_KEYS if k in t}} for t in ticks],
    }
    out = ROOT / "benchmarks" / f"results_cpu_faces64_gamma0.1_{int(end)}kimg.json"
    write_json(out, result)
    print(f"| kimg | factor FID (1k) | mean std ratio (capped) | {' | '.join(f.replace('_', ' ') for f in TABLE_FACTORS)} | factors under half |")
    for line in monitor:
        ratios = " | ".join(f"{line['std_ratio'][f]:.2f}" for f in TABLE_FACTORS)
        print(f"| {line['kimg']:.1f} | {line['factor_fid']:.1f} | {line['mean_std_ratio_capped']:.2f} | {ratios} | {len(line['factors_under_half'])} |")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
