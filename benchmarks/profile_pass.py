"""Where one forward pass spends its time: torch.profiler's operators, heaviest first, as JSON.

Issue 6's 256 px StyleMapGAN encode + generate at batch 1 took 46.8 ms on an H200 (bf16, CUDA
graph) where the target is 5 ms and batch 64 runs at about 100 TFLOP/s: the time goes somewhere
other than the convolutions' arithmetic, and only a profile says where. Random weights, no
gradients. Several settings are timed and profiled in one process (one model, one CUDA context:
device time is scarce), each given as `resample[+cl][+ln-fused][+nocache][+small]`:
  - resample: ops.RESAMPLE_IMPL, how x2 convolutions resample: auto (composite on CUDA), fir
    (the FIR filter as its own depthwise pass), composite (folded into 6x6 transposed or strided
    kernels), phase (folded, as stride-1 convolutions with pixel_(un)shuffle);
  - +cl: modules and input in channels-last layout;
  - +ln-fused: StyleMapGAN's LayerNorm as F.layer_norm (one CUDA thread block per image; the
    library's choice before 2026-11-27) instead of models.stylemap.LAYER_NORM_IMPL's auto;
  - +nocache: the weights' derived values (scaled, cast, folded kernels) made on every call, as
    on CUDA before 2026-11-27 (models.derived.ENABLED);
  - +small: the StyleMapGAN config with the official `small_generator` option (every per-layer
    stylemap keeps style_dim channels: 267 against 535 GFLOP per 256 px pass on CPU's code path),
    a second model beside the first; its difference is taken to its own first setting.
With --out F, the JSON so far is rewritten to F after each setting.

    python benchmarks/profile_pass.py --model stylemap256 --device cuda --batch 1 --dtype bf16 --cudnn-benchmark \
        --settings auto+ln-fused+nocache,auto,phase,fir,phase+cl
    python benchmarks/profile_pass.py --model stylegan2-256 --device cuda --batch 1 --dtype tf32 --settings fir
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Callable

import torch

from latentatlas.io.atomic import write_json
from latentatlas.models import derived, ops, stylemap
from latentatlas.runtime import set_tf32

MODELS = ("stylemap256", "stylemap64", "stylegan2-256")


def build(name: str, batch: int, device: torch.device, small: bool = False
          ) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor, list[torch.nn.Module]]:
    """The pass to profile, its input and the modules in it (random weights, seed 0); `small`: a
    StyleMapGAN with the small_generator option."""
    torch.manual_seed(0)
    if name.startswith("stylemap"):
        from dataclasses import replace

        from latentatlas.models.stylemap import Encoder, Generator, StyleMapConfig, faces64_stylemap_config

        cfg = StyleMapConfig() if name == "stylemap256" else faces64_stylemap_config()
        cfg = replace(cfg, small_generator=small)
        g = Generator(cfg).eval().requires_grad_(False).to(device)
        e = Encoder(cfg).eval().requires_grad_(False).to(device)
        x = torch.rand(batch, 3, cfg.resolution, cfg.resolution, device=device) * 2 - 1
        return (lambda img: g(e(img))), x, [g, e]
    from generate_throughput import CONFIGS  # config-f at 256 px, as issue 2's figures

    from latentatlas.models.stylegan2 import Generator as SG2, GeneratorConfig

    sg = SG2(GeneratorConfig(**CONFIGS["256"]))
    sg = sg.eval().requires_grad_(False).to(device)
    return (lambda z: sg(z, noise_mode="const")), torch.randn(batch, 512, device=device), [sg]


def parse_setting(text: str) -> dict:
    """'phase+cl+nocache' -> {"resample": "phase", "channels_last": True, "layer_norm": "auto",
    "derived_cache": False, "small_generator": False}."""
    resample, *flags = text.split("+")
    if resample not in ops.RESAMPLE_IMPLS:
        raise SystemExit(f"--settings {text!r}: resample must be one of {', '.join(ops.RESAMPLE_IMPLS)}")
    unknown = set(flags) - {"cl", "ln-fused", "nocache", "small"}
    if unknown:
        raise SystemExit(f"--settings {text!r}: unknown {', '.join(sorted(unknown))} (use +cl, +ln-fused, +nocache, +small)")
    return {"name": text, "resample": resample, "channels_last": "cl" in flags,
            "layer_norm": "fused" if "ln-fused" in flags else "auto", "derived_cache": "nocache" not in flags,
            "small_generator": "small" in flags}


def set_layout(modules: list[torch.nn.Module], x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """The 4-D weights, buffers and input in channels-last or standard layout (StyleMapGAN's
    modulated weight is 5-D and stays)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for m in modules:
        for t in [*m.parameters(), *m.buffers()]:
            if t.dim() == 4:
                t.data = t.data.contiguous(memory_format=fmt)
    return x.contiguous(memory_format=fmt) if x.dim() == 4 else x


def profile_setting(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, device: torch.device,
                    args: argparse.Namespace) -> dict:
    """Wall ms per pass (after --warmup passes) and the profiler's operators per pass."""
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
    kernel_ms = 0.0  # on CUDA each kernel's time shows twice, under the op that launched it and under its own name
    for ev in prof.key_averages(group_by_input_shape=True):
        self_us = ev.self_device_time_total if on_device else ev.self_cpu_time_total
        if self_us <= 0:
            continue
        if on_device and ev.device_type == torch.autograd.DeviceType.CUDA:
            kernel_ms += self_us / 1000 / args.repeats
        rows.append({"op": ev.key, "shapes": str(ev.input_shapes)[:160], "calls_per_pass": ev.count / args.repeats,
                     "self_ms_per_pass": self_us / 1000 / args.repeats})
    rows.sort(key=lambda r: -r["self_ms_per_pass"])
    total = sum(r["self_ms_per_pass"] for r in rows)  # on CUDA: each kernel counted twice (ops and kernels)
    # share: of the GPU kernel time on CUDA (an op's row holds its kernels' time), of the CPU time otherwise
    by_op: dict[str, float] = {}
    for r in rows:
        by_op[r["op"]] = by_op.get(r["op"], 0.0) + r["self_ms_per_pass"]
    return {
        "wall_ms_per_pass": {"median": round(statistics.median(walls), 3), "min": round(min(walls), 3), "repeats": args.repeats},
        "profiled_self_ms_per_pass": round(total, 3),
        **({"gpu_kernel_ms_per_pass": round(kernel_ms, 3)} if on_device else {}),
        "by_op": {k: round(v, 3) for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])[: args.top]},
        "top": [{**r, "self_ms_per_pass": round(r["self_ms_per_pass"], 3), "share": round(r["self_ms_per_pass"] / (kernel_ms or total), 3)}
                for r in rows[: args.top]],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=MODELS, default="stylemap256")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--dtype", choices=("fp32", "tf32", "bf16"), default="fp32", help="tf32: TF32 matmuls and convolutions; bf16: autocast")
    ap.add_argument("--settings", default="auto", help="comma list of resample[+cl][+ln-fused][+nocache][+small] (see above), run in this order")
    ap.add_argument("--cudnn-benchmark", action="store_true")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=10, help="timed passes, then as many profiled (the table sums them, per pass below)")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", help="also write the JSON here, rewritten after each setting")
    args = ap.parse_args()
    settings = [parse_setting(t.strip()) for t in args.settings.split(",") if t.strip()]
    if any(s["small_generator"] for s in settings) and not args.model.startswith("stylemap"):
        ap.error("--settings +small: StyleMapGAN models only")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.dtype == "tf32" and device.type != "cuda":
        raise SystemExit("--dtype tf32 needs CUDA")
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    set_tf32(args.dtype == "tf32")
    built: dict[bool, tuple] = {}  # small_generator -> (pass, input, modules); built when first asked for
    out = {
        "benchmark": "profile_pass",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "settings": {k: getattr(args, k) for k in ("model", "batch", "dtype", "cudnn_benchmark")},
        "time_is": "device (CUDA kernel) time" if device.type == "cuda" else "CPU time",
        "runs": {},
    }
    reference: dict[bool, torch.Tensor] = {}  # each model's first output
    for s in settings:
        ops.RESAMPLE_IMPL = s["resample"]
        stylemap.LAYER_NORM_IMPL = s["layer_norm"]
        derived.ENABLED = s["derived_cache"]
        run = {k: v for k, v in s.items() if k != "name"}
        try:  # one failing setting (a kernel, memory) must not lose the others
            small = s["small_generator"]
            if small not in built:
                built[small] = build(args.model, args.batch, device, small=small)
            fn, x, modules = built[small]
            x = set_layout(modules, x, s["channels_last"])
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bf16"):
                y = fn(x).float()
            reference.setdefault(small, y)
            run["max_abs_diff_vs_first"] = float((y - reference[small]).abs().max())
            run.update(profile_setting(fn, x, device, args))
            print(f"{s['name']}: {run['wall_ms_per_pass']['median']} ms", file=sys.stderr)
        except Exception as e:  # noqa: BLE001
            run["error"] = f"{type(e).__name__}: {e}"[:500]
            print(f"{s['name']}: {run['error']}", file=sys.stderr)
        out["runs"][s["name"]] = run
        if args.out:
            write_json(args.out, out)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
