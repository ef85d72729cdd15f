"""Where one forward pass spends its time: torch.profiler's operators, heaviest first, as JSON.

Issue 6's 256 px StyleMapGAN encode + generate at batch 1 took 46.8 ms on an H200 (bf16, CUDA
graph) where the target is 5 ms and batch 64 runs at about 100 TFLOP/s: the time goes somewhere
other than the convolutions' arithmetic, and only a profile says where. Random weights, no
gradients; --resample picks how x2 convolutions resample (ops.RESAMPLE_IMPL: the FIR filter as a
separate pass, or folded into a 6x6 transposed kernel, as CUDA does by default), so the two can
be compared in one lease; --layer-norm picks StyleMapGAN's normalisation (F.layer_norm gives
each image one CUDA thread block); --channels-last converts modules and input.

    python benchmarks/profile_pass.py --model stylemap256 --device cuda --batch 1 --dtype bf16 --cudnn-benchmark
    python benchmarks/profile_pass.py --model stylegan2-256 --device cuda --batch 1 --dtype tf32 --resample fir
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable

import torch

from latentatlas.models import ops, stylemap
from latentatlas.runtime import set_tf32

MODELS = ("stylemap256", "stylemap64", "stylegan2-256")


def build(name: str, batch: int, device: torch.device) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor, list[torch.nn.Module]]:
    """The pass to profile, its input and the modules in it (random weights, seed 0)."""
    torch.manual_seed(0)
    if name.startswith("stylemap"):
        from latentatlas.models.stylemap import Encoder, Generator, StyleMapConfig, faces64_stylemap_config

        cfg = StyleMapConfig() if name == "stylemap256" else faces64_stylemap_config()
        g = Generator(cfg).eval().requires_grad_(False).to(device)
        e = Encoder(cfg).eval().requires_grad_(False).to(device)
        x = torch.rand(batch, 3, cfg.resolution, cfg.resolution, device=device) * 2 - 1
        return (lambda img: g(e(img))), x, [g, e]
    from generate_throughput import CONFIGS  # config-f at 256 px, as issue 2's figures

    from latentatlas.models.stylegan2 import Generator as SG2, GeneratorConfig

    sg = SG2(GeneratorConfig(**CONFIGS["256"]))
    sg = sg.eval().requires_grad_(False).to(device)
    return (lambda z: sg(z, noise_mode="const")), torch.randn(batch, 512, device=device), [sg]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=MODELS, default="stylemap256")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--dtype", choices=("fp32", "tf32", "bf16"), default="fp32", help="tf32: TF32 matmuls and convolutions; bf16: autocast")
    ap.add_argument("--resample", choices=("auto", "fir", "composite"), default="auto", help="ops.RESAMPLE_IMPL")
    ap.add_argument("--layer-norm", choices=("auto", "fused", "parallel"), default="auto",
                    help="StyleMapGAN's LayerNorm (models.stylemap.LAYER_NORM_IMPL; fused = F.layer_norm, as before 2026-11-27)")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--cudnn-benchmark", action="store_true")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=10, help="profiled passes (the table sums them, per pass below)")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.dtype == "tf32" and device.type != "cuda":
        raise SystemExit("--dtype tf32 needs CUDA")
    ops.RESAMPLE_IMPL = args.resample
    stylemap.LAYER_NORM_IMPL = args.layer_norm
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    set_tf32(args.dtype == "tf32")
    fn, x, modules = build(args.model, args.batch, device)
    if args.channels_last:  # the 4-D weights and buffers (StyleMapGAN's modulated weight is 5-D)
        for m in modules:
            for t in [*m.parameters(), *m.buffers()]:
                if t.dim() == 4:
                    t.data = t.data.contiguous(memory_format=torch.channels_last)
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)

    def one() -> torch.Tensor:
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bf16"):
            return fn(x)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(args.warmup):
        one()
    sync()
    walls = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        one()
        sync()
        walls.append(1000 * (time.perf_counter() - t))

    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities, record_shapes=True) as prof:
        for _ in range(args.repeats):
            one()
        sync()
    on_device = device.type == "cuda"
    rows = []
    for ev in prof.key_averages(group_by_input_shape=True):
        self_us = ev.self_device_time_total if on_device else ev.self_cpu_time_total
        if self_us <= 0:
            continue
        rows.append({"op": ev.key, "shapes": str(ev.input_shapes)[:160], "calls_per_pass": ev.count / args.repeats,
                     "self_ms_per_pass": self_us / 1000 / args.repeats})
    rows.sort(key=lambda r: -r["self_ms_per_pass"])
    total = sum(r["self_ms_per_pass"] for r in rows)
    by_op: dict[str, float] = {}
    for r in rows:
        by_op[r["op"]] = by_op.get(r["op"], 0.0) + r["self_ms_per_pass"]
    out = {
        "benchmark": "profile_pass",
        "device": torch.cuda.get_device_name(device) if on_device else f"cpu ({torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "settings": {k: getattr(args, k) for k in ("model", "batch", "dtype", "resample", "layer_norm", "channels_last", "cudnn_benchmark")},
        "wall_ms_per_pass": {"median": round(statistics.median(walls), 3), "min": round(min(walls), 3), "repeats": args.repeats},
        "profiled_self_ms_per_pass": round(total, 3),
        "time_is": "device (CUDA kernel) time" if on_device else "CPU time",
        "by_op": {k: round(v, 3) for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])[: args.top]},
        "top": [{**r, "self_ms_per_pass": round(r["self_ms_per_pass"], 3), "share": round(r["self_ms_per_pass"] / total, 3)}
                for r in rows[: args.top]],
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
