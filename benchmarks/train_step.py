"""Training speed: milliseconds per StyleGAN2 training step and kimg per minute.

Times `Trainer.train_step` (G and D updates with their lazy regularisers, data rendered on
the fly, EMA) for the bundled faces64 config (or the widths given: `--channel-base 2048
--d-channel-base 8192` is faces64-narrow), for each batch in `--batches` and each resampling
implementation (`latentatlas.models.ops.RESAMPLE_IMPL`), in one process on one device: compare
by ratio. Steps cycle through all 16 phases of the lazy regularisation, so the mean is fair. The
synthfaces rendering of one batch is timed alone too (`render_ms`), the part of a step that is
data. A step at 64 px on a GPU waits on launches more than on arithmetic, so kimg/min grows with
the batch until the arithmetic catches up: the sweep says where, for choosing the batch of a
resumed run (`train --batch` may change on resume).

    python benchmarks/train_step.py --device cuda --steps 48
    python benchmarks/train_step.py --device cuda --batches 64,128,256 --impls fir --channel-base 2048 --d-channel-base 8192
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batches", default="64", help="comma list of batch sizes")
    p.add_argument("--steps", type=int, default=48, help="timed steps per implementation and batch (after 16 warm-up steps)")
    p.add_argument("--impls", default="fir,composite")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--channel-base", type=int, default=None, help="generator channel_base (default: faces64's)")
    p.add_argument("--channel-max", type=int, default=None)
    p.add_argument("--d-channel-base", type=int, default=None, help="the discriminator's own channel_base")
    args = p.parse_args()
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    import torch

    from latentatlas.data import synthfaces
    from latentatlas.models import ops
    from latentatlas.runtime import set_tf32
    from latentatlas.training.stylegan2 import Trainer, TrainConfig

    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        set_tf32(True)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    widths = {k: v for k, v in (("channel_base", args.channel_base), ("channel_max", args.channel_max),
                                ("d_channel_base", args.d_channel_base)) if v is not None}
    out = {
        "benchmark": "train_step",
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "config": f"faces64 defaults at {args.resolution} px" + "".join(f", {k} {v}" for k, v in widths.items()),
        "results": {},
    }
    batches = [int(b) for b in args.batches.split(",")]
    for impl in args.impls.split(","):
        ops.RESAMPLE_IMPL = impl
        for batch in batches:
            with tempfile.TemporaryDirectory() as tmp:
                trainer = Trainer(TrainConfig(batch=batch, resolution=args.resolution, **widths), tmp, device)
                times = []
                for i in range(16 + args.steps):
                    sync()
                    t = time.perf_counter()
                    trainer.train_step()
                    sync()
                    if i >= 16:
                        times.append(time.perf_counter() - t)
                renders = []
                for i in range(5):
                    sync()
                    t = time.perf_counter()
                    synthfaces.sample(batch, seed=i, resolution=args.resolution, device=device)
                    sync()
                    renders.append(time.perf_counter() - t)
            mean = statistics.fmean(times)  # the mean includes the regularisation steps in their share
            key = impl if len(batches) == 1 else f"{impl}_batch{batch}"
            out["results"][key] = {
                "batch": batch,
                "ms_per_step_median": round(statistics.median(times) * 1000, 2),
                "ms_per_step_mean": round(mean * 1000, 2),
                "render_ms_median": round(statistics.median(renders) * 1000, 2),
                "kimg_per_min": round(batch / mean * 60 / 1000, 2),
            }
            print(json.dumps({key: out["results"][key]}), file=sys.stderr, flush=True)
    impls = args.impls.split(",")
    if len(impls) == 2 and len(batches) == 1:
        a, b = (out["results"][k]["ms_per_step_mean"] for k in impls)
        out[f"speedup_{impls[1]}_vs_{impls[0]}"] = round(a / b, 2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
