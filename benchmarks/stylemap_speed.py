"""Encode + generate time of a StyleMapGAN config at batch 1 (random weights), JSON out.

python benchmarks/stylemap_speed.py [--threads 2] [--device cpu] [--repeats 50]
Default config: faces64-stylemap (models/stylemap.faces64_stylemap_config).
"""

from __future__ import annotations

import argparse
import json
import time


import torch  # noqa: E402

from latentatlas.models.stylemap import Encoder, Generator, faces64_stylemap_config  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = faces64_stylemap_config()
    torch.manual_seed(0)
    g, e = Generator(cfg).to(args.device).eval(), Encoder(cfg).to(args.device).eval()
    img = torch.rand(1, 3, cfg.resolution, cfg.resolution, device=args.device) * 2 - 1
    out = {"config": cfg.to_dict(), "device": args.device, "threads": args.threads,
           "generator_parameters": sum(p.numel() for p in g.parameters()),
           "encoder_parameters": sum(p.numel() for p in e.parameters())}
    for name, fn in (("encode_ms", lambda: e(img)), ("generate_ms", lambda: g(g.mapping(torch.randn(1, g.z_dim, device=args.device)))),
                     ("encode_generate_ms", lambda: g(e(img)))):
        with torch.inference_mode():
            for _ in range(5):
                fn()
            times = []
            for _ in range(args.repeats):
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                t = time.perf_counter()
                fn()
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                times.append((time.perf_counter() - t) * 1000)
        times.sort()
        out[name] = {"median": round(times[len(times) // 2], 2), "min": round(times[0], 2)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
