"""Projection quality of faces64: in-domain vs out-of-domain images, W vs W+, without and with the prior.

What it measures (issue 4). Targets are
- in-domain: held-out synthfaces renders (seeds from 10_000_000, far from the training seeds of
  faces64, which are below 1e6, and of the predictor, below 13_000), with their true factors;
- out-of-domain: held-out renders (seeds from 10_500_000) made into something faces64 never
  saw, one change per image, cycling through `--ood` (default shape,photo,invert,photo,rot90,photo):
    shape   a large square (about 45% of the width) with a 4 px black/yellow checkerboard,
            pasted at a random place over the face;
    invert  colours inverted (x -> -x in [-1, 1]: dark background, blue-grey skin);
    rot90   the face rotated by 90 degrees (lying on its side);
    photo   instead of a render, the next of scikit-image's bundled colour photos (astronaut,
            a woman in a space suit; coffee, a cup from above; chelsea, a cat), read as
            `latentatlas project` reads a user's image: centre-cropped and resized.
Every image is projected with the library's projector (`project`, optimised noise maps as the
official one) and the loss of `latentatlas project --loss factor`: factor-feature distance of the
bundled predictor + pixel MSE (weight 1), in W and in W+, with lambda = 0 and with a chosen
lambda for the Gaussian prior (`--prior` of the CLI: lambda * squared Mahalanobis distance in
leaky_relu(w, 5), summed over the layers in W+), and with whitened prior coordinates
(`--whiten` of the CLI: optimise c = U^T (v - mu) / sigma from the prior's mode) at the lambdas
of `--whiten-lambdas` (default 0 and 1e-3; there the prior term is lambda * ||c||^2).

Choosing lambda: a sweep over `--sweep` (default 1e-7, 1e-6, 1e-5) and 0, in W+, on separate
images (`--sweep-num` per domain, default 1: in-domain from seed 10_900_000, out-of-domain from
10_950_000) so the choice is not made on the images that are then reported. (A first sweep over
1e-4, 1e-3, 1e-2 is in results_cpu_projection_sweep_large_lambda.json: all three cost 23x to 59x
the reconstruction objective, hence the smaller values.) The chosen lambda is the largest one whose mean
reconstruction objective (factor-feature distance + MSE, the loss without its prior term) on the
sweep images is at most `--max-loss-ratio` (default 1.5) times that of lambda = 0. `--prior X`
skips the sweep and uses X. A weakness of this rule: the mean runs over both domains, and the
out-of-domain image's feature distance (about 60) dwarfs the in-domain one (about 1), so the rule
barely sees the in-domain cost. In the committed CPU run it picked 1e-5, which triples the
in-domain feature distance in W+; a per-domain rule would have picked 1e-6 on the same sweep.

Reported per setting (space, lambda) and domain, mean over images (per image in `per_image`):
- mse: pixel MSE of the reconstruction with its optimised noise maps; mse_const_noise: the same
  code rendered with the model's constant noise (what interpolation and editing use);
- feature_distance: the factor-feature distance (the loss term) to the target;
- factor_mae_vs_target: mean abs difference of the 20 predicted factors, target vs reconstruction;
- in-domain only: factor_mae_vs_truth (reconstruction vs the true factors) next to
  predictor_floor_mae (the target's own prediction vs the truth: the best reachable);
- glasses_flips: fraction of images whose predicted glasses (p > 0.5) differ from the target's;
- mahalanobis / nll: squared Mahalanobis distance and negative log-likelihood of the found codes
  under the model's Gaussian prior, per layer (W+: summed over layers and divided by num_ws, so
  W and W+ read on one scale); `prior_reference` gives the same for sampled w (and for w_avg,
  where the projector starts).

Defaults are sized for 2 CPU cores (6 images per domain: out-of-domain the three edits and the
three photos, 100 steps; sweep at 50 steps; about 5 minutes with the bundled faces64);
`--num`, `--steps` and `--device cuda` scale it up. `--save-codes F.npz` keeps the
out-of-domain codes for benchmarks/interpolation_smoothness.py. Prints one JSON object.

    python benchmarks/projection_quality.py --save-codes /tmp/codes.npz --sheet docs/projection_sheet.png > benchmarks/results_cpu_projection_quality.json
    python benchmarks/projection_quality.py --device cuda --num 32 --steps 1000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from latentatlas.data import synthfaces  # noqa: E402
from latentatlas.runtime import pick_device  # noqa: E402
from latentatlas.inversion.losses import factor_feature_distance  # noqa: E402
from latentatlas.inversion.projector import ProjectorConfig, project  # noqa: E402
from latentatlas.io.images import read_image  # noqa: E402
from latentatlas.latent.gaussian import PRIOR_PREFIX, GaussianPrior  # noqa: E402
from latentatlas.models.bundled import load_generator  # noqa: E402
from latentatlas.training.attributes import load_predictor  # noqa: E402

IN_DOMAIN_SEED = 10_000_000
OOD_SEED = 10_500_000
SWEEP_IN_SEED = 10_900_000
SWEEP_OOD_SEED = 10_950_000
OOD_KINDS = ("shape", "photo", "invert", "photo", "rot90", "photo")
PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png")  # in scikit-image's package data, no download
GLASSES = synthfaces.FACTOR_NAMES.index("glasses")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def photo(i: int, resolution: int) -> torch.Tensor:
    """The i-th of PHOTOS (cycled), read by the library's image reader."""
    try:
        import skimage.data
    except ImportError:
        raise SystemExit("the photo kind needs scikit-image: pip install scikit-image==0.26.0 (make install has it)") from None
    return read_image(Path(skimage.data.__file__).parent / PHOTOS[i % len(PHOTOS)], resolution)[0]


def ood_images(n: int, seed: int, kinds: list[str], resolution: int = 64) -> tuple[torch.Tensor, list[str]]:
    """n held-out renders, each changed by one edit or replaced by a photo (kinds cycled): images in [-1, 1]."""
    images, _ = synthfaces.sample(n, seed=seed, resolution=resolution)
    g = torch.Generator().manual_seed(seed + 1)
    out, used = [], []
    photos = 0
    for i in range(n):
        kind = kinds[i % len(kinds)]
        img = images[i].clone()
        if kind == "shape":
            side = int(0.45 * resolution)
            y0, x0 = (int(v) for v in torch.randint(0, resolution - side, (2,), generator=g))
            yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
            checks = ((yy // 4 + xx // 4) % 2).float()  # 1: yellow, 0: black
            patch = torch.stack([checks * 2 - 1, checks * 2 - 1, -torch.ones_like(checks)])
            img[:, y0 : y0 + side, x0 : x0 + side] = patch
        elif kind == "invert":
            img = -img
        elif kind == "rot90":
            img = torch.rot90(img, 1, dims=(1, 2))
        elif kind == "photo":
            img = photo(photos, resolution)
            kind = f"photo:{PHOTOS[photos % len(PHOTOS)].split('.')[0]}"
            photos += 1
        else:
            raise SystemExit(f"unknown out-of-domain kind {kind!r}: use {', '.join(sorted(set(OOD_KINDS)))}")
        out.append(img)
        used.append(kind)
    return torch.stack(out), used


def setup(device: torch.device, model: str = "faces64", require_prior: bool = True):  # type: ignore[no-untyped-def]
    """The model, its info, the bundled factor predictor and the model's Gaussian prior (None
    for a model file without one, unless `require_prior`, which then says how to fit it)."""
    generator, info = load_generator(model, device)
    predictor = load_predictor("factors", device)
    has_prior = PRIOR_PREFIX + "mean" in info.get("extra_tensors", {})
    prior = GaussianPrior.from_model_info(info, model) if has_prior or require_prior else None
    return generator, info, predictor, prior


def per_layer(values: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Prior scores of w [N, D] or w+ [N, L, D] (summed over layers) on a per-layer scale."""
    return values / (w.shape[1] if w.ndim == 3 else 1)


@torch.no_grad()
def prior_reference(generator, prior: GaussianPrior, num: int = 5000, seed: int = 7) -> dict:  # type: ignore[no-untyped-def]
    z = torch.randn(num, generator.z_dim, generator=torch.Generator().manual_seed(seed)).to(generator.device)
    w = generator.mapping(z)[:, 0].double().cpu()
    d2, nll = prior.mahalanobis(w), prior.nll(w)
    w_avg = generator.mapping.w_avg.double().cpu()[None]
    q = torch.tensor([0.5, 0.95, 0.99], dtype=torch.float64)
    return {
        "num_samples": num,
        "sampled_w_mahalanobis": {"mean": float(d2.mean()), "median": float(d2.quantile(q[0])), "p95": float(d2.quantile(q[1])), "p99": float(d2.quantile(q[2]))},
        "sampled_w_nll": {"mean": float(nll.mean()), "p95": float(nll.quantile(q[1]))},
        "w_avg_mahalanobis": float(prior.mahalanobis(w_avg)[0]),
        "w_avg_nll": float(prior.nll(w_avg)[0]),
        "dimension": prior.dim,
    }


@torch.no_grad()
def score(generator, predictor, prior, res, targets: torch.Tensor, truth: torch.Tensor | None) -> dict[str, list[float]]:  # type: ignore[no-untyped-def]
    """Per-image figures of one projection result against its targets."""
    dist = factor_feature_distance(predictor.features)
    const = generator.synthesis(res.ws, noise_mode="const")
    p_target, p_recon = predictor.predict(targets), predictor.predict(res.images)
    w = res.w.double().cpu()
    out = {
        "mse": (res.images - targets).square().mean(dim=(1, 2, 3)).tolist(),
        "mse_const_noise": (const - targets).square().mean(dim=(1, 2, 3)).tolist(),
        "feature_distance": dist(res.images, targets).tolist(),
        "feature_distance_const_noise": dist(const, targets).tolist(),
        "factor_mae_vs_target": (p_recon - p_target).abs().mean(1).tolist(),
        "glasses_flips": ((p_recon[:, GLASSES] > 0.5) != (p_target[:, GLASSES] > 0.5)).float().tolist(),
        "mahalanobis": per_layer(prior.mahalanobis(w), w).tolist(),
        "nll": per_layer(prior.nll(w), w).tolist(),
    }
    if truth is not None:
        truth = truth.to(p_recon.device)
        out["factor_mae_vs_truth"] = (p_recon - truth).abs().mean(1).tolist()
        out["predictor_floor_mae"] = (p_target - truth).abs().mean(1).tolist()
    return out


def run(generator, predictor, prior, targets: torch.Tensor, space: str, lam: float, steps: int, seed: int, whiten: bool = False):  # type: ignore[no-untyped-def]
    cfg = ProjectorConfig(space=space, steps=steps, prior_weight=lam, mse_weight=1.0, whiten=whiten)
    t0 = time.perf_counter()
    res = project(generator, targets, factor_feature_distance(predictor.features), cfg, prior=prior if (lam > 0 or whiten) else None, seed=seed)
    return res, time.perf_counter() - t0


def mean(xs: list[float]) -> float:
    return float(sum(xs) / len(xs))


def summarise(per_image: dict[str, list[float]]) -> dict[str, float]:
    return {k: mean(v) for k, v in per_image.items()}


def split(per_image: dict[str, list[float]], sl: slice) -> dict[str, list[float]]:
    return {k: v[sl] for k, v in per_image.items() if len(v[sl])}


def sweep(generator, predictor, prior, lambdas: list[float], steps: int, kinds: list[str], max_ratio: float, device, k: int = 1) -> tuple[float, dict]:  # type: ignore[no-untyped-def]
    res_ = generator.img_resolution
    ind, truth = synthfaces.sample(k, seed=SWEEP_IN_SEED, resolution=res_)
    ood, ood_kinds = ood_images(k, SWEEP_OOD_SEED, kinds, res_)
    targets = torch.cat([ind, ood]).to(device)
    rows = []
    for lam in [0.0] + lambdas:
        log(f"sweep: w+, lambda {lam:g}, {steps} steps, {2 * k} images")
        res, secs = run(generator, predictor, prior, targets, "w+", lam, steps, seed=1)
        s = score(generator, predictor, prior, res, targets, None)
        truth_mae = (predictor.predict(res.images[:k]) - truth.to(device)).abs().mean(1).tolist()
        objective = [a + b for a, b in zip(s["feature_distance"], s["mse"])]
        rows.append({
            "lambda": lam,
            "objective_mean": mean(objective),
            "in_domain": summarise(split(s, slice(0, k))) | {"factor_mae_vs_truth": mean(truth_mae)},
            "out_of_domain": summarise(split(s, slice(k, 2 * k))),
            "seconds": secs,
        })
    base = rows[0]["objective_mean"]
    for r in rows:
        r["objective_ratio_to_lambda0"] = r["objective_mean"] / base
    ok = [r["lambda"] for r in rows[1:] if r["objective_ratio_to_lambda0"] <= max_ratio]
    chosen = max(ok) if ok else min(lambdas)
    return chosen, {
        "space": "w+", "steps": steps, "images": {"in_domain_seed": SWEEP_IN_SEED, "out_of_domain_seed": SWEEP_OOD_SEED, "out_of_domain_kinds": ood_kinds},
        "rule": f"largest lambda with mean (feature distance + MSE) <= {max_ratio} x lambda 0 (smallest swept if none)",
        "rows": rows, "chosen_lambda": chosen,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--num", type=int, default=6, help="images per domain")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--sweep", default="1e-7,1e-6,1e-5", help="lambdas tried (besides 0) to choose one")
    ap.add_argument("--sweep-steps", type=int, default=None, help="steps in the sweep (default: half of --steps)")
    ap.add_argument("--sweep-num", type=int, default=1, help="sweep images per domain")
    ap.add_argument("--max-loss-ratio", type=float, default=1.5)
    ap.add_argument("--prior", type=float, default=None, help="use this lambda, skip the sweep")
    ap.add_argument("--ood", default=",".join(OOD_KINDS), help="out-of-domain kinds, cycled over the images (photo: the next photo)")
    ap.add_argument("--spaces", default="w,w+")
    ap.add_argument("--whiten-lambdas", default="0,1e-3", help="also project with whitened prior coordinates (`project --whiten`) at these lambdas ('' for none)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--save-codes", default=None, help="write the out-of-domain codes per setting to this .npz")
    ap.add_argument("--sheet", default=None, help="write a PNG: the targets, then one row of reconstructions per setting")
    ap.add_argument("--sweep-only", action="store_true", help="stop after choosing lambda")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(pick_device(args.device))
    kinds = [k.strip() for k in args.ood.split(",") if k.strip()]
    t_start = time.perf_counter()
    generator, info, predictor, prior = setup(device)
    out: dict = {
        "benchmark": "projection_quality",
        "device": device_name(device),
        "torch": torch.__version__,
        "model": "faces64",
        "loss": "factor-feature distance (bundled predictor) + pixel MSE (weight 1), as `latentatlas project --loss factor`",
        "num_per_domain": args.num,
        "steps": args.steps,
        "prior_reference": prior_reference(generator, prior),
    }

    if args.prior is None:
        lambdas = [float(x) for x in args.sweep.split(",")]
        sweep_steps = args.sweep_steps or max(args.steps // 2, 1)
        lam, out["sweep"] = sweep(generator, predictor, prior, lambdas, sweep_steps, kinds, args.max_loss_ratio, device, args.sweep_num)
    else:
        lam = args.prior
        out["sweep"] = None
    out["chosen_lambda"] = lam
    log(f"lambda = {lam:g}")
    if args.sweep_only:
        print(json.dumps(out, indent=1))
        return

    res_ = generator.img_resolution
    ind, truth = synthfaces.sample(args.num, seed=IN_DOMAIN_SEED, resolution=res_)
    ood, ood_kinds = ood_images(args.num, OOD_SEED, kinds, res_)
    targets = torch.cat([ind, ood]).to(device)
    out["images"] = {"in_domain_seed": IN_DOMAIN_SEED, "out_of_domain_seed": OOD_SEED, "out_of_domain_kinds": ood_kinds}
    n = args.num
    settings, codes = [], {}
    sheet_rows = [targets.cpu()]
    whiten_lambdas = [float(x) for x in args.whiten_lambdas.split(",") if x.strip()]
    for space in [s.strip() for s in args.spaces.split(",")]:
        for whiten, lam_s in [(False, 0.0), (False, lam)] + [(True, x) for x in whiten_lambdas]:
            log(f"project: {space}, lambda {lam_s:g}{', whitened' if whiten else ''}, {args.steps} steps, {2 * n} images")
            res, secs = run(generator, predictor, prior, targets, space, lam_s, args.steps, seed=0, whiten=whiten)
            s = score(generator, predictor, prior, res, targets, torch.cat([truth, torch.zeros_like(truth)]))
            ind_s = split(s, slice(0, n))
            ood_s = {k: v for k, v in split(s, slice(n, 2 * n)).items() if k not in ("factor_mae_vs_truth", "predictor_floor_mae")}
            settings.append({
                "space": space, "lambda": lam_s, "whitened": whiten, "seconds": secs,
                "in_domain": summarise(ind_s), "out_of_domain": summarise(ood_s),
                "per_image": {"in_domain": ind_s, "out_of_domain": ood_s},
            })
            codes[f"{space}_lambda{lam_s:g}{'_whitened' if whiten else ''}"] = res.w[n:].cpu().numpy()
            sheet_rows.append(res.images.cpu())
            log(json.dumps({k: settings[-1][k] for k in ("space", "lambda", "whitened", "in_domain", "out_of_domain")}))
    out["settings"] = settings
    out["total_seconds"] = time.perf_counter() - t_start
    if args.save_codes:
        import numpy as np

        np.savez(args.save_codes, lam=np.array(lam), kinds=np.array(ood_kinds), ood_seed=np.array(OOD_SEED), steps=np.array(args.steps), **codes)
        log(f"codes: {args.save_codes}")
    if args.sheet:
        from latentatlas.io.images import make_grid, save_image

        out["sheet"] = {"path": args.sheet, "rows": ["targets"] + [f"{s['space']}, lambda {s['lambda']:g}{', whitened' if s['whitened'] else ''}" for s in settings],
                        "columns": [f"in-domain {i}" for i in range(n)] + ood_kinds}
        log(f"sheet: {save_image(args.sheet, make_grid(torch.cat(sheet_rows), cols=2 * n, pad=2))}")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
