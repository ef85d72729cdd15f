"""Image degradations the benchmarks compare generator samples with: what renders look like when
they lose the fine detail that samples lack (critic_probe.py asks the critic, predictor_robustness.py
the factor predictor)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_blur(x: torch.Tensor, sigma: float, radius: int = 3) -> torch.Tensor:
    """Separable Gaussian blur of [N, C, H, W] images, reflecting at the borders."""
    k = torch.exp(-torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device) ** 2 / (2 * sigma**2))
    k = (k / k.sum()).view(1, 1, 1, -1).repeat(x.shape[1], 1, 1, 1)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), k, groups=x.shape[1])
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), k.transpose(2, 3), groups=x.shape[1])


def half_and_back(x: torch.Tensor) -> torch.Tensor:
    """Average-pooled to half size, then bilinearly up-sampled back."""
    return F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="bilinear", align_corners=False)
