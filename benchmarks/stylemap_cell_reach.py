"""How far one stylemap cell reaches in the image, as JSON.

A region swap with faces64-stylemap moves factors outside its mask (README, "Local editing on
synthfaces"). Two mechanisms could carry a cell's content past its area: the 3x3 convolutions of
the resizer and the synthesis, whose reach falls off with distance, and each layer's
normalisation over the whole image (LayerNorm over C, H, W), which changes every pixel a little.
This encodes `--pairs` pairs of held-out renders, replaces one input-stylemap cell of the source
by the reference's (every cell in turn, or those of `--cells`), and reports the mean absolute
pixel change (over the channels) in rings of Chebyshev distance from the cell, in cells: ring 0
is the cell's own area. A change that falls to zero with distance is the convolutions' reach; a
floor that stays at every distance is the normalisation's.

`--random S` measures the faces64-stylemap architecture with an S x S stylemap and random
weights instead (codes from its mapping network; no encoder): how much of the reach is the
architecture's, and what a finer stylemap would do before one is trained.

    python benchmarks/stylemap_cell_reach.py --model faces64-stylemap --out benchmarks/results_cpu_stylemap_cell_reach.json
    python benchmarks/stylemap_cell_reach.py --random 16 --out benchmarks/results_cpu_stylemap_cell_reach_random16.json
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from local_edit_quality import REFERENCE_SEED, SOURCE_SEED  # noqa: E402
from projection_quality import device_name, log  # noqa: E402

from latentatlas.data import synthfaces  # noqa: E402
from latentatlas.inversion.encoder import encode  # noqa: E402
from latentatlas.io.atomic import write_json  # noqa: E402
from latentatlas.io.checkpoints import load_stylemap_any  # noqa: E402
from latentatlas.models.bundled import resolve_model  # noqa: E402
from latentatlas.models.stylemap import Generator, faces64_stylemap_config  # noqa: E402


def ring_changes(change: torch.Tensor, cell: tuple[int, int], s: int) -> list[float]:
    """Mean of `change` [N, R, R] over the pixels at each Chebyshev distance (in cells) from `cell`."""
    r = change.shape[-1]
    k = r // s
    rows = torch.arange(r) // k
    dist = torch.maximum((rows[:, None] - cell[0]).abs(), (rows[None, :] - cell[1]).abs())
    return [float(change[:, dist == d].mean()) for d in range(int(dist.max()) + 1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="faces64-stylemap")
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--random", type=int, default=None, metavar="S",
                    help="the faces64-stylemap architecture with an S x S stylemap and random weights instead of --model")
    ap.add_argument("--cells", default="all", help="'all' or row,col pairs like 5,3;2,4")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    device = torch.device("cpu")
    if args.random:
        torch.manual_seed(0)
        generator = Generator(dataclasses.replace(faces64_stylemap_config(), latent_spatial_size=args.random)).eval()
        with torch.no_grad():
            w_src, w_ref = (generator.mapping(torch.randn(args.pairs, generator.z_dim)) for _ in range(2))
        model = f"faces64-stylemap architecture, {args.random}x{args.random} stylemap, random weights (seed 0), mapped codes"
    else:
        generator, encoder, _ = load_stylemap_any(resolve_model(args.model), device)
        generator.eval(), encoder.eval()
        res = generator.img_resolution
        sources, _ = synthfaces.sample(args.pairs, seed=SOURCE_SEED, resolution=res)
        refs, _ = synthfaces.sample(args.pairs, seed=REFERENCE_SEED, resolution=res)
        w_src, w_ref = encode(encoder, sources, 32), encode(encoder, refs, 32)
        model = args.model
    s, res = generator.latent_spatial_size, generator.img_resolution
    cells = ([(i, j) for i in range(s) for j in range(s)] if args.cells == "all"
             else [tuple(int(v) for v in c.split(",")) for c in args.cells.split(";")])
    with torch.no_grad():
        base = generator(w_src)
        per_cell, rings_sum, rings_n = {}, {}, {}
        for i, j in cells:
            w = w_src.clone()
            w[:, :, i, j] = w_ref[:, :, i, j]
            change = (generator(w) - base).abs().mean(1)
            rings = ring_changes(change, (i, j), s)
            per_cell[f"{i},{j}"] = [round(v, 5) for v in rings]
            for d, v in enumerate(rings):
                rings_sum[d] = rings_sum.get(d, 0.0) + v
                rings_n[d] = rings_n.get(d, 0) + 1
        log(f"{len(cells)} cells done")
    mean = [rings_sum[d] / rings_n[d] for d in sorted(rings_sum)]
    out = {
        "benchmark": "stylemap_cell_reach",
        "device": device_name(device),
        "torch": torch.__version__,
        "model": model,
        "pairs": args.pairs,
        "stylemap": " x ".join(str(v) for v in w_src.shape[1:]),
        "cell_pixels": res // s,
        "change": "mean |G(w with one cell from the reference) - G(w_src)| over channels, images in [-1, 1]",
        "mean_change_by_ring": [round(v, 5) for v in mean],
        "relative_to_ring_0": [round(v / mean[0], 4) for v in mean],
        "cells_in_mean_by_ring": [rings_n[d] for d in sorted(rings_n)],
        "per_cell": per_cell,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if args.out:
        write_json(args.out, out)
    print({k: out[k] for k in ("mean_change_by_ring", "relative_to_ring_0", "cells_in_mean_by_ring")})


if __name__ == "__main__":
    main()
