"""`latentatlas evaluate`: how close a synthfaces model's samples are to the renders it learnt.

Figures: factor-feature FID of N samples vs N renders, next to N renders vs another N renders
(the floor of the metric at this N); per-factor mean and std of predicted factors for samples
and renders, with issue 3's coverage read from them (std ratios, their capped mean, the factors
under half) and each factor's 2-98 % span ratio; PPL in w (factor-feature distance); optionally
the standard Inception FID and a range sheet (metrics/factor_range.py).

A StyleMapGAN model is scored the same way (PPL in its stylemap, the mapping's output), plus what
its encoder is for, as the paper reports it: the reconstruction of N held-out renders through
one encoder pass (pixel MSE and the factor error against the renders' true factors, next to
the predictor's own error on the renders, the floor).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import math
import statistics
from pathlib import Path
from typing import Any

import torch

from latentatlas.data import synthfaces
from latentatlas.inversion.encoder import encode
from latentatlas.inversion.losses import factor_feature_distance
from latentatlas.io.errors import require_at_least
from latentatlas.metrics.fid import collect_features, fid_from_features, load_inception
from latentatlas.metrics.ppl import perceptual_path_length
from latentatlas.models.stylegan2 import Generator
from latentatlas.models.stylemap import Generator as StyleMapGenerator
from latentatlas.training.attributes import FactorPredictor

RENDER_SEED_A = 2_000_000_000
RENDER_SEED_B = 3_000_000_000


def latent_batches(z_dim: int, n: int, batch: int, seed: int) -> Iterator[torch.Tensor]:
    """The z of `sample_batches`, on the CPU: row i is sample i's, so a sample can be drawn again alone."""
    g = torch.Generator().manual_seed(seed)
    for i in range(0, n, batch):
        yield torch.randn(min(batch, n - i), z_dim, generator=g)


def generate_from(generator: Generator | StyleMapGenerator, z: torch.Tensor, psi: float = 1.0,
                  mean: torch.Tensor | None = None) -> torch.Tensor:
    """Images of z for either kind of generator (a StyleMapGAN's truncation needs its mean stylemap)."""
    z = z.to(generator.device)
    with torch.no_grad():
        if isinstance(generator, StyleMapGenerator):
            return generator.generate(z, truncation_psi=psi, mean=mean)
        return generator(z, truncation_psi=psi)


def sample_batches(generator: Generator | StyleMapGenerator, n: int, batch: int, seed: int, psi: float = 1.0) -> Iterator[torch.Tensor]:
    mean = generator.mean_stylemap() if isinstance(generator, StyleMapGenerator) and psi != 1 else None
    for z in latent_batches(generator.z_dim, n, batch, seed):
        yield generate_from(generator, z, psi, mean)


def factor_batches(n: int, batch: int, seed: int) -> Iterator[torch.Tensor]:
    """The true factors of `render_batches`' renders, without rendering them (row i is render i's)."""
    for i in range(0, n, batch):
        yield synthfaces.sample_factors(min(batch, n - i), seed=seed + i)


def render_batches(n: int, batch: int, seed: int, resolution: int, device: torch.device) -> Iterator[torch.Tensor]:
    for factors in factor_batches(n, batch, seed):
        yield synthfaces.render(factors.to(device), resolution)


def factor_features(predictor: FactorPredictor, batches: Iterator[torch.Tensor]) -> torch.Tensor:
    """[N, feature_dim + factors]: the predictor's penultimate features, then its factor estimates."""
    return collect_features(batches, lambda images: torch.cat([predictor.features(images), predictor.predict(images)], dim=1))


def factor_comparison(samples: torch.Tensor, renders: torch.Tensor, feature_dim: int) -> dict[str, Any]:
    """Factor-feature FID and per-factor mean and std of samples against renders (factor_features rows)."""
    return {
        "factor_fid_samples_vs_renders": fid_from_features(samples[:, :feature_dim], renders[:, :feature_dim]),
        "factors": {
            name: {
                "samples_mean": float(samples[:, feature_dim + j].mean()),
                "samples_std": float(samples[:, feature_dim + j].std()),
                "renders_mean": float(renders[:, feature_dim + j].mean()),
                "renders_std": float(renders[:, feature_dim + j].std()),
            }
            for j, name in enumerate(synthfaces.FACTOR_NAMES)
        },
    }


def coverage(factors: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Per-factor std ratio (samples / renders), their mean capped at 1 per factor (so that no
    factor's excess hides another's shortfall), the factors under half: how issue 3 reads a
    model's coverage, in `evaluate` and in every factor-monitor line."""
    # rounded only for the log; a predictor blind to a factor (renders' std 0: not ours) reads NaN
    ratios = {k: v["samples_std"] / v["renders_std"] if v["renders_std"] > 0 else math.nan for k, v in factors.items()}
    return {"mean_std_ratio_capped": round(statistics.mean(min(r, 1.0) for r in ratios.values()), 3),
            "factors_under_half": sorted(k for k, r in ratios.items() if not r >= 0.5),  # NaN (a diverged run) counts
            "std_ratio": {k: round(r, 3) for k, r in ratios.items()}}


@torch.no_grad()
def reconstruction_scores(generator: StyleMapGenerator, encoder: torch.nn.Module, predictor: FactorPredictor,
                          num: int, batch: int, seed: int = RENDER_SEED_B,
                          on_batch: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Held-out renders through one encoder pass and the generator: mean pixel MSE ([-1, 1]
    scale) and mean |predicted - true| factor error, with the predictor's error on the renders
    themselves (the floor any reconstruction is read through)."""
    device = generator.device
    mse = mae = floor = 0.0
    for i in range(0, num, batch):
        images, truth = synthfaces.sample(min(batch, num - i), seed=seed + i, resolution=generator.img_resolution, device=device)
        recon = generator(encode(encoder, images, batch=len(images)))
        mse += float((recon - images).square().mean(dim=(1, 2, 3)).sum())
        mae += float((predictor.predict(recon) - truth).abs().mean(1).sum())
        floor += float((predictor.predict(images) - truth).abs().mean(1).sum())
        if on_batch is not None:
            on_batch(len(images))
    return {"num_images": num, "mse": mse / num, "factor_mae_vs_truth": mae / num, "predictor_floor_mae": floor / num}


@torch.no_grad()
def evaluate_model(
    generator: Generator | StyleMapGenerator,
    predictor: FactorPredictor,
    num: int = 10_000,
    batch: int = 250,
    ppl_samples: int = 10_000,
    inception_path: str | None = None,
    progress: bool = True,
    encoder: torch.nn.Module | None = None,
    range_sheet: str | Path | None = None,
) -> dict[str, Any]:
    """The figures of the module docstring; `encoder` (a StyleMapGAN model's) adds the reconstruction,
    `range_sheet` a picture of how far the samples reach along each factor (metrics/factor_range.py)."""
    from tqdm import tqdm

    from latentatlas.io.images import make_grid, save_image
    from latentatlas.metrics.factor_range import QUANTILES, range_sheet as draw_range_sheet, span_ratios

    require_at_least("--batch", batch, 1, "images per forward pass")
    inception = load_inception(inception_path, generator.device) if inception_path else None  # a bad file fails before the work
    device = generator.device
    res = generator.img_resolution
    total = 3 * num + (2 * num if inception_path else 0) + 2 * ppl_samples + (num if encoder is not None else 0)
    bar = tqdm(total=total, disable=not progress, desc="evaluate", unit="img")

    def tracked(it: Iterator[torch.Tensor]) -> Iterator[torch.Tensor]:
        for b in it:
            bar.update(len(b))
            yield b

    fd = predictor.feature_dim
    samples = factor_features(predictor, tracked(sample_batches(generator, num, batch, seed=0)))
    renders_a = factor_features(predictor, tracked(render_batches(num, batch, RENDER_SEED_A, res, device)))
    renders_b = factor_features(predictor, tracked(render_batches(num, batch, RENDER_SEED_B, res, device)))
    compared = factor_comparison(samples, renders_a, fd)
    out: dict[str, Any] = {
        "num_images": num,
        "factor_fid_samples_vs_renders": compared["factor_fid_samples_vs_renders"],
        "factor_fid_renders_vs_renders": fid_from_features(renders_b[:, :fd], renders_a[:, :fd]),
        "factors": compared["factors"],
        **coverage(compared["factors"]),
        "span_ratio_2_98": span_ratios(samples[:, fd:], renders_a[:, fd:]),
    }
    if range_sheet is not None:
        sheet = draw_range_sheet(generator, samples[:, fd:], renders_a[:, fd:], batch, seed=0, render_seed=RENDER_SEED_A)
        save_image(range_sheet, make_grid(sheet, cols=2 * len(QUANTILES) + 1, pad=2))
    if inception is not None:
        a = collect_features(tracked(sample_batches(generator, num, batch, seed=0)), inception)
        b = collect_features(tracked(render_batches(num, batch, RENDER_SEED_A, res, device)), inception)
        out["inception_fid_samples_vs_renders"] = fid_from_features(a, b)
    ppl_key = "ppl_stylemap_factor_features" if isinstance(generator, StyleMapGenerator) else "ppl_w_factor_features"
    out[ppl_key] = perceptual_path_length(
        generator, factor_feature_distance(predictor.features), space="w", num_samples=ppl_samples, batch=batch, on_batch=bar.update
    )
    if encoder is not None:
        out["reconstruction"] = reconstruction_scores(generator, encoder, predictor, num, batch, on_batch=bar.update)
    bar.close()
    return out
