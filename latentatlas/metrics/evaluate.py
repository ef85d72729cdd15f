"""`latentatlas evaluate`: how close a synthfaces model's samples are to the renders it learnt.

Figures: factor-feature FID of N samples vs N renders, next to N renders vs another N renders
(the floor of the metric at this N); per-factor mean and std of predicted factors for samples
and renders; PPL in w (factor-feature distance); optionally the standard Inception FID.

A StyleMapGAN model is scored the same way (PPL in its stylemap, the mapping's output), plus what
its encoder is for, as the paper reports it: the reconstruction of N held-out renders through
one encoder pass (pixel MSE and the factor error against the renders' true factors, next to
the predictor's own error on the renders, the floor).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
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


def sample_batches(generator: Generator | StyleMapGenerator, n: int, batch: int, seed: int, psi: float = 1.0) -> Iterator[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mean = generator.mean_stylemap() if isinstance(generator, StyleMapGenerator) and psi != 1 else None
    for i in range(0, n, batch):
        z = torch.randn(min(batch, n - i), generator.z_dim, generator=g).to(generator.device)
        with torch.no_grad():
            if isinstance(generator, StyleMapGenerator):
                yield generator.generate(z, truncation_psi=psi, mean=mean)
            else:
                yield generator(z, truncation_psi=psi)


def render_batches(n: int, batch: int, seed: int, resolution: int, device: torch.device) -> Iterator[torch.Tensor]:
    for i in range(0, n, batch):
        images, _ = synthfaces.sample(min(batch, n - i), seed=seed + i, resolution=resolution, device=device)
        yield images


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
) -> dict[str, Any]:
    """The figures of the module docstring; `encoder` (a StyleMapGAN model's) adds the reconstruction."""
    from tqdm import tqdm

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
    }
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
