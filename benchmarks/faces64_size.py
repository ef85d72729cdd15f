"""How wide faces64 may be: CPU time at batch 1 of one image and of one projector step, per width.

faces64's two CPU targets are both at batch 1 on 2 cores: one image in at most 30 ms (issue 3,
the web app's sliders) and a 1000-step projection in at most 60 s (issue 4), i.e. a step in at
most 60 ms. Both costs are set by the widths of the 32 and 64 px blocks, not by the weights, so
this times faces64's shape at several (channel_base, channel_max) with seeded random weights.

All widths run in one process, interleaved round by round (a shared machine slows them alike),
and the medians are reported with the ratio to faces64's own width: compare by ratio. A step is
the projector's (`latentatlas project --loss factor`: factor-feature distance + pixel MSE, W+,
noise maps optimised), timed from its progress callback; its median in ms is also the seconds of
a 1000-step projection. Prints one JSON object.

    python benchmarks/faces64_size.py > benchmarks/results_cpu_faces64_size.json
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

from generate_throughput import generator_flops  # noqa: E402
from projection_quality import IN_DOMAIN_SEED, device_name  # noqa: E402

from latentatlas.data import synthfaces  # noqa: E402
from latentatlas.inversion.losses import factor_feature_distance  # noqa: E402
from latentatlas.inversion.projector import ProjectorConfig, project  # noqa: E402
from latentatlas.io.checkpoints import describe  # noqa: E402
from latentatlas.models.bundled import load_generator  # noqa: E402
from latentatlas.models.stylegan2 import Generator  # noqa: E402
from latentatlas.runtime import keep_freed_cpu_memory  # noqa: E402
from latentatlas.training.attributes import load_predictor  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="8192x128,4096x128,8192x96,2048x128,2048x96,2048x64,1024x128",
                    help="channel_base x channel_max pairs; the first is the reference of the ratios")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--images", type=int, default=8, help="batch-1 images timed per width and round")
    ap.add_argument("--steps", type=int, default=8, help="projector steps per width and round (the first 2 not timed)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.steps < 4:
        ap.error("--steps: at least 4 (the first 2 step intervals are not timed)")
    keep_freed_cpu_memory()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")

    base, _ = load_generator("faces64", "cpu")
    predictor = load_predictor("factors", "cpu")
    dist = factor_feature_distance(predictor.features)
    target, _ = synthfaces.sample(1, seed=IN_DOMAIN_SEED, resolution=base.img_resolution)
    cfg = ProjectorConfig(space="w+", steps=args.steps, w_avg_samples=1000, mse_weight=1.0)
    models = {}
    for size in args.sizes.split(","):
        cb, cm = (int(v) for v in size.split("x"))
        torch.manual_seed(0)
        models[size] = Generator(replace(base.config, channel_base=cb, channel_max=cm)).eval().requires_grad_(False)
    ws = base.mapping(torch.randn(args.images, base.z_dim, generator=torch.Generator().manual_seed(1)))

    image_ms: dict[str, list[float]] = {s: [] for s in models}
    step_ms: dict[str, list[float]] = {s: [] for s in models}
    load_start = os.getloadavg()
    with torch.no_grad():  # warm-up: allocator, weight caches
        for g in models.values():
            g.synthesis(ws[:1])
    for _ in range(args.rounds):
        for size, g in models.items():
            with torch.no_grad():
                for i in range(args.images):
                    t = time.perf_counter()
                    g.synthesis(ws[i : i + 1], noise_mode="const")
                    image_ms[size].append((time.perf_counter() - t) * 1000)
            stamps: list[float] = []
            project(g, target, dist, cfg, progress=lambda step, losses: stamps.append(time.perf_counter()))
            step_ms[size] += [(b - a) * 1000 for a, b in zip(stamps, stamps[1:])][2:]

    ref = next(iter(models))
    rows = []
    for size, g in models.items():
        img, step = statistics.median(image_ms[size]), statistics.median(step_ms[size])
        facts = describe(g)
        rows.append({
            "channel_base_x_channel_max": size,
            "channels_by_resolution": facts["channels"],
            "parameters": facts["parameters"],
            "gflop_per_image": round(generator_flops(g) / 1e9, 3),
            "image_ms_batch1": round(img, 1),
            "projector_step_ms_batch1": round(step, 1),
            "image_time_ratio_to_first": round(img / statistics.median(image_ms[ref]), 3),
            "step_time_ratio_to_first": round(step / statistics.median(step_ms[ref]), 3),
        })
    print(json.dumps({
        "benchmark": "faces64_size",
        "device": device_name(device),
        "torch": torch.__version__,
        "weights": "random (seeded); the cost does not depend on them",
        "projector": "W+, factor-feature distance + pixel MSE, noise maps optimised, batch 1",
        "rounds": args.rounds,
        "load_average_1_5_15min": {"start": load_start, "end": os.getloadavg()},
        "rows": rows,
    }, indent=1))


if __name__ == "__main__":
    main()
