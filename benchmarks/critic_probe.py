"""What a StyleGAN2 run's critic looks at: its scores on renders, fakes and blurred renders, as JSON.

faces64's samples vary several factors (face width, roll, the mouth) far less than the renders
do. A generator only covers what the critic rewards, so this reads a run's portable checkpoint
and asks its discriminator D:

- how far apart it holds reals and fakes (mean logits, accuracy), for fakes of G as trained
  (random noise) and of G_ema (random noise, and the constant noise the commands use);
- whether it tells them apart by sharpness: renders blurred by a Gaussian of sigma 0.5-1.2 px,
  or down-sampled to half size and back, scored like the renders or like the fakes; beside it the
  high-frequency energy (mean absolute Laplacian) of renders, fakes and blurred renders;
- how steep it is around the renders: R1 = E ||grad_x D(x)||^2 and the penalty gamma / 2 * R1
  that the run's R1 weight puts on it;
- whether it prefers some values of a factor among the renders: the correlation of D's score
  with each factor's value and with its distance from the median.

    python benchmarks/critic_probe.py --run runs/faces64-narrow --num 1024 --out benchmarks/results_cpu_critic_probe.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default="runs/faces64-narrow", help="run folder with portable/ (G, D, G_ema, train.safetensors)")
    p.add_argument("--num", type=int, default=1024, help="renders and fakes each")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--seed", type=int, default=777)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="JSON file (default: stdout only)")
    args = p.parse_args()
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    import torch
    import torch.nn.functional as F

    from degrade import gaussian_blur, half_and_back

    from latentatlas.data import synthfaces
    from latentatlas.io.atomic import write_json
    from latentatlas.runtime import keep_freed_cpu_memory
    from latentatlas.training.common import PORTABLE_DIR, read_portable_meta
    from latentatlas.training.stylegan2 import TrainConfig, Trainer

    keep_freed_cpu_memory()
    torch.manual_seed(args.seed)
    portable = Path(args.run) / PORTABLE_DIR
    meta = read_portable_meta(portable)
    cfg = TrainConfig(**json.loads(meta["config"]))
    with tempfile.TemporaryDirectory() as scratch:  # the trainer wants a run folder; it writes nothing here
        t = Trainer(cfg, scratch, args.device)
        t.load_portable(portable)
    G, D, G_ema = (m.eval().requires_grad_(False) for m in (t.G, t.D, t.G_ema))
    n, b, dev = args.num, args.batch, t.device

    def in_batches(fn, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([fn(x[i : i + b]) for i in range(0, len(x), b)])

    def hf_energy(x: torch.Tensor) -> float:
        lap = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]], device=x.device).view(1, 1, 3, 3).repeat(x.shape[1], 1, 1, 1)
        return float(F.conv2d(x, lap, groups=x.shape[1]).abs().mean())

    def scores(x: torch.Tensor) -> dict[str, float]:
        d = in_batches(D, x).flatten()
        return {"mean_logit": round(float(d.mean()), 3), "std_logit": round(float(d.std()), 3),
                "judged_real": round(float((d > 0).float().mean()), 4), "hf_energy": round(hf_energy(x), 4)}

    start = time.time()
    with torch.no_grad():
        real, factors = synthfaces.sample(n, seed=args.seed, resolution=cfg.resolution, device=dev)
        z = torch.randn(n, G.z_dim, device=dev)
        fake_g = in_batches(lambda zz: G(zz, noise_mode="random"), z)
        fake_ema = in_batches(lambda zz: G_ema(zz, noise_mode="random"), z)
        fake_ema_const = in_batches(lambda zz: G_ema(zz, noise_mode="const"), z)
        d_real = in_batches(D, real).flatten()
        out: dict = {
            "run": args.run, "kimg": int(meta["nimg"]) / 1000, "device": str(dev), "num": n, "seed": args.seed,
            "command": "python benchmarks/critic_probe.py " + " ".join(sys.argv[1:]),
            "r1_gamma_of_run": cfg.gamma, "batch_of_run": cfg.batch,
            "renders": scores(real), "fakes_G": scores(fake_g), "fakes_G_ema": scores(fake_ema),
            "fakes_G_ema_const_noise": scores(fake_ema_const),
            "renders_blurred": {f"sigma_{s}": scores(gaussian_blur(real, s)) for s in (0.5, 0.8, 1.2)},
            "renders_half_size_and_back": scores(half_and_back(real)),
        }
    out["accuracy_renders_vs_fakes_G"] = round((out["renders"]["judged_real"] + 1 - out["fakes_G"]["judged_real"]) / 2, 4)
    x = real[: min(n, 256)].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x).sum(), x)
    r1 = float(grad.square().sum([1, 2, 3]).mean())
    out["r1"] = {"mean_sq_grad_norm": round(r1, 4), "penalty_at_run_gamma": round(cfg.gamma / 2 * r1, 5)}
    corr = {}
    for j, name in enumerate(synthfaces.FACTOR_NAMES):
        v = factors[:, j]
        corr[name] = {"value": round(float(torch.corrcoef(torch.stack([v, d_real]))[0, 1]), 3),
                      "distance_from_median": round(float(torch.corrcoef(torch.stack([(v - v.median()).abs(), d_real]))[0, 1]), 3)}
    out["score_correlation_with_factor"] = corr
    out["seconds"] = round(time.time() - start, 1)
    print(json.dumps(out, indent=1))
    if args.out:
        write_json(args.out, out)


if __name__ == "__main__":
    main()
