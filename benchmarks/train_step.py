"""Training speed: milliseconds per StyleGAN2 training step and kimg per minute.

Times `Trainer.train_step` (G and D updates with their lazy regularisers, data rendered on
the fly, EMA) for the bundled faces64 config, once per resampling implementation
(`latentatlas.models.ops.RESAMPLE_IMPL`), in one process on one device: compare by ratio.
Steps cycle through all 16 phases of the lazy regularisation, so the median is fair.

    python benchmarks/train_step.py --device cuda --steps 48
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI (latentatlas/runtime.py), before torch loads


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=48, help="timed steps per implementation (after 16 warm-up steps)")
    p.add_argument("--impls", default="fir,composite")
    p.add_argument("--resolution", type=int, default=64)
    args = p.parse_args()
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    import torch

    from latentatlas.models import ops
    from latentatlas.training.stylegan2 import Trainer, TrainConfig

    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    out = {
        "benchmark": "train_step",
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "config": f"faces64 defaults at {args.resolution} px, batch {args.batch}",
        "results": {},
    }
    for impl in args.impls.split(","):
        ops.RESAMPLE_IMPL = impl
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(TrainConfig(batch=args.batch, resolution=args.resolution), tmp, device)
            times = []
            for i in range(16 + args.steps):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t = time.perf_counter()
                trainer.train_step()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if i >= 16:
                    times.append(time.perf_counter() - t)
        mean = statistics.fmean(times)  # the mean includes the regularisation steps in their share
        out["results"][impl] = {
            "ms_per_step_median": round(statistics.median(times) * 1000, 2),
            "ms_per_step_mean": round(mean * 1000, 2),
            "kimg_per_min": round(args.batch / mean * 60 / 1000, 2),
        }
    impls = list(out["results"])
    if len(impls) == 2:
        a, b = (out["results"][k]["ms_per_step_mean"] for k in impls)
        out[f"speedup_{impls[1]}_vs_{impls[0]}"] = round(a / b, 2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
