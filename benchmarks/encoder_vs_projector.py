"""StyleMapGAN encoder vs the StyleGAN2 optimisation projector: speed and reconstruction (issue 6).

Targets: `--num` held-out synthfaces renders (default 64; seeds from 10_000_000, the in-domain
seed of projection_quality.py: far from the batch seeds of `train-stylemap` with its default seed
0, which are the step numbers, and from those of faces64 and the predictor), with their true
factors. Both methods get the same faces (rendered at each model's resolution; the same
pixels when both models are 64 px).

1. encoder (`--stylemap MODEL`: our .safetensors from `train-stylemap`, an official
   naver-ai/StyleMapGAN .pt, or a bundled name once one exists; resolved as the web app does):
   encode + generate, one forward pass each, images already on the device, no gradients.
   - speed: ms per image at batch 1 (median over `--repeats` calls after `--warmup`, cycling
     through the targets; CUDA synchronised around every call), with encode and generate alone
     for fp32; images/s at `--batch` (default 64; the targets repeated to fill it; median of
     `--batch-repeats` calls). Model loading is not counted.
   - `--variants` (default fp32) times the same pass with tf32, bf16 (autocast), graph (the whole
     pass replayed as one CUDA graph, latentatlas.models.cuda_graph), graph-tf32, compile
     (torch.compile, fp32) or compile-graph-bf16 (compiled with mode="reduce-overhead": CUDA
     graphs, bf16 autocast), bf16-weights or graph-bf16-weights (a copy of the model cast to bf16,
     input too, no autocast); each with its max abs difference to the fp32 images. All but fp32,
     bf16, bf16-weights and compile need CUDA; compile time is left out of the timing.
   - quality (fp32, the library's `inversion.encoder.encode`, then the generator): per image the
     pixel MSE to the target, the factor-feature distance (bundled predictor `factors`, the
     projector's loss term) and the mean abs error of the 20 predicted factors of the
     reconstruction vs the target's true factors (`predictor_floor_mae`: the target's own
     prediction vs the truth, the best reachable).
2. projector (`--stylegan2 MODEL`, default faces64): the loss of `latentatlas project --loss
   factor` (factor-feature distance + pixel MSE weight 1, no prior, noise maps optimised), W+,
   `--steps` (default 100; the official count is 1000), `--projector-batch` images at once
   (default 8), seed 0 + the chunk's start as the CLI; on the first `--projector-num` targets
   (default all). Wall seconds per image, measured (each call includes the projector's w_avg
   statistics and the final render), the median step time, and seconds per image for 1000 steps
   computed from it (1000 x step + the measured fixed cost per call, not run) when --steps is
   not 1000. A 2-step projection first warms up, not counted. Errors as for the encoder, on
   the projector's reconstructions (its optimised noise maps).
   - `--refine STEPS`: the encoder's stylemaps then refined (`inversion.encoder.refine`, pixel
     MSE, `--refine-batch` images at once): wall seconds per image and the same errors.
3. `--config256`: encode + generate of the official 256 px StyleMapGAN config (StyleMapConfig()
   defaults: 8x8x64 stylemap, channel multiplier 2) with random weights, at batch 1 and
   `--batch`, every variant: speed only. `--only-config256` runs this part alone.
   `--small-generator` takes the official small_generator option (every per-layer stylemap keeps
   64 channels: about half the FLOPs), `--channels-last` puts its 4-D weights and the input in
   channels-last layout (profile_pass.py's `+cl`): the eager profile's settings, timed here as
   CUDA graphs.
The parts run in the order 1, 3, 2 (the projector, the longest, last), and in 3 every variant at
batch 1 before any at `--batch`; with `--out F` the JSON so far is rewritten to F after each part
and each variant of 3, so a run stopped by a time limit keeps what it finished.
The ratio projector / encoder of time per image is given against the encoder at batch 1 and at
`--batch`. Issue 6's speed targets are checked where they apply: at most 30 ms per image at
batch 1 for the faces64-stylemap config on 2 CPU threads, at most 5 ms for the 256 px config
on an H100 (encode + generate). `gflop_per_image`: convolutions and matmuls of one encode +
generate (torch.utils.flop_counter). Prints one JSON object (device, torch, load average at
start and end, the models), progress on stderr.

On a shared CPU, compare the load average with the thread count: while another job keeps a
core busy, 2 threads at batch 1 wait on each other at every small operation (smoke runs of a
faces64-stylemap-sized model on 2 cores, with another job taking about 1.4 of them: 1.9 s per
image at 2 threads, 37 ms at 1 thread a few minutes later); rerun when the machine is quiet, or
with --threads 1 (and say so). The projector dominates the run time (64 images x 100 steps on CPU;
`--projector-num` projects fewer).

    python benchmarks/encoder_vs_projector.py --stylemap runs/faces64-stylemap/model.safetensors
    python benchmarks/encoder_vs_projector.py --stylemap faces64-stylemap --device cuda --num 256 --steps 1000 \\
        --projector-batch 64 --config256 --variants fp32,tf32,bf16,graph,graph-tf32,graph-bf16 --cudnn-benchmark
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import statistics
import sys
import time
from collections.abc import Callable


import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from profile_pass import set_layout  # noqa: E402
from projection_quality import IN_DOMAIN_SEED, device_name, log  # noqa: E402

from latentatlas.data import synthfaces  # noqa: E402
from latentatlas.inversion.encoder import encode, refine  # noqa: E402
from latentatlas.inversion.losses import factor_feature_distance  # noqa: E402
from latentatlas.inversion.projector import ProjectorConfig, project  # noqa: E402
from latentatlas.io.checkpoints import load_stylemap_any  # noqa: E402
from latentatlas.io.errors import UserError  # noqa: E402
from latentatlas.models import ops  # noqa: E402
from latentatlas.models.bundled import load_generator, resolve_model  # noqa: E402
from latentatlas.models.stylemap import Encoder, Generator, StyleMapConfig, faces64_stylemap_config  # noqa: E402
from latentatlas.runtime import keep_freed_cpu_memory, pick_device, set_tf32  # noqa: E402
from latentatlas.training.attributes import load_predictor  # noqa: E402

OFFICIAL_STEPS = 1000
CPU_TARGET_MS = 30.0  # issue 6: faces64-stylemap, batch 1, 2 CPU cores
GPU_TARGET_MS = 5.0  # issue 6: a 256 px model, batch 1, H100
# name: (allow TF32, autocast dtype, how it runs: "eager", "graph" (replayed as one CUDA graph) or
# "compile" / "compile-graph" (torch.compile's inductor, which fuses the normalisation, modulation,
# bias and activation around the convolutions; -graph: its mode="reduce-overhead", which replays
# the compiled pass as CUDA graphs). Compile time is not timed; the first call pays it.
VARIANTS: dict[str, tuple[bool, torch.dtype | None, str]] = {
    "fp32": (False, None, "eager"),
    "tf32": (True, None, "eager"),
    "bf16": (False, torch.bfloat16, "eager"),
    "graph": (False, None, "graph"),
    "graph-tf32": (True, None, "graph"),
    "graph-bf16": (False, torch.bfloat16, "graph"),
    "compile": (False, None, "compile"),
    "compile-graph-bf16": (False, torch.bfloat16, "compile-graph"),
    "bf16-weights": (False, None, "eager"),
    "graph-bf16-weights": (False, None, "graph"),
}
# Variants that run a copy of the model cast to this dtype, input too, instead of autocasting the
# fp32 model: no weight casts inside the pass, only the input's and the output's (autocast keeps
# casts only of weights that need gradients, and the 256 px profile counted 37 copy kernels,
# 0.24 ms, beside the convolutions).
WEIGHT_DTYPE: dict[str, torch.dtype] = {"bf16-weights": torch.bfloat16, "graph-bf16-weights": torch.bfloat16}
# TF32 and CUDA graphs exist only on CUDA; the rest runs on a CPU too.
CPU_VARIANTS = tuple(k for k, (tf32, _, mode) in VARIANTS.items() if not tf32 and "graph" not in mode)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mean(xs: list[float]) -> float:
    return float(sum(xs) / len(xs))


def time_calls(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int) -> list[float]:
    """Wall seconds of `repeats` calls of fn after `warmup` untimed ones (synchronised on CUDA)."""
    with torch.no_grad():
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeats):
            sync(device)
            t = time.perf_counter()
            fn()
            sync(device)
            times.append(time.perf_counter() - t)
    return times


def ms_stats(times: list[float]) -> dict[str, float]:
    return {"median": round(1000 * statistics.median(times), 3), "min": round(1000 * min(times), 3), "repeats": len(times)}


def fill(images: torch.Tensor, batch: int) -> torch.Tensor:
    """A batch of `batch` images taken cyclically from `images`."""
    return images[torch.arange(batch, device=images.device) % images.shape[0]]


def pass_fn(generator: Generator, encoder: Encoder, variant: str, example: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """encode + generate in the variant's precision, run as the variant says (eager, CUDA graph, compiled)."""
    _, autocast, how = VARIANTS[variant]
    cast = WEIGHT_DTYPE.get(variant)
    if cast is not None:
        generator, encoder = copy.deepcopy(generator).to(cast), copy.deepcopy(encoder).to(cast)

    def fn(x: torch.Tensor) -> torch.Tensor:
        if cast is not None:
            return generator(encoder(x.to(cast))).float()
        if autocast is None:
            return generator(encoder(x))
        with torch.autocast(x.device.type, dtype=autocast):
            return generator(encoder(x)).float()

    if how == "graph":
        from latentatlas.models.cuda_graph import CudaGraphed

        return CudaGraphed(fn, example)
    if how == "compile":
        return torch.compile(fn, dynamic=False)
    if how == "compile-graph":
        return torch.compile(fn, dynamic=False, mode="reduce-overhead")
    return fn


def pass_gflop(generator: Generator, encoder: Encoder, x: torch.Tensor) -> float:
    """GFLOP of one encode + generate of x [1, 3, R, R] (convolutions and matmuls, torch's flop counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        generator(encoder(x))
    return counter.get_total_flops() / 1e9


def encoder_speed(generator: Generator, encoder: Encoder, images: torch.Tensor, args: argparse.Namespace, device: torch.device,
                  out: dict | None = None, on_row: Callable[[], None] | None = None) -> dict:
    """Per variant: ms per image at batch 1 (encode + generate), images/s at --batch.

    Every variant at batch 1 first, then every variant at --batch: batch 1 is what the targets
    are set for, and a run stopped by a time limit (the 256 px config at --batch with cuDNN
    autotuning took over a minute in fp32 on an H200) keeps it. Rows go into `out` as they
    finish and on_row() is called after each, so the caller can write what is done so far.
    """
    singles = [images[i : i + 1] for i in range(images.shape[0])]
    big = fill(images, args.batch)
    out = {} if out is None else out
    reference: dict[int, torch.Tensor] = {}
    for single, batch, x in ((True, 1, singles[0]), (False, args.batch, big)):
        for variant in args.variants:
            tf32, _, _ = VARIANTS[variant]
            set_tf32(tf32)
            row = out.setdefault(variant, {})
            try:
                fn = pass_fn(generator, encoder, variant, x)
                with torch.no_grad():
                    y = fn(x).float()
                if variant == "fp32":
                    reference[batch] = y
                elif batch in reference:
                    row[f"max_abs_diff_vs_fp32_batch{batch}"] = float((y - reference[batch]).abs().max())
                if single:
                    cyc = itertools.cycle(singles)
                    times = time_calls(lambda: fn(next(cyc)), device, args.repeats, args.warmup)
                    row["batch1_ms_per_image"] = ms_stats(times)
                else:
                    times = time_calls(lambda: fn(big), device, args.batch_repeats, 1)
                    t = statistics.median(times)
                    row[f"batch{batch}"] = {"ms_per_batch": ms_stats(times), "ms_per_image": round(1000 * t / batch, 4),
                                            "images_per_s": round(batch / t, 2)}
                log(f"  {variant} batch {batch}: {json.dumps(row['batch1_ms_per_image'] if single else row[f'batch{batch}'])}")
                if single and variant == "fp32":
                    cyc_e = itertools.cycle(singles)
                    row["batch1_encode_only_ms"] = ms_stats(time_calls(lambda: encoder(next(cyc_e)), device, args.repeats, args.warmup))
                    with torch.no_grad():
                        codes = [encoder(s) for s in singles]
                    cyc_g = itertools.cycle(codes)
                    row["batch1_generate_only_ms"] = ms_stats(time_calls(lambda: generator(next(cyc_g)), device, args.repeats, args.warmup))
            finally:
                set_tf32(False)
            if on_row is not None:
                on_row()
    return out


@torch.no_grad()
def errors(recon: torch.Tensor, targets: torch.Tensor, truth: torch.Tensor, predictor, chunk: int = 64) -> dict[str, list[float]]:  # type: ignore[no-untyped-def]
    """Per image: pixel MSE, factor-feature distance, mean abs error of predicted vs true factors."""
    dist = factor_feature_distance(predictor.features)
    out: dict[str, list[float]] = {"mse": [], "feature_distance": [], "factor_mae_vs_truth": []}
    for i in range(0, targets.shape[0], chunk):
        r, t, f = recon[i : i + chunk].float(), targets[i : i + chunk], truth[i : i + chunk].to(recon.device)
        out["mse"] += (r - t).square().mean(dim=(1, 2, 3)).tolist()
        out["feature_distance"] += dist(r, t).tolist()
        out["factor_mae_vs_truth"] += (predictor.predict(r) - f).abs().mean(1).tolist()
    return out


def summary(per_image: dict[str, list[float]]) -> dict:
    return {**{k: mean(v) for k, v in per_image.items()}, "per_image": per_image}


def run_projector(generator, predictor, targets: torch.Tensor, truth: torch.Tensor, args: argparse.Namespace, device: torch.device) -> dict:  # type: ignore[no-untyped-def]
    dist = factor_feature_distance(predictor.features)
    cfg = ProjectorConfig(space="w+", steps=args.steps, mse_weight=1.0)
    pb = args.projector_batch
    log(f"projector: warm-up (2 steps, {min(pb, targets.shape[0])} images)")
    project(generator, targets[:pb], dist, ProjectorConfig(space="w+", steps=2, mse_weight=1.0))
    images, chunks = [], []
    for start in range(0, targets.shape[0], pb):
        chunk = targets[start : start + pb]
        stamps: list[float] = []

        def tick(step: int, losses: dict[str, float]) -> None:
            sync(device)
            stamps.append(time.perf_counter())

        sync(device)
        t0 = time.perf_counter()
        res = project(generator, chunk, dist, cfg, seed=args.seed + start, progress=tick)
        sync(device)
        wall = time.perf_counter() - t0
        diffs = [b - a for a, b in zip(stamps, stamps[1:])]
        step = statistics.median(diffs[3:] or diffs or [wall / args.steps])
        chunks.append({"start": start, "images": chunk.shape[0], "wall_seconds": wall, "median_step_seconds": step,
                       "fixed_seconds": max(wall - step * args.steps, 0.0)})
        images.append(res.images)
        log(f"  images {start + 1}-{start + chunk.shape[0]}/{targets.shape[0]}: {wall:.1f} s ({step * 1000:.1f} ms/step)")
    n = targets.shape[0]
    total = sum(c["wall_seconds"] for c in chunks)
    out: dict = {
        "model": args.stylegan2,
        "space": "w+",
        "loss": "factor-feature distance (bundled predictor) + pixel MSE (weight 1), no prior, noise maps optimised, as `latentatlas project --loss factor`",
        "steps": args.steps,
        "official_steps": OFFICIAL_STEPS,
        "batch": pb,
        "images": n,
        "measured": {"wall_seconds": total, "seconds_per_image": total / n, "images_per_minute": 60 * n / total},
        "median_step_seconds": statistics.median(c["median_step_seconds"] for c in chunks),
        "chunks": chunks,
    }
    if args.steps != OFFICIAL_STEPS:
        est = sum(OFFICIAL_STEPS * c["median_step_seconds"] + c["fixed_seconds"] for c in chunks)
        out["per_1000_steps_computed_from_step_time"] = {"seconds_per_image": est / n, "images_per_minute": 60 * n / est}
    out["errors"] = summary(errors(torch.cat(images), targets, truth, predictor))
    return out


def load_stylemap(name: str, device: torch.device) -> tuple[Generator, Encoder, dict, str]:
    try:
        path = resolve_model(name)
    except UserError as e:
        raise SystemExit(f"--stylemap: {e}") from None
    try:
        generator, encoder, info = load_stylemap_any(path, device)
    except UserError as e:
        raise SystemExit(f"--stylemap: {e}") from None
    return generator, encoder, info, str(path)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stylemap", required=True, help="StyleMapGAN model: our .safetensors, an official .pt, or a bundled name")
    ap.add_argument("--stylegan2", default="faces64", help="StyleGAN2 model for the projector (bundled name or file)")
    ap.add_argument("--num", type=int, default=64, help="held-out target images")
    ap.add_argument("--batch", type=int, default=64, help="batch for the encoder's images/s")
    ap.add_argument("--repeats", type=int, default=50, help="timed calls at batch 1")
    ap.add_argument("--batch-repeats", type=int, default=5, help="timed calls at --batch")
    ap.add_argument("--warmup", type=int, default=5, help="untimed calls before timing at batch 1")
    ap.add_argument("--variants", default="fp32", help="comma list of " + ", ".join(VARIANTS) + " (all but " + ", ".join(CPU_VARIANTS) + " need CUDA)")
    ap.add_argument("--steps", type=int, default=100, help=f"projector steps (the official count is {OFFICIAL_STEPS})")
    ap.add_argument("--projector-batch", type=int, default=8)
    ap.add_argument("--projector-num", type=int, default=None, help="project only the first N targets (default: all)")
    ap.add_argument("--no-projector", action="store_true", help="encoder (and --config256) only")
    ap.add_argument("--refine", type=int, default=0, metavar="STEPS",
                    help="also time and score the encoder's stylemaps refined this many steps (inversion.encoder.refine)")
    ap.add_argument("--refine-batch", type=int, default=16)
    ap.add_argument("--config256", action="store_true", help="also time the official 256 px config (random weights)")
    ap.add_argument("--only-config256", action="store_true",
                    help="time only the 256 px config (skips the given model's speed and errors; with --no-projector)")
    ap.add_argument("--small-generator", action="store_true",
                    help="the 256 px config with the official small_generator option (about half the FLOPs)")
    ap.add_argument("--channels-last", action="store_true",
                    help="the 256 px config's 4-D weights and input in channels-last layout (profile_pass.py's +cl)")
    ap.add_argument("--seed", type=int, default=0, help="projector seed (per chunk: seed + start, as the CLI)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cudnn-benchmark", action="store_true", help="let cuDNN pick its algorithms by timing (off in the library)")
    ap.add_argument("--resample", choices=ops.RESAMPLE_IMPLS, default="auto",
                    help="how x2 convolutions resample (ops.RESAMPLE_IMPL; benchmarks/profile_pass.py compares them)")
    ap.add_argument("--out", default=None, help="also write the JSON here, rewritten (atomically) after every part, so a run "
                    "stopped by a time limit keeps the parts it finished")
    args = ap.parse_args(argv)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in args.variants:
        if v not in VARIANTS:
            ap.error(f"--variants: unknown {v!r}; use {', '.join(VARIANTS)}")
    if "fp32" not in args.variants:
        args.variants.insert(0, "fp32")  # the reference for the other variants and the targets
    for name in ("num", "batch", "repeats", "batch_repeats", "steps", "projector_batch", "threads"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        ap.error("--warmup must be >= 0")
    if (args.small_generator or args.channels_last) and not (args.config256 or args.only_config256):
        ap.error("--small-generator and --channels-last change the 256 px config: give --config256 or --only-config256")
    if args.projector_num is not None and not 1 <= args.projector_num <= args.num:
        ap.error("--projector-num must lie in 1..--num")
    return args


def encoder_block(generator: Generator, encoder: Encoder, predictor, targets: torch.Tensor, truth: torch.Tensor,  # type: ignore[no-untyped-def]
                  args: argparse.Namespace, device: torch.device, out: dict, checks: list[dict]) -> None:
    """The given model's encode + generate speed and reconstruction errors, and its CPU target, into out and checks."""
    res = generator.img_resolution
    cfg = generator.config
    log(f"encoder: {out['stylemap_model']['path']} ({res} px), speed on {out['device']}")
    enc: dict = {"what": "encode + generate, one forward pass each, images on the device, no gradients",
                 "batch": args.batch, "gflop_per_image": pass_gflop(generator, encoder, targets[:1]),
                 "speed": encoder_speed(generator, encoder, targets, args, device)}
    with torch.no_grad():
        codes = encode(encoder, targets, batch=args.batch)
        recon = torch.cat([generator(codes[i : i + args.batch]) for i in range(0, args.num, args.batch)])
    enc["errors"] = summary(errors(recon, targets, truth, predictor))
    log(f"encoder errors: {json.dumps({k: v for k, v in enc['errors'].items() if k != 'per_image'})}")
    out["encoder"] = enc
    if args.refine:
        log(f"encoder + {args.refine} refinement steps, batch {args.refine_batch}")
        sync(device)
        t = time.perf_counter()
        refined = refine(generator, codes, targets, args.refine, batch=args.refine_batch)
        sync(device)
        seconds = time.perf_counter() - t
        with torch.no_grad():
            recon = torch.cat([generator(refined[i : i + args.batch]) for i in range(0, args.num, args.batch)])
        out["encoder_refined"] = {"what": "the encoder's stylemaps, then inversion.encoder.refine (Adam on pixel MSE, lr 0.03)",
                                  "steps": args.refine, "batch": args.refine_batch,
                                  "seconds_per_image": seconds / args.num, "errors": summary(errors(recon, targets, truth, predictor))}
        log(f"refined: {seconds / args.num:.3f} s per image, "
            f"{json.dumps({k: v for k, v in out['encoder_refined']['errors'].items() if k != 'per_image'})}")
    b1 = enc["speed"]["fp32"]["batch1_ms_per_image"]["median"]
    checks.append({
        "what": f"faces64-stylemap config, encode + generate at batch 1 on 2 CPU threads <= {CPU_TARGET_MS:g} ms",
        "applies": device.type == "cpu" and torch.get_num_threads() == 2 and cfg == faces64_stylemap_config(),
        "measured_ms": b1, "met": b1 <= CPU_TARGET_MS,
    })


def emit(out: dict, checks: list[dict], path: str | None, load_start: tuple[float, ...], t_start: float) -> None:
    """Complete `out` with the targets, load and time so far; with --out, rewrite that file (atomically)."""
    out["speed_targets"] = checks
    out["load_average_1_5_15min"] = {"start": load_start, "end": os.getloadavg()}
    out["total_seconds"] = time.perf_counter() - t_start
    if path:
        from latentatlas.io.atomic import write_json

        write_json(path, out)


def main() -> None:
    args = parse_args()
    malloc_kept = keep_freed_cpu_memory()
    torch.set_num_threads(args.threads)
    device = torch.device(pick_device(args.device))
    if device.type != "cuda":
        bad = [v for v in args.variants if v not in CPU_VARIANTS]
        if bad:
            raise SystemExit(f"--variants {','.join(bad)}: need CUDA (device {device})")
    if args.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    ops.RESAMPLE_IMPL = args.resample
    load_start = os.getloadavg()
    t_start = time.perf_counter()

    generator, encoder, info, path = load_stylemap(args.stylemap, device)
    predictor = load_predictor("factors", device)
    cfg = generator.config
    res = generator.img_resolution
    targets, truth = synthfaces.sample(args.num, seed=IN_DOMAIN_SEED, resolution=res)
    targets = targets.to(device)
    floor = (predictor.predict(targets) - truth.to(device)).abs().mean(1).tolist()
    out: dict = {
        "benchmark": "encoder_vs_projector",
        "device": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "malloc_keep_freed": malloc_kept,
        "cudnn_benchmark": bool(args.cudnn_benchmark),
        "resample": args.resample,
        "targets": {"source": "synthfaces", "seed": IN_DOMAIN_SEED, "num": args.num, "predictor": "factors",
                    "predictor_floor_mae": mean(floor), "predictor_floor_mae_per_image": floor},
        "stylemap_model": {"argument": args.stylemap, "path": path, "config": cfg.to_dict(),
                           "is_faces64_stylemap_config": cfg == faces64_stylemap_config(),
                           "source_format": info.get("source_format"),
                           "generator_parameters": n_params(generator), "encoder_parameters": n_params(encoder)},
    }

    checks: list[dict] = []
    if not args.only_config256:
        encoder_block(generator, encoder, predictor, targets, truth, args, device, out, checks)
        emit(out, checks, args.out, load_start, t_start)

    if args.config256 or args.only_config256:
        cfg256 = StyleMapConfig(small_generator=args.small_generator)
        torch.manual_seed(0)
        g256, e256 = Generator(cfg256).eval().requires_grad_(False).to(device), Encoder(cfg256).eval().requires_grad_(False).to(device)
        imgs256 = synthfaces.sample(min(args.num, args.batch), seed=IN_DOMAIN_SEED, resolution=cfg256.resolution)[0].to(device)
        imgs256 = set_layout([g256, e256], imgs256, args.channels_last)
        log(f"config256: random weights, {n_params(g256) / 1e6:.1f} M + {n_params(e256) / 1e6:.1f} M parameters")
        speed: dict = {}
        out["config256"] = {"config": cfg256.to_dict(), "weights": "random (speed only)", "channels_last": args.channels_last,
                            "generator_parameters": n_params(g256), "encoder_parameters": n_params(e256),
                            "gflop_per_image": pass_gflop(g256, e256, imgs256[:1]), "speed": speed}
        label = ", ".join(x for x, on in (("small_generator", args.small_generator), ("channels-last", args.channels_last)) if on)
        check = {"what": f"256 px config{f' ({label})' if label else ''}, encode + generate at batch 1 on an H100 <= {GPU_TARGET_MS:g} ms (best variant)",
                 "applies": device.type == "cuda" and "H100" in out["device"]}
        checks.append(check)

        def row_done() -> None:
            timed = {v: r["batch1_ms_per_image"]["median"] for v, r in speed.items() if "batch1_ms_per_image" in r}
            if timed:
                best = min(timed, key=timed.__getitem__)
                check.update(variant=best, measured_ms=timed[best], met=timed[best] <= GPU_TARGET_MS)
            emit(out, checks, args.out, load_start, t_start)

        encoder_speed(g256, e256, imgs256, args, device, out=speed, on_row=row_done)
        del g256, e256, imgs256

    if not args.no_projector and not args.only_config256:
        enc = out["encoder"]
        b1 = enc["speed"]["fp32"]["batch1_ms_per_image"]["median"]
        bb = enc["speed"]["fp32"][f"batch{args.batch}"]["ms_per_image"]
        pnum = args.projector_num or args.num
        g2, g2_info = load_generator(args.stylegan2, device)
        g2_targets = targets[:pnum]
        if g2.img_resolution != res:
            g2_targets = synthfaces.sample(args.num, seed=IN_DOMAIN_SEED, resolution=g2.img_resolution)[0][:pnum].to(device)
        log(f"projector: {args.stylegan2} ({g2.img_resolution} px), w+, {args.steps} steps, {pnum} images at batch {args.projector_batch}")
        proj = run_projector(g2, predictor, g2_targets, truth[:pnum], args, device)
        proj["resolution"] = g2.img_resolution
        proj["same_pixels_as_encoder"] = g2.img_resolution == res
        log(f"projector errors: {json.dumps({k: v for k, v in proj['errors'].items() if k != 'per_image'})}")
        out["projector"] = proj
        spi = proj["measured"]["seconds_per_image"]
        ratio = {"projector_vs_encoder_batch1": spi / (b1 / 1000), f"projector_vs_encoder_batch{args.batch}": spi / (bb / 1000),
                 "projector_steps": args.steps}
        if "per_1000_steps_computed_from_step_time" in proj:
            s1000 = proj["per_1000_steps_computed_from_step_time"]["seconds_per_image"]
            ratio["projector_1000_steps_computed_vs_encoder_batch1"] = s1000 / (b1 / 1000)
        out["ratio_time_per_image"] = ratio
        if pnum < args.num:
            enc["errors_on_projected_images"] = {k: mean(v[:pnum]) for k, v in enc["errors"]["per_image"].items()}

    emit(out, checks, args.out, load_start, t_start)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
