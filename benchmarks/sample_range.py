"""Whether `evaluate` reading samples as the generator returns them changes its figures, as JSON.

A generator's output is not bounded: some pixels land outside [-1, 1], while the renders it is
compared with, and every image a user saves, lie inside (a PNG clamps them to 8 bits). NVIDIA's
metrics read samples the way they are saved: (x * 127.5 + 128).clamp(0, 255) as uint8. Our
`evaluate` and the training's factor monitor read them raw. This measures how far apart the three
readings are on one set of samples and renders: the share of pixels outside [-1, 1], and the
factor FID, capped mean std ratio and factors under half of each reading.

    python benchmarks/sample_range.py --model faces64 --num 2000 > benchmarks/results_cpu_sample_range.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from latentatlas.metrics.evaluate import RENDER_SEED_A, coverage, factor_comparison, factor_features, render_batches, sample_batches  # noqa: E402
from latentatlas.models.bundled import load_generator  # noqa: E402
from latentatlas.training.attributes import load_predictor  # noqa: E402

BATCH = 250


def as_saved(x: torch.Tensor) -> torch.Tensor:
    """The image as a PNG holds it, back in [-1, 1]: NVIDIA's conversion to uint8, then its inverse."""
    return ((x * 127.5 + 128).clamp(0, 255).to(torch.uint8).float() - 128) / 127.5


READINGS = {"raw": lambda x: x, "clamped": lambda x: x.clamp(-1, 1), "uint8": as_saved}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="faces64", help="a synthfaces StyleGAN2 model, bundled or a file")
    ap.add_argument("--num", type=int, default=2000, help="samples, and as many renders")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    generator, info = load_generator(args.model, "cpu")
    predictor = load_predictor("factors", "cpu")
    samples = torch.cat(list(sample_batches(generator, args.num, BATCH, seed=0)))
    renders = factor_features(predictor, render_batches(args.num, BATCH, RENDER_SEED_A, generator.img_resolution, torch.device("cpu")))
    out: dict = {"benchmark": "sample_range", "device": f"cpu ({torch.get_num_threads()} threads)", "torch": torch.__version__,
                 "model": args.model, "kimg": info.get("kimg"), "num": args.num,
                 "share_outside_unit_range": float(((samples < -1) | (samples > 1)).float().mean()),
                 "max_abs": float(samples.abs().max()), "readings": {}}
    for name, read in READINGS.items():
        features = factor_features(predictor, iter([read(b) for b in samples.split(BATCH)]))
        compared = factor_comparison(features, renders, predictor.feature_dim)
        cov = coverage(compared["factors"])
        out["readings"][name] = {"factor_fid": compared["factor_fid_samples_vs_renders"], "mean_std_ratio_capped": cov["mean_std_ratio_capped"],
                                 "factors_under_half": cov["factors_under_half"]}
    out["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
