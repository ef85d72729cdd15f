"""Can faces64 draw what its samples lack? Projection of factor extremes against the samples' spread, as JSON.

faces64's samples vary some factors (eye spacing, eye openness, mouth width, roll) less than half
as much as the renders do. Two causes call for different remedies: the synthesis network may be
unable to draw the extremes at all (capacity: a wider network), or it can draw them but the mapping
network seldom lands there (coverage: more training, or a critic that asks for them). This tells
them apart. For each factor, renders of a few faces with that factor set low and high (the others
as sampled) are projected (the `project --loss factor` objective, in W and in W+); the predictor
then reads the factor on the targets and on the reconstructions. Per factor:
- projected span: (reconstruction high - low) / (target high - low), averaged over the faces: the
  share of the factor's range the projection reproduces (1: all of it);
- samples' span: the spread between the 2nd and 98th percentile of the factor over `--samples`
  samples, divided by the same spread over as many renders (metrics/factor_range.span: what
  `evaluate`'s std ratio says, read at the tails; `evaluate` prints it as the span ratio).
A factor whose W+ (or W) span is near 1 while its samples' span is small is one the generator can
draw but does not sample.

    python benchmarks/factor_reach.py > benchmarks/results_cpu_factor_reach.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from latentatlas.data import synthfaces  # noqa: E402
from latentatlas.inversion.losses import factor_feature_distance  # noqa: E402
from latentatlas.inversion.projector import ProjectorConfig, project  # noqa: E402
from latentatlas.metrics.evaluate import RENDER_SEED_A, render_batches, sample_batches  # noqa: E402
from latentatlas.metrics.factor_range import span  # noqa: E402
from latentatlas.models.bundled import load_generator  # noqa: E402
from latentatlas.training.attributes import load_predictor  # noqa: E402

# The four under half in the 837 kimg model's 10k evaluation, then two wide ones for comparison.
FACTORS = "eye_spacing,eye_openness,mouth_width,roll,face_width,yaw"
SEED = 10_700_000  # held-out renders (faces64 trained below 1e6)
LOW, HIGH = 0.05, 0.95
BATCH = 250


def targets(factor: str, faces: int, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Renders of `faces` sampled faces, each with `factor` at LOW then at HIGH: [2 * faces, 3, R, R]."""
    j = synthfaces.FACTOR_NAMES.index(factor)
    base = synthfaces.sample_factors(faces, SEED + j)
    low, high = base.clone(), base.clone()
    low[:, j], high[:, j] = LOW, HIGH
    factors = torch.cat([low, high])
    return synthfaces.render(factors, resolution), factors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="faces64", help="a synthfaces StyleGAN2 model, bundled or a file")
    ap.add_argument("--factors", default=FACTORS, help="comma-separated synthfaces factor names")
    ap.add_argument("--faces", type=int, default=3, help="faces per factor (each projected with the factor low and high)")
    ap.add_argument("--steps", type=int, default=200, help="projection steps")
    ap.add_argument("--spaces", default="w,w+")
    ap.add_argument("--samples", type=int, default=5000, help="samples (and renders) for the spread at the tails")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = [f.strip() for f in args.factors.split(",") if f.strip()]
    unknown = [f for f in names if f not in synthfaces.FACTOR_NAMES]
    if unknown:
        raise SystemExit(f"--factors: unknown {', '.join(unknown)}; synthfaces has {', '.join(synthfaces.FACTOR_NAMES)}")
    start = time.perf_counter()
    generator, info = load_generator(args.model, "cpu")
    predictor = load_predictor("factors", "cpu")
    index = [synthfaces.FACTOR_NAMES.index(f) for f in names]
    with torch.no_grad():
        sampled = torch.cat([predictor.predict(b) for b in sample_batches(generator, args.samples, BATCH, seed=0)])
        rendered = torch.cat([predictor.predict(b) for b in render_batches(args.samples, BATCH, RENDER_SEED_A, generator.img_resolution, torch.device("cpu"))])
    all_targets = torch.cat([targets(f, args.faces, generator.img_resolution)[0] for f in names])
    with torch.no_grad():
        read_targets = predictor.predict(all_targets)
    out: dict = {"benchmark": "factor_reach", "device": f"cpu ({torch.get_num_threads()} threads)", "torch": torch.__version__,
                 "model": args.model, "kimg": info.get("kimg"), "faces": args.faces, "low_high": [LOW, HIGH],
                 "steps": args.steps, "samples": args.samples, "factors": {}}
    projected = {}
    for space in [s.strip() for s in args.spaces.split(",")]:
        cfg = ProjectorConfig(space=space, steps=args.steps, mse_weight=1.0)
        print(f"project: {space}, {len(all_targets)} images, {args.steps} steps", file=sys.stderr)
        res = project(generator, all_targets, factor_feature_distance(predictor.features), cfg, seed=0)
        with torch.no_grad():
            projected[space] = predictor.predict(res.images)
    n = args.faces
    spans = span(sampled) / span(rendered)
    for k, (name, j) in enumerate(zip(names, index)):
        rows = slice(2 * n * k, 2 * n * (k + 1))
        t = read_targets[rows, j]
        entry = {"target_read_low_high": [float(t[:n].mean()), float(t[n:].mean())],
                 "samples_span_2_98": float(spans[j]),
                 "samples_std_ratio": float(sampled[:, j].std() / rendered[:, j].std())}
        for space, read in projected.items():
            r = read[rows, j]
            entry[f"{space}_read_low_high"] = [float(r[:n].mean()), float(r[n:].mean())]
            entry[f"{space}_span"] = float(((r[n:] - r[:n]) / (t[n:] - t[:n])).mean())
        out["factors"][name] = entry
    out["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
