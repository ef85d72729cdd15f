"""Projection speed of faces64 on the current device: seconds per image and images per minute.

For each batch size in `--batches` (default 1,4,8,16) the projector (`latentatlas project
--loss factor` setup: factor-feature distance + pixel MSE, W+, prior lambda `--prior`, default
1e-6; its value does not change the cost) runs `--steps` steps (default 20) on that many
held-out synthfaces renders, for real:
- measured: wall seconds of the whole projection call (w_avg statistics, all steps, the final
  render), seconds per image (= wall / batch) and images per minute at that step count;
- per step: median wall time of one step (from the progress callback, first 3 steps skipped);
- per_1000_steps: seconds per image and images per minute for a 1000-step projection (the
  official step count), *computed* from the measured median step time (1000 x step time +
  the measured fixed cost), not run.
Model loading is not counted. Prints one JSON object with the device, torch version and the
machine's load average at start and end (on a shared machine, other jobs slow every figure).

    python benchmarks/projection_speed.py > benchmarks/results_cpu_projection_speed.json
    python benchmarks/projection_speed.py --device cuda --steps 1000 --batches 1,8,32,128
    python benchmarks/projection_speed.py --steps 1000 --batches 1 [--model narrow.safetensors]
        (issue 4's CPU case: a whole 1000-step projection at batch 1, run, not computed)

`--config256` times issue 4's GPU case instead: the 256 px config-f generator
(generate_throughput's "256") with random weights and the LPIPS VGG16 loss with random weights
(the official projector's loss; the cost of a step does not depend on the weights), projecting
generated 256 px images, no prior. `--tf32` lets convolutions and matrix products use TF32,
`--bf16` runs the projector's forward pass and losses in bf16 autocast (each row then also gives
the final mean loss, to compare with an fp32 run of the same command).

    python benchmarks/projection_speed.py --device cuda --config256 --tf32 --steps 30 --batches 1,32,64,128
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace


import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from generate_throughput import CONFIGS  # noqa: E402
from projection_quality import IN_DOMAIN_SEED, device_name, log, setup  # noqa: E402

from latentatlas.data import synthfaces  # noqa: E402
from latentatlas.inversion.losses import LPIPSVGG, factor_feature_distance  # noqa: E402
from latentatlas.models.stylegan2 import Generator, GeneratorConfig  # noqa: E402
from latentatlas.inversion.projector import ProjectorConfig, project  # noqa: E402
from latentatlas.runtime import keep_freed_cpu_memory, pick_device, set_tf32  # noqa: E402


def random_256(device: torch.device, num: int):  # type: ignore[no-untyped-def]
    """The GPU case: config-f 256 px and LPIPS VGG16, both with seeded random weights, and
    `num` generated target images (so a fit exists)."""
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(**CONFIGS["256"])).eval().requires_grad_(False).to(device)
    lpips = LPIPSVGG().eval().requires_grad_(False).to(device)
    with torch.no_grad():
        z = torch.randn(num, generator.z_dim, generator=torch.Generator().manual_seed(IN_DOMAIN_SEED)).to(device)
        images = generator(z, noise_mode="const").clamp(-1, 1)
    return generator, lpips, images, None, "config-f 256 px, random weights", "LPIPS VGG16 (random weights) + pixel MSE, noise maps optimised"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="faces64", help="a synthfaces StyleGAN2 model, bundled or a file (its prior is used when it has one)")
    ap.add_argument("--batches", default="1,4,8,16")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--space", default="w+")
    ap.add_argument("--prior", type=float, default=1e-6)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--malloc", default="keep", choices=["keep", "default"], help="keep: freed CPU memory stays in the process, as the CLI sets it")
    ap.add_argument("--config256", action="store_true", help="256 px config-f + LPIPS VGG16, random weights (the GPU target)")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 in convolutions and matrix products (CUDA)")
    ap.add_argument("--bf16", action="store_true", help="the projector's bf16 autocast (ProjectorConfig.bf16, `project --bf16`)")
    args = ap.parse_args()

    if args.malloc == "keep":
        keep_freed_cpu_memory()
    torch.set_num_threads(args.threads)
    device = torch.device(pick_device(args.device))
    set_tf32(args.tf32)
    batches = [int(b) for b in args.batches.split(",")]
    if args.config256:
        generator, dist, images, prior, model, loss = random_256(device, max(batches))
        args.prior = 0.0
    else:
        generator, info, predictor, prior = setup(device, args.model, require_prior=False)
        if prior is None:
            args.prior = 0.0
        dist = factor_feature_distance(predictor.features)
        images, _ = synthfaces.sample(max(batches), seed=IN_DOMAIN_SEED, resolution=generator.img_resolution)
        images = images.to(device)
        model, loss = args.model, "factor-feature distance + pixel MSE, noise maps optimised"
    cfg = ProjectorConfig(space=args.space, steps=args.steps, prior_weight=args.prior, mse_weight=1.0, bf16=args.bf16)
    # Warm-up (allocator, kernels): a few steps at the smallest batch, not reported.
    project(generator, images[:1], dist, replace(cfg, steps=3), prior=prior)

    load_start = os.getloadavg()
    rows = []
    for b in batches:
        stamps: list[float] = []

        def tick(step: int, losses: dict[str, float]) -> None:
            if device.type == "cuda":
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())

        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        try:
            res = project(generator, images[:b], dist, cfg, prior=prior if args.prior > 0 else None, progress=tick)
        except torch.OutOfMemoryError:  # a batch too large for the device: say so, keep the other rows
            rows.append({"batch": b, "out_of_memory": True})
            log(json.dumps(rows[-1]))
            torch.cuda.empty_cache()
            continue
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        step_times = [y - x for x, y in zip(stamps, stamps[1:])][3:] or [y - x for x, y in zip(stamps, stamps[1:])]
        step = statistics.median(step_times)
        fixed = max(wall - step * args.steps, 0.0)
        rows.append({
            "batch": b,
            **({"peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)} if device.type == "cuda" else {}),
            "measured": {
                "steps": args.steps,
                "wall_seconds": wall,
                "seconds_per_image": wall / b,
                "images_per_minute": 60 * b / wall,
            },
            "final_mean_loss": statistics.mean(res.losses["total"][-1]),
            "median_step_seconds": step,
            "fixed_seconds": fixed,
            "per_1000_steps_computed_from_step_time": {
                "seconds_per_image": (1000 * step + fixed) / b,
                "images_per_minute": 60 * b / (1000 * step + fixed),
            },
        })
        log(json.dumps(rows[-1]))
    print(json.dumps({
        "benchmark": "projection_speed",
        "device": device_name(device),
        "torch": torch.__version__,
        "malloc": args.malloc,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "model": model,
        "tf32": args.tf32,
        "bf16": args.bf16,
        "space": args.space,
        "prior_lambda": args.prior,
        "loss": loss,
        "load_average_1_5_15min": {"start": load_start, "end": os.getloadavg()},
        "cpu_count": os.cpu_count(),
        "rows": rows,
    }, indent=1))


if __name__ == "__main__":
    main()
