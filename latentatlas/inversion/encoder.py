"""Locating images with a StyleMapGAN encoder: one forward pass from an image to its stylemap.

The optimisation projector (projector.py) searches the code of an image step by step; a
StyleMapGAN model ships an encoder trained with its generator that maps an image to its
stylemap at once, which is what makes its editing interactive (editing/local.py).
"""

from __future__ import annotations

import torch

from latentatlas.io.errors import UserError


@torch.no_grad()
def encode(encoder: torch.nn.Module, images: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """Images [N, 3, R, R] in [-1, 1] -> stylemaps [N, C, S, S], one forward pass of the encoder."""
    res = encoder.img_resolution
    if images.ndim != 4 or images.shape[1] != 3:
        raise UserError(f"images must be [N, 3, H, W] RGB, got {list(images.shape)}")
    if images.shape[-2:] != (res, res):
        raise UserError(f"the images are {images.shape[-1]}x{images.shape[-2]} px, the model takes {res}x{res}: resize them first "
                        "(the encode and edit-local commands resize files for you)")
    device = next(encoder.parameters()).device
    return torch.cat([encoder(images[i : i + batch].to(device)) for i in range(0, images.shape[0], batch)])
