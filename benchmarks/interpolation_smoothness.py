"""Interpolating between projected out-of-domain images: does the prior keep the path in distribution?

Codes: the out-of-domain projections of benchmarks/projection_quality.py (`--codes F.npz`, written
there by `--save-codes`), or, without --codes, this script projects the same out-of-domain
images itself (same seeds, kinds, loss and lambda rules; `--prior` sets lambda, default 1e-6).
Every pair (i < j) of codes is interpolated in the space it was found in (W or W+) with lerp
(`latentatlas.latent.paths.interpolate`, `--frames`, default 16, ends included) and rendered with
the model's constant noise, as `latentatlas interpolate` renders projected codes.

Per frame, averaged over pairs:
- nll: negative log-likelihood of the code under the Gaussian prior, per layer (W+: summed over
  layers and divided by num_ws); mahalanobis likewise;
- glasses_confidence: |p(glasses) - 0.5| of the factor predictor (0.5: certain, 0: undecided);
- out_of_range: mean over the 19 continuous factors of how far the prediction lies outside [0, 1].
Per path: step distances d_k = factor-feature distance between frames k and k+1;
smoothness = max_k d_k / mean_k d_k (1 = evenly paced; large = a jump), and the mean d_k.
Side by side: lambda 0 and the chosen lambda, in W and W+ (and the whitened projections'
codes, `project --whiten`, when the .npz holds them); as a reference, the same figures for
lerp in W between pairs of sampled (in-distribution) codes, seeds 0..2*pairs.

    python benchmarks/projection_quality.py --save-codes /tmp/codes.npz > benchmarks/results_cpu_projection_quality.json
    python benchmarks/interpolation_smoothness.py --codes /tmp/codes.npz > benchmarks/results_cpu_interpolation_smoothness.json
    python benchmarks/interpolation_smoothness.py --device cuda --num 8 --steps 1000 --prior 1e-6   # projects itself
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from projection_quality import OOD_KINDS, OOD_SEED, device_name, log, ood_images, per_layer, run, setup  # noqa: E402

from latentatlas.data import synthfaces  # noqa: E402
from latentatlas.runtime import pick_device  # noqa: E402
from latentatlas.inversion.losses import factor_feature_distance  # noqa: E402
from latentatlas.latent.codes import LatentCode, synthesize  # noqa: E402
from latentatlas.latent.paths import interpolate  # noqa: E402

GLASSES = synthfaces.FACTOR_NAMES.index("glasses")
CONTINUOUS = ~synthfaces.BINARY


@torch.no_grad()
def path_figures(generator, predictor, prior, a: torch.Tensor, b: torch.Tensor, space: str, frames: int) -> dict:  # type: ignore[no-untyped-def]
    code = interpolate(LatentCode(space, a[None]), LatentCode(space, b[None]), frames, "lerp")
    images = synthesize(code, generator)
    w = code.tensor.double().cpu()
    p = predictor.predict(images).cpu()
    cont = p[:, CONTINUOUS]
    steps = factor_feature_distance(predictor.features)(images[1:], images[:-1]).cpu()
    return {
        "nll": per_layer(prior.nll(w), w),
        "mahalanobis": per_layer(prior.mahalanobis(w), w),
        "glasses_confidence": (p[:, GLASSES] - 0.5).abs().double(),
        "out_of_range": ((-cont).clamp_min(0) + (cont - 1).clamp_min(0)).mean(1).double(),
        "step_distances": steps.double(),
    }


def aggregate(paths: list[dict], frames: int) -> dict:
    per_frame = {k: torch.stack([p[k] for p in paths]).mean(0).tolist() for k in ("nll", "mahalanobis", "glasses_confidence", "out_of_range")}
    ratios = [float(p["step_distances"].max() / p["step_distances"].mean().clamp_min(1e-12)) for p in paths]
    mid = slice(1, frames - 1)
    nll = torch.stack([p["nll"] for p in paths])
    return {
        "pairs": len(paths),
        "smoothness_max_over_mean": {"mean": float(np.mean(ratios)), "worst": float(np.max(ratios)), "per_pair": ratios},
        "mean_step_distance": float(np.mean([float(p["step_distances"].mean()) for p in paths])),
        "nll_endpoints": float(nll[:, [0, -1]].mean()),
        "nll_inner_frames": float(nll[:, mid].mean()),
        "nll_inner_max": float(nll[:, mid].max(1).values.mean()),
        "glasses_confidence_mean": float(np.mean(per_frame["glasses_confidence"])),
        "glasses_confidence_min": float(torch.stack([p["glasses_confidence"] for p in paths]).min(1).values.mean()),
        "out_of_range_mean": float(np.mean(per_frame["out_of_range"])),
        "per_frame": per_frame,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--codes", default=None, help=".npz from projection_quality.py --save-codes")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--num", type=int, default=6, help="images to project (without --codes)")
    ap.add_argument("--steps", type=int, default=100, help="projection steps (without --codes)")
    ap.add_argument("--prior", type=float, default=1e-6, help="lambda (without --codes)")
    ap.add_argument("--ood", default=",".join(OOD_KINDS))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(pick_device(args.device))
    t_start = time.perf_counter()
    generator, info, predictor, prior = setup(device)
    if args.codes:
        data = np.load(args.codes)
        lam, kinds, steps = float(data["lam"]), [str(k) for k in data["kinds"]], int(data["steps"])
        codes = {k: torch.from_numpy(data[k]).to(device) for k in data.files if k.startswith("w")}
        source = f"{args.codes} (benchmarks/projection_quality.py --save-codes)"
    else:
        lam, steps = args.prior, args.steps
        targets, kinds = ood_images(args.num, OOD_SEED, [k.strip() for k in args.ood.split(",")], generator.img_resolution)
        codes = {}
        for space in ("w", "w+"):
            for lam_s in (0.0, lam):
                log(f"project: {space}, lambda {lam_s:g}, {steps} steps, {len(targets)} images")
                res, _ = run(generator, predictor, prior, targets.to(device), space, lam_s, steps, seed=0)
                codes[f"{space}_lambda{lam_s:g}"] = res.w
        source = "projected by this script"
    pairs = list(itertools.combinations(range(len(kinds)), 2))
    out: dict = {
        "benchmark": "interpolation_smoothness",
        "device": device_name(device),
        "torch": torch.__version__,
        "model": "faces64",
        "codes": source,
        "projection_steps": steps,
        "chosen_lambda": lam,
        "out_of_domain_kinds": kinds,
        "frames": args.frames,
        "method": "lerp, constant noise",
        "pairs": [list(p) for p in pairs],
        "settings": [],
    }
    for key, w in codes.items():
        lam_s = key.split("_lambda")[1].removesuffix("_whitened")
        space = "w+" if w.ndim == 3 else "w"
        paths = [path_figures(generator, predictor, prior, w[i], w[j], space, args.frames) for i, j in pairs]
        setting = {"space": space, "lambda": float(lam_s), "whitened": key.endswith("_whitened")}
        out["settings"].append(setting | aggregate(paths, args.frames))
        log(f"{key}: smoothness {out['settings'][-1]['smoothness_max_over_mean']['mean']:.3f}")
    # Reference: sampled codes, lerp in W.
    with torch.no_grad():
        z = torch.randn(2 * len(pairs), generator.z_dim, generator=torch.Generator().manual_seed(0)).to(device)
        ws = generator.mapping(z)[:, 0]
    paths = [path_figures(generator, predictor, prior, ws[2 * k], ws[2 * k + 1], "w", args.frames) for k in range(len(pairs))]
    out["reference_sampled_w"] = aggregate(paths, args.frames)
    out["total_seconds"] = time.perf_counter() - t_start
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
