"""Local editing on synthfaces, where the ground truth is known: does the region follow the reference?

Issue 6: "swap the mouth region from a reference and measure with the factor predictor that the
mouth factors move to the reference's and the others stay with the source (the paper's MSE_src
outside the mask and MSE_ref inside the mask too)". For `--pairs` pairs of held-out renders
(sources from seed 11_000_000, references from 11_500_000; far from every training seed), both
are encoded in one pass each and, per region in `--regions` (default eyes, mouth, hair), edited
with `latentatlas.editing.local.edit` (the function `latentatlas edit-local` and the app run)
under the union of the region's masks of the two faces (synthfaces geometry of their true
factors: the mask covers the part in both), at strength 1, no shift, input stylemap blended
(`--per-layer` blends every layer's). The factor predictor (bundled `factors`) reads every
result. Per region:

- region factors (eyes: eye size, spacing, openness, iris colour, brow height; mouth: width,
  smile, opening; hair: colour, length, fringe): mean |predicted - truth| against the
  reference's truth ("to reference", low is good) and against the source's ("to source", high
  is good), and the transfer: for the factors where source and reference differ by more than
  0.2, (predicted - source) / (reference - source), median over pairs and factors (1: fully the
  reference's, 0: still the source's);
- the other factors: mean |predicted - source truth| of the result ("drift"; also per factor), next to the same
  for the source's plain reconstruction (the encoder's own floor);
- the paper's MSE_src (pixels outside the mask, result vs source render) and MSE_ref (inside the
  mask, result vs reference render), each next to its floor: the reconstructions of the source
  and of the reference over the same pixels.

`--refine STEPS` optimises both stylemaps on pixel MSE after encoding (the encoder's answer as
the start): do the edits carry more of the region when the codes reconstruct better, or does
the 8x8 stylemap itself hold them back? `--grow PX` grows the masks: does the swap carry more
when it takes the neighbouring cells too?

Prints one JSON object; `--sheet F.png` also writes, per region, a sheet of the first 8 pairs
(rows: source, reference, mask, result).

    python benchmarks/local_edit_quality.py --model faces64-stylemap > benchmarks/results_cpu_local_edit.json
    python benchmarks/local_edit_quality.py --model runs/faces64-stylemap/model.safetensors --pairs 512 --device cuda --sheet docs/local_edit_examples.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from projection_quality import device_name, log  # noqa: E402

from latentatlas.data import synthfaces  # noqa: E402
from latentatlas.editing.local import edit, grow_mask  # noqa: E402
from latentatlas.inversion.encoder import encode, refine  # noqa: E402
from latentatlas.io.checkpoints import load_stylemap_any  # noqa: E402
from latentatlas.models.bundled import resolve_model  # noqa: E402
from latentatlas.runtime import keep_freed_cpu_memory, pick_device  # noqa: E402
from latentatlas.training.attributes import load_predictor  # noqa: E402

SOURCE_SEED, REFERENCE_SEED = 11_000_000, 11_500_000
REGION_FACTORS = {
    "eyes": ("eye_size", "eye_spacing", "eye_openness", "iris_colour", "brow_height"),
    "mouth": ("mouth_width", "smile", "mouth_open"),
    "hair": ("hair_colour", "hair_length", "fringe"),
}
TRANSFER_MIN_GAP = 0.2


def masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per image: mean squared difference over the pixels where mask is 1 (all channels)."""
    m = mask.expand_as(a)
    return ((a - b).square() * m).sum(dim=(1, 2, 3)) / m.sum(dim=(1, 2, 3)).clamp_min(1)


def transfer(pred: torch.Tensor, src: torch.Tensor, ref: torch.Tensor) -> float | None:
    """Median of (pred - src) / (ref - src) over the entries where |ref - src| > TRANSFER_MIN_GAP."""
    gap = ref - src
    keep = gap.abs() > TRANSFER_MIN_GAP
    if not keep.any():
        return None
    return float(((pred - src)[keep] / gap[keep]).median())


def region_figures(pred: torch.Tensor, recon_src_pred: torch.Tensor, t_src: torch.Tensor, t_ref: torch.Tensor,
                   images: dict[str, torch.Tensor], mask: torch.Tensor, region: str) -> dict:
    idx = [synthfaces.FACTOR_NAMES.index(n) for n in REGION_FACTORS[region]]
    other = [i for i in range(len(synthfaces.FACTOR_NAMES)) if i not in idx]
    inside, outside = mask, 1 - mask
    return {
        "region_factors": list(REGION_FACTORS[region]),
        "mask_fraction": float(mask.mean()),
        "region_error_to_reference": float((pred[:, idx] - t_ref[:, idx]).abs().mean()),
        "region_error_to_source": float((pred[:, idx] - t_src[:, idx]).abs().mean()),
        "region_transfer_median": transfer(pred[:, idx], t_src[:, idx], t_ref[:, idx]),
        "other_factors_drift": float((pred[:, other] - t_src[:, other]).abs().mean()),
        "other_factors_drift_by_factor": {synthfaces.FACTOR_NAMES[i]: round(float((pred[:, i] - t_src[:, i]).abs().mean()), 4)
                                          for i in other},
        "other_factors_drift_floor_reconstruction": float((recon_src_pred[:, other] - t_src[:, other]).abs().mean()),
        "other_factors_drift_floor_by_factor": {synthfaces.FACTOR_NAMES[i]: round(float((recon_src_pred[:, i] - t_src[:, i]).abs().mean()), 4)
                                                for i in other},
        "mse_src_outside_mask": float(masked_mse(images["result"], images["source"], outside).mean()),
        "mse_src_floor_reconstruction": float(masked_mse(images["recon_source"], images["source"], outside).mean()),
        "mse_ref_inside_mask": float(masked_mse(images["result"], images["reference"], inside).mean()),
        "mse_ref_floor_reconstruction": float(masked_mse(images["recon_reference"], images["reference"], inside).mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a StyleMapGAN model: bundled name or file")
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--regions", default=",".join(REGION_FACTORS))
    ap.add_argument("--per-layer", action="store_true", help="blend every layer's stylemap instead of the input stylemap")
    ap.add_argument("--refine", type=int, default=0, metavar="STEPS",
                    help="optimise both stylemaps this many steps on pixel MSE after encoding (inversion.encoder.refine)")
    ap.add_argument("--refine-lr", type=float, default=0.03)
    ap.add_argument("--grow", type=int, default=0, metavar="PX",
                    help="grow every region mask by this many pixels (does the swap carry more with neighbouring cells?)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sheet", default=None, help="write example sheets here (one PNG per region: NAME_REGION.png)")
    args = ap.parse_args()

    keep_freed_cpu_memory()
    torch.set_num_threads(args.threads)
    device = torch.device(pick_device(args.device))
    regions = [r.strip() for r in args.regions.split(",") if r.strip()]
    for r in regions:
        if r not in REGION_FACTORS:
            raise SystemExit(f"error: unknown region {r!r}: use {', '.join(REGION_FACTORS)}")
    t0 = time.perf_counter()
    load_start = os.getloadavg()
    generator, encoder, _ = load_stylemap_any(resolve_model(args.model), device)
    generator.eval(), encoder.eval()
    predictor = load_predictor("factors", device)
    res = generator.img_resolution

    sources, t_src = synthfaces.sample(args.pairs, seed=SOURCE_SEED, resolution=res)
    refs, t_ref = synthfaces.sample(args.pairs, seed=REFERENCE_SEED, resolution=res)
    sources, refs, t_src, t_ref = sources.to(device), refs.to(device), t_src.to(device), t_ref.to(device)
    log(f"encoding {2 * args.pairs} renders")
    w_src, w_ref = encode(encoder, sources, args.batch), encode(encoder, refs, args.batch)
    refined: dict = {}
    if args.refine:
        log(f"refining both stylemaps, {args.refine} steps")
        with torch.no_grad():
            before = float(torch.cat([(generator(w_src[i : i + args.batch]) - sources[i : i + args.batch]).square().mean((1, 2, 3))
                                      for i in range(0, args.pairs, args.batch)]).mean())
        t = time.perf_counter()
        w_src = refine(generator, w_src, sources, args.refine, args.refine_lr, args.batch)
        w_ref = refine(generator, w_ref, refs, args.refine, args.refine_lr, args.batch)
        refined = {"steps": args.refine, "lr": args.refine_lr, "loss": "pixel MSE", "seconds": time.perf_counter() - t,
                   "mse_source_encoder_only": before}

    def run(fn, n: int) -> torch.Tensor:  # type: ignore[no-untyped-def]
        with torch.no_grad():
            return torch.cat([fn(slice(i, i + args.batch)) for i in range(0, n, args.batch)])

    recon_src = run(lambda s: generator(w_src[s]), args.pairs)
    recon_ref = run(lambda s: generator(w_ref[s]), args.pairs)
    recon_src_pred = run(lambda s: predictor.predict(recon_src[s]), args.pairs)
    out: dict = {
        "benchmark": "local_edit_quality",
        "device": device_name(device),
        "torch": torch.__version__,
        "model": args.model,
        "pairs": args.pairs,
        "seeds": {"sources": SOURCE_SEED, "references": REFERENCE_SEED},
        "blend": "every layer's stylemap" if args.per_layer else "input stylemap, max-pooled mask",
        "stylemaps": "encoder, then refined (inversion.encoder.refine)" if refined else "encoder",
        "refine": refined or None,
        "mask": "union of the region masks of source and reference (synthfaces geometry, true factors)"
                + (f", grown by {args.grow} px" if args.grow else ""),
        "reconstruction": {
            "mse_source": float((recon_src - sources).square().mean()),
            "mse_reference": float((recon_ref - refs).square().mean()),
            "factor_error_source": float((recon_src_pred - t_src).abs().mean()),
        },
        "regions": {},
    }
    for region in regions:
        log(f"region {region}")
        mask = torch.maximum(synthfaces.region_mask(region, res, t_src), synthfaces.region_mask(region, res, t_ref))[:, None].to(device)
        if args.grow:
            mask = grow_mask(mask, args.grow)
        result = run(lambda s: edit(generator, w_src[s], w_ref[s], mask[s], per_layer=args.per_layer), args.pairs)
        pred = run(lambda s: predictor.predict(result[s]), args.pairs)
        images = {"source": sources, "reference": refs, "result": result, "recon_source": recon_src, "recon_reference": recon_ref}
        out["regions"][region] = region_figures(pred, recon_src_pred, t_src, t_ref, images, mask, region)
        log(json.dumps({region: out["regions"][region]}))
        if args.sheet:
            from latentatlas.io.images import make_grid, save_image

            k = min(8, args.pairs)
            rows = torch.cat([sources[:k], refs[:k], mask[:k].expand(-1, 3, -1, -1) * 2 - 1, result[:k]]).cpu()
            stem, ext = os.path.splitext(args.sheet)
            path = f"{stem}_{region}{ext or '.png'}"
            save_image(path, make_grid(rows, cols=k))
            log(f"sheet: {path} (rows: source, reference, mask, result)")
    out["load_average_start_end"] = [list(load_start), list(os.getloadavg())]
    out["seconds"] = time.perf_counter() - t0
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
