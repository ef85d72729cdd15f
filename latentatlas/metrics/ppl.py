"""Perceptual path length (Karras et al. 2019/2020) in z and in w.

For random pairs and t ~ U(0, 1): images at t and t + eps along slerp (z) or lerp (w), distance
d(img_t, img_t+eps) / eps^2, mean over samples after dropping the lowest and highest 1%
(the official filtering). For a StyleMapGAN generator "w" is its mapping's output, the
stylemap (the code its encoder, interpolation and local edits work in), lerped whole. The
distance is LPIPS when the caller gives one; for synthfaces models it is the squared distance of
factor-predictor features ("factor PPL"), named so.
Computed with TF32 off (runtime.exact_fp32): its rounding is far larger than eps-sized changes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from latentatlas.io.errors import UserError
from latentatlas.latent.paths import lerp, slerp
from latentatlas.models.stylegan2 import Generator
from latentatlas.models.stylemap import Generator as StyleMapGenerator
from latentatlas.runtime import exact_fp32

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def perceptual_path_length(
    generator: Generator | StyleMapGenerator,
    distance: Distance,
    space: str = "w",
    num_samples: int = 10_000,
    epsilon: float = 1e-4,
    batch: int = 64,
    seed: int = 0,
    on_batch: Callable[[int], None] | None = None,
) -> float:
    """Mean distance / epsilon^2 between images epsilon apart along lerp (w) or slerp (z) paths,
    the 1% tails dropped, as the paper. `on_batch(images rendered)` lets a caller show progress."""
    if space not in ("z", "w"):
        raise UserError(f"PPL space must be z or w, got {space!r}")
    with exact_fp32():
        return _path_length(generator, distance, space, num_samples, epsilon, batch, seed, on_batch)


def _path_length(generator: Generator | StyleMapGenerator, distance: Distance, space: str, num_samples: int, epsilon: float, batch: int,
                 seed: int, on_batch: Callable[[int], None] | None) -> float:
    device = generator.device
    g = torch.Generator(device="cpu").manual_seed(seed)
    dists = []
    for i in range(0, num_samples, batch):
        n = min(batch, num_samples - i)
        z = torch.randn(2 * n, generator.z_dim, generator=g).to(device)
        t = torch.rand(n, generator=g).to(device)
        if space == "z":
            z0, z1 = z[:n], z[n:]
            codes = torch.cat([generator.mapping(slerp(z0, z1, t)), generator.mapping(slerp(z0, z1, t + epsilon))])
        else:  # a StyleGAN2 mapping repeats w for every layer, so lerping its w+ lerps w
            c = generator.mapping(z)
            codes = torch.cat([lerp(c[:n], c[n:], t), lerp(c[:n], c[n:], t + epsilon)])
        if isinstance(generator, StyleMapGenerator):
            img = generator(codes)
        else:
            img = generator.synthesis(codes, noise_mode="const", force_fp32=True)  # fp16 blocks of imported models round by 1e-3
        dists.append((distance(img[:n], img[n:]) / epsilon**2).cpu())
        if on_batch is not None:
            on_batch(2 * n)
    d = torch.cat(dists).double().numpy()
    lo, hi = np.percentile(d, 1, method="lower"), np.percentile(d, 99, method="higher")
    return float(d[(d >= lo) & (d <= hi)].mean())
