"""How the factor predictor's spread and accuracy hold on degraded renders, as JSON.

Issue 3 reads a generator's factor coverage as the std of predicted factors, samples against
renders. Samples are softer than renders (critic_probe.py), and a regressor unsure of a blurred
face predicts towards the mean: a low std ratio could be the predictor's, not the generator's.
This renders `--num` faces and predicts their factors as they are and after each degradation
(Gaussian blur of 0.5, 0.8 and 1.2 px, half size and back, Gaussian noise of 0.05), and reports
per factor the std of the predictions relative to the clean ones' and R^2 against the truth
(binary factors: accuracy at 0.5).

    python benchmarks/predictor_robustness.py --out benchmarks/results_cpu_predictor_robustness.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from degrade import gaussian_blur, half_and_back

from latentatlas.data import synthfaces
from latentatlas.io.atomic import write_json
from latentatlas.training.attributes import load_predictor

SEED = 40_000_000  # far from the seeds the predictor and the generators trained on


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--num", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()
    predictor = load_predictor("factors")
    images, truth = synthfaces.sample(args.num, seed=SEED, resolution=64)
    gen = torch.Generator().manual_seed(0)
    degraded = {
        "clean": images,
        "blur_0.5": gaussian_blur(images, 0.5), "blur_0.8": gaussian_blur(images, 0.8), "blur_1.2": gaussian_blur(images, 1.2),
        "half_and_back": half_and_back(images),
        "noise_0.05": images + 0.05 * torch.randn(images.shape, generator=gen),
    }
    binary = predictor.binary.cpu()
    out: dict = {"benchmark": "predictor_robustness", "device": f"cpu ({torch.get_num_threads()} threads)", "num": args.num,
                 "seed": SEED, "std_ratio_vs_clean": {}, "r2_or_accuracy": {}}
    clean_std = None
    with torch.no_grad():
        for name, x in degraded.items():
            pred = torch.cat([predictor.predict(x[i : i + args.batch]) for i in range(0, args.num, args.batch)])
            std = pred.std(0)
            if clean_std is None:
                clean_std = std
            r2 = 1 - (pred - truth).square().mean(0) / truth.var(0, unbiased=False)
            acc = ((pred > 0.5) == (truth > 0.5)).float().mean(0)
            score = torch.where(binary, acc, r2)
            out["std_ratio_vs_clean"][name] = {f: round(float(std[j] / clean_std[j]), 3) for j, f in enumerate(synthfaces.FACTOR_NAMES)}
            out["r2_or_accuracy"][name] = {f: round(float(score[j]), 3) for j, f in enumerate(synthfaces.FACTOR_NAMES)}
    del out["std_ratio_vs_clean"]["clean"]
    out["seconds"] = round(time.time() - start, 1)
    if args.out:
        write_json(args.out, out)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
