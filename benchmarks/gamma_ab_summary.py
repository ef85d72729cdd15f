"""One JSON for an R1-weight A/B test: per arm, what `latentatlas evaluate` and critic_probe.py said.

Issue 3's faces64 covers some factors too narrowly (std of predicted factors, samples against
renders, 0.26 for face width) while its critic tells every fake from every render. The A/B
tests train arms from one checkpoint or seed with different R1 weights (jobs/gamma_proxy_cpu.sh
at 32 px on CPU, jobs/faces64_gpu.sh GAMMA_B= at 64 px on a GPU); this puts their figures side
by side. Each ARM is a run folder (its stats.jsonl, or the log its portable checkpoint carries)
with ARM.eval.json (`latentatlas evaluate --json-out`) and ARM.probe.json (critic_probe.py --out)
beside it; with the factor monitor's log (`train --metrics-kimg`, RUN/metrics.jsonl) the means of
its last lines too, steadier than one evaluation.

    python benchmarks/gamma_ab_summary.py --out benchmarks/results_cpu_gamma_proxy_32px_switch.json \\
        --experiment "..." --device "2 CPU cores, one per arm" runs/gamma-proxy-32/default runs/gamma-proxy-32/default-gamma0.1
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from latentatlas.io.atomic import write_json
from latentatlas.metrics.evaluate import coverage
from latentatlas.training import stats_log
from latentatlas.training.common import read_portable_meta
from latentatlas.training.factor_monitor import METRICS_FILE

TAIL_TICKS = 5  # ticks (4 kimg each) averaged for the losses and the speed
TAIL_METRICS = 4  # factor monitor lines averaged (the monitor's figures swing from line to line)


def run_log(run: Path, name: str, meta_key: str) -> list[dict]:
    """A run's JSON-lines log: its file, else the text its portable checkpoint carries."""
    lines = stats_log.read_lines(run / name)
    if not lines and (run / "portable").is_dir():
        lines = stats_log.parse(read_portable_meta(run / "portable").get(meta_key) or "")
    return lines


def monitor_tail(run: Path) -> dict | None:
    """Means of the last TAIL_METRICS factor monitor lines (`train --metrics-kimg`), if the run has them."""
    lines = run_log(run, METRICS_FILE, "metrics_log")[-TAIL_METRICS:]
    if not lines:
        return None
    return {"lines": len(lines), "kimg": [line["kimg"] for line in lines], "num": lines[-1]["num"],
            "factor_fid": round(statistics.mean(line["factor_fid"] for line in lines), 2),
            "mean_std_ratio_capped": round(statistics.mean(line["mean_std_ratio_capped"] for line in lines), 3),
            "std_ratio": {k: round(statistics.mean(line["std_ratio"][k] for line in lines), 3) for k in lines[-1]["std_ratio"]}}


def arm_summary(run: Path) -> dict:
    ev = json.loads(run.with_name(run.name + ".eval.json").read_text())
    probe = json.loads(run.with_name(run.name + ".probe.json").read_text())
    last = run_log(run, stats_log.LOG_FILE, "stats_log")[-TAIL_TICKS:]
    return {
        "r1_gamma": probe["r1_gamma_of_run"], "kimg": probe["kimg"],
        "kimg_per_min_last_ticks": round(60 / statistics.mean(t["sec_per_kimg"] for t in last), 3) if last else None,
        "factor_fid": round(ev["factor_fid_samples_vs_renders"], 2), "factor_fid_renders_vs_renders": round(ev["factor_fid_renders_vs_renders"], 2),
        "num_images": ev["num_images"], "ppl_w": ev.get("ppl_w_factor_features"),
        **coverage(ev["factors"]), "monitor_last_lines": monitor_tail(run), "critic_accuracy": probe["accuracy_renders_vs_fakes_G"],
        "renders_blurred_0.8_judged_real": probe["renders_blurred"]["sigma_0.8"]["judged_real"], "r1_penalty": probe["r1"]["penalty_at_run_gamma"],
        "last_ticks_mean": {k: round(statistics.mean(t[k] for t in last if k in t), 3)
                            for k in ("G", "D", "D_real", "D_fake") if any(k in t for t in last)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("arms", nargs="+", type=Path, help="run folders, each with ARM.eval.json and ARM.probe.json beside it")
    ap.add_argument("--out", required=True)
    ap.add_argument("--experiment", default="R1 weight A/B")
    ap.add_argument("--device", required=True, help="where the arms trained, in words")
    args = ap.parse_args()
    missing = [str(p) for a in args.arms for p in (a.with_name(a.name + ".eval.json"), a.with_name(a.name + ".probe.json")) if not p.exists()]
    if missing:
        raise SystemExit(f"missing: {', '.join(missing)} (run `latentatlas evaluate --json-out` and critic_probe.py --out first)")
    out = {"experiment": args.experiment, "device": args.device, "arms": {a.name: arm_summary(a) for a in args.arms}}
    write_json(args.out, out)
    keys = ("kimg", "factor_fid", "mean_std_ratio_capped", "critic_accuracy", "factors_under_half")
    print(json.dumps({k: {x: v[x] for x in keys} for k, v in out["arms"].items()}, indent=1))


if __name__ == "__main__":
    main()
