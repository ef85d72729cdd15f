"""How close a reconstruction is to its target: pixel MSE and, given one, a perceptual distance."""

from __future__ import annotations

import torch

from latentatlas.inversion.losses import PerceptualFn, downsample_to


def reconstruction_errors(images: torch.Tensor, targets: torch.Tensor, perceptual: PerceptualFn | None = None) -> dict[str, list[float]]:
    out = {"mse": (images - targets).square().mean(dim=(1, 2, 3)).tolist()}
    if perceptual is not None:
        with torch.no_grad():
            out["perceptual"] = perceptual(downsample_to(images), downsample_to(targets)).tolist()
    return out
