"""Issue 5's table: GANSpace, SeFa, supervised, linear-RBF and warped paths on one model, one budget.

For each training seed, every method makes K paths in W of faces64 (the same K for all), and
each set is scored by `directions.score.score_paths` with the same start codes, path length,
frames and reconstructor budget: disentanglement, completeness, mean steepness, mean off-target
drift, and the held-out accuracy of a reconstructor trained afresh on the frozen paths. Prints
JSON (per method: the mean and std over seeds of each figure, and every run), and writes the
response heat-maps of the first seed when --heatmaps is given.

With `--runs FILE` every finished (seed, method) row is appended to FILE as one JSON line the
moment it is done, and rows already in FILE are not run again: a run cut short by a time limit
keeps what it finished, and the same command resumes it (the table is made from every row in
FILE). Seeds are the outer loop, so whole seeds complete first.

    python benchmarks/directions_table.py --device cuda --seeds 0,1,2 --paths 20 --warped-steps 3000 \\
        --reconstructor-steps 1000 --heatmaps docs
    python benchmarks/directions_table.py --paths 4 --warped-steps 2 --reconstructor-steps 2 --starts 4 --samples 2000  # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

# The settings a row was made with: rows of another budget are not mixed into one table.
BUDGET_KEYS = ("model", "paths", "samples", "supervised_samples", "warped_steps", "warped_batch", "dipoles", "starts",
               "frames", "length", "reconstructor_steps", "reconstructor_batch", "reconstructor_input")
FIGURES = ("disentanglement", "completeness", "mean_steepness", "mean_off_target_drift", "reconstructor_accuracy")


def make_paths(method: str, generator, predictor, k: int, seed: int, args, tmp: str):  # type: ignore[no-untyped-def]
    """K paths of one method as a PathSet, and the seconds it took to find them."""
    import torch

    from latentatlas.directions.pca import ganspace
    from latentatlas.directions.sefa import sefa
    from latentatlas.directions.supervised import factor_directions
    from latentatlas.directions.warped import PathSet, WarpedConfig, train_warped

    t = time.perf_counter()
    if method == "ganspace":
        paths = PathSet(ganspace(generator, num_samples=args.samples, components=k, seed=seed, progress=False))
    elif method == "sefa":
        paths = PathSet(sefa(generator, components=k, scale_samples=min(args.samples, 20_000), seed=seed))
    elif method == "supervised":
        d = factor_directions(generator, predictor, args.supervised_samples, seed=1000 + seed, method="svm")
        order = torch.arange(len(d))[:k]  # the first k factors
        d.vectors, d.scales, d.names = d.vectors[order], d.scales[order], [d.names[i] for i in order]
        paths = PathSet(d)
    elif method in ("linear-rbf", "warped"):
        linear = method == "linear-rbf"
        cfg = WarpedConfig(sets=k, dipoles=1 if linear else args.dipoles, space="w", linear=linear, steps=args.warped_steps,
                           batch=args.warped_batch, seed=seed, reconstructor_input=args.reconstructor_input)
        result = train_warped(generator, os.path.join(tmp, f"{method}-{seed}.safetensors"), cfg, resume=False, progress=False)
        paths = PathSet(result.paths)
    else:
        raise SystemExit(f"unknown method {method}")
    return paths, time.perf_counter() - t


def budget(args: argparse.Namespace) -> dict:
    return {k: getattr(args, k) for k in BUDGET_KEYS}


def read_runs(path: str, seeds: list[int], methods: list[str], want: dict) -> dict[str, list[dict]]:
    """The finished rows of a --runs file for these seeds, methods and budget (incl. the model), by method."""
    runs: dict[str, list[dict]] = {}
    skipped = 0
    if path and os.path.exists(path):
        with open(path) as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a time limit: that row runs again
                    skipped += 1
                    continue
                # Rows from before the reconstructor's input was a setting: it saw the pair.
                if {"reconstructor_input": "pair", **row.get("budget", {})} != want:
                    skipped += 1
                elif row["seed"] in seeds and row["method"] in methods:
                    runs.setdefault(row["method"], []).append(row)
    if skipped:
        print(f"{path}: {skipped} rows made with other settings, or cut short, are left out", file=sys.stderr)
    return runs


def append_row(path: str, row: dict) -> None:
    """One JSON line, after a newline if the file ends in a line cut short (so that never joins it)."""
    cut = os.path.exists(path) and os.path.getsize(path) > 0 and open(path, "rb").read()[-1:] != b"\n"
    with open(path, "a") as f:
        f.write(("\n" if cut else "") + json.dumps(row) + "\n")


def report(runs: dict[str, list[dict]], device: str, torch_version: str, args: argparse.Namespace) -> dict:
    """Mean and std over seeds of every figure, per method, with the seeds each covers."""
    table: dict[str, dict] = {}
    for method, rows in runs.items():
        table[method] = {}
        for k in FIGURES:
            vals = [r[k] for r in rows if k in r]
            if vals:
                table[method][k] = {"mean": round(statistics.fmean(vals), 4), "std": round(statistics.pstdev(vals), 4)}
        table[method]["seeds"] = sorted(r["seed"] for r in rows)
    return {
        "benchmark": "directions_table",
        "device": device,
        "torch": torch_version,
        "model": args.model,
        "settings": {k: v for k, v in vars(args).items() if k not in ("heatmaps", "runs", "report_only")},
        "table": table,
        "runs": runs,
    }


def main() -> None:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from latentatlas.directions.reconstructor import RECONSTRUCTOR_INPUTS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="faces64")
    p.add_argument("--device", default="cpu")
    p.add_argument("--methods", default="ganspace,sefa,supervised,linear-rbf,warped")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--paths", type=int, default=20, help="K: paths per method")
    p.add_argument("--samples", type=int, default=100_000, help="W samples for GANSpace (SeFa scales use at most 20k)")
    p.add_argument("--supervised-samples", type=int, default=8000)
    p.add_argument("--warped-steps", type=int, default=3000)
    p.add_argument("--warped-batch", type=int, default=12)
    p.add_argument("--dipoles", type=int, default=16)
    p.add_argument("--starts", type=int, default=64)
    p.add_argument("--frames", type=int, default=9)
    p.add_argument("--length", type=float, default=0.5, help="half path length in units of w_std")
    p.add_argument("--reconstructor-steps", type=int, default=1000)
    p.add_argument("--reconstructor-batch", type=int, default=16)
    p.add_argument("--reconstructor-input", default="difference", choices=RECONSTRUCTOR_INPUTS,
                   help="what both reconstructors (WarpedGANSpace's joint one and the scoring one) see of a pair")
    p.add_argument("--heatmaps", default="", help="folder for the first seed's heat-maps (directions_<method>.png)")
    p.add_argument("--runs", default="", help="JSON-lines file: finished rows are appended and not run again")
    p.add_argument("--report-only", action="store_true", help="print the table of the rows in --runs; run nothing")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = args.methods.split(",")
    import torch

    from latentatlas.directions.files import model_fingerprint
    from latentatlas.directions.score import score_paths
    from latentatlas.metrics.paths import heatmap
    from latentatlas.models.bundled import load_generator
    from latentatlas.training.attributes import load_predictor

    generator, _ = load_generator(args.model, "cpu" if args.report_only else args.device)
    # Rows of another model (a retrained faces64 keeps its name) or budget are not mixed in.
    want = {**budget(args), "model_fingerprint": model_fingerprint(generator)}
    runs = read_runs(args.runs, seeds, methods, want)
    if args.report_only:
        if not runs:
            raise SystemExit(f"{args.runs or '--runs'}: no finished rows for seeds {args.seeds} and methods {args.methods}")
        device = sorted({r.get("device", "?") for rows in runs.values() for r in rows})
        print(json.dumps(report(runs, ", ".join(device), torch.__version__, args), indent=1))
        return
    if args.device == "cuda":
        from latentatlas.runtime import set_tf32

        set_tf32(True)
    predictor = load_predictor("factors", args.device)
    device = torch.cuda.get_device_name(0) if args.device == "cuda" else f"cpu ({os.cpu_count()} cores)"
    done = {(r["seed"], m) for m, rows in runs.items() for r in rows}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for method in methods:
                if (seed, method) in done:
                    continue
                paths, seconds = make_paths(method, generator, predictor, args.paths, seed, args, tmp)
                s = score_paths(generator, predictor, paths, starts=args.starts, steps=args.frames, length=args.length,
                                top=args.paths, reconstructor_steps=args.reconstructor_steps,
                                reconstructor_batch=args.reconstructor_batch, reconstructor_input=args.reconstructor_input,
                                seed=7 + seed)
                row = {k: s[k] for k in FIGURES if k in s}
                if "reconstructor" in s:
                    row["reconstructor_accuracy"] = s["reconstructor"]["accuracy"]
                    row["chance"] = s["reconstructor"]["chance"]
                row.update({"method": method, "seed": seed, "device": device, "seconds_to_find": round(seconds, 1), "budget": want,
                            "names": [q["name"] for q in s["paths"]]})
                runs.setdefault(method, []).append(row)
                if args.runs:
                    append_row(args.runs, row)
                print(f"seed {seed} {method:<11} " + " ".join(f"{k}={row[k]:.3f}" for k in FIGURES if k in row), file=sys.stderr)
                if args.heatmaps and seed == seeds[0]:
                    heatmap(torch.tensor(s["slopes"]), [f"{paths.names[i]}: {q['name']}" for i, q in enumerate(s["paths"])],
                            os.path.join(args.heatmaps, f"directions_{method}.png"), f"{method} (faces64, seed {seed})")
    print(json.dumps(report(runs, device, torch.__version__, args), indent=1))


if __name__ == "__main__":
    main()
