"""Locating images with a StyleMapGAN encoder: one forward pass from an image to its stylemap.

The optimisation projector (projector.py) searches the code of an image step by step; a
StyleMapGAN model ships an encoder trained with its generator that maps an image to its
stylemap at once, which is what makes its editing interactive (editing/local.py). `refine`
then optimises that answer when a closer reconstruction is worth seconds per image.
"""

from __future__ import annotations

import torch

from latentatlas.inversion.losses import PerceptualFn, downsample_to, frozen
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


def refine(generator: torch.nn.Module, stylemaps: torch.Tensor, images: torch.Tensor, steps: int = 100,
           lr: float = 0.03, batch: int = 32, progress: bool = False, perceptual: PerceptualFn | None = None) -> torch.Tensor:
    """Stylemaps [N, C, S, S] optimised by Adam for `steps` steps on the pixel MSE of G(w) to the
    images, plus `perceptual` (per-image distances, e.g. LPIPS-VGG, at most 256 px as the projector
    compares) when given.

    The encoder is fast but approximate; starting an optimisation from its answer (the hybrid
    inversion of in-domain GAN inversion and e4e's follow-ups) lowers the reconstruction error
    in tens of steps where the projector needs hundreds from the mean. For photographs pixel MSE
    alone blurs, hence LPIPS; on synthfaces the benchmarks use MSE only, because the factor
    predictor's features are the measuring instrument and a loss on them would grade itself.
    The generator's weights are left as they were.
    """
    if steps < 0:
        raise UserError(f"refinement steps must be >= 0, got {steps}")
    if stylemaps.shape[0] != images.shape[0]:
        raise UserError(f"{stylemaps.shape[0]} stylemaps for {images.shape[0]} images")
    if steps == 0:
        return stylemaps.clone()
    if not torch.isfinite(images).all():
        raise UserError("the images hold NaN or infinite values")
    from tqdm import tqdm

    device = stylemaps.device
    out = []
    bar = tqdm(total=steps * -(-stylemaps.shape[0] // batch), disable=not progress, desc="refine", unit="step")
    with frozen(generator), bar:
        for i in range(0, stylemaps.shape[0], batch):
            w = stylemaps[i : i + batch].detach().clone().requires_grad_(True)
            target = images[i : i + batch].to(device)
            opt = torch.optim.Adam([w], lr=lr)
            target_small = downsample_to(target)
            with torch.enable_grad():
                for _ in range(steps):
                    synth = generator(w)
                    per_image = (synth - target).square().mean((1, 2, 3))
                    if perceptual is not None:
                        per_image = per_image + perceptual(downsample_to(synth), target_small)
                    loss = per_image.sum()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    bar.update()
            out.append(w.detach())
    return torch.cat(out)
