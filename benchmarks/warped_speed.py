"""WarpedGANSpace training speed: iterations (and image pairs) per second for the bundled faces64.

One iteration = sample a batch of codes, path indices and shifts, step along the warped field,
render both images with the frozen generator, reconstructor forward/backward through G into
the support sets, one Adam step: exactly `train_warped`'s loop body (the `train_warped` call
itself adds only a state save per 500 steps). Warm-up steps are not timed.

    python benchmarks/warped_speed.py --device cpu --steps 10 --batch 12 --sets 32 --dipoles 16
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--sets", type=int, default=32)
    p.add_argument("--dipoles", type=int, default=16)
    p.add_argument("--space", default="w", choices=("z", "w"))
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--steps", type=int, default=10, help="timed steps (after --warmup untimed ones)")
    p.add_argument("--warmup", type=int, default=3)
    args = p.parse_args()
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    import torch

    from latentatlas.directions.reconstructor import latent_codes, pair_loss, sample_shifts, step_seed
    from latentatlas.directions.warped import WarpedConfig, init_training
    from latentatlas.models.bundled import load_generator

    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    generator, _ = load_generator("faces64", device)
    generator.requires_grad_(False)
    cfg = WarpedConfig(sets=args.sets, dipoles=args.dipoles, space=args.space, batch=args.batch, width=args.width)
    support, recon = init_training(generator, cfg)
    opt = torch.optim.Adam([q for q in support.parameters() if q.requires_grad] + list(recon.parameters()), lr=cfg.lr)
    scale = float(support.scale)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    times = []
    for i in range(args.warmup + args.steps):
        sync()
        t = time.perf_counter()
        z, k, eps = sample_shifts(step_seed(cfg.seed, i), cfg.batch, cfg.sets, generator.z_dim, cfg.shift_min, cfg.shift_max)
        loss, _ = pair_loss(generator, recon, support.direction, latent_codes(generator, z, cfg.space), k, eps, scale, cfg.space)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()
        if i >= args.warmup:
            times.append(time.perf_counter() - t)
    med = statistics.median(times)
    print(json.dumps({
        "benchmark": "warped_speed",
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "config": {"model": "faces64", "space": args.space, "batch": args.batch, "sets": args.sets, "dipoles": args.dipoles,
                   "reconstructor_width": args.width, "reconstructor_params": sum(q.numel() for q in recon.parameters())},
        "timed_steps": len(times),
        "median_s_per_iter": med,
        "iters_per_s": 1 / med,
        "pairs_per_s": args.batch / med,
        "mean_iters_per_s": len(times) / sum(times),
    }, indent=1))


if __name__ == "__main__":
    main()
