"""StyleMapGAN editing: encode in one pass, blend stylemaps under a mask, move a region, interpolate.

Local editing (Kim et al. 2021): w = m * w_ref + (1 - m) * w_src, the image mask m resized to
the stylemap (max-pooled: a stylemap cell is taken from the reference when any of its pixels is
in the mask; or average-pooled for soft edges). The per-layer variant blends every per-layer
stylemap with the mask resized to that layer's resolution (the official "w_plus" mixing), which
keeps the edit closer to the mask's outline. With m exactly 0 the result is the source's
stylemap bit for bit, with m exactly 1 the reference's.

Transplantation moves the reference's region by (dx, dy) pixels into the source: at every
layer, the source's cells under the shifted mask take the reference's cells under the mask
(parts shifted out of the image are dropped).

Masks: PNG files (grey value / 255, square; another size is resized to the model's resolution
with an area filter and said so) or, for synthfaces models, a face region ("eyes", "mouth",
"hair") from the renderer's geometry.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from latentatlas.io.errors import UserError

POOL_MODES = ("max", "avg")


# ---------------------------------------------------------------------------------------
# Codes


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


@torch.no_grad()
def random_stylemaps(generator: torch.nn.Module, seeds: list[int], truncation_psi: float = 1.0,
                     mean: torch.Tensor | None = None) -> torch.Tensor:
    """Stylemaps from seeds (z ~ N(0, I) seeded per image); truncation towards the mean stylemap."""
    z = torch.stack([torch.randn(generator.z_dim, generator=torch.Generator().manual_seed(s)) for s in seeds])
    if truncation_psi != 1 and mean is None:
        mean = generator.mean_stylemap()
    return generator.mapping(z.to(generator.device), truncation_psi, mean)


@torch.no_grad()
def interpolate(generator: torch.nn.Module, a: torch.Tensor, b: torch.Tensor, steps: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear interpolation of two stylemaps [1, C, S, S]: (codes [steps, C, S, S], images)."""
    if steps < 2:
        raise UserError("interpolation needs at least 2 steps")
    t = torch.linspace(0, 1, steps, device=a.device).reshape(-1, 1, 1, 1)
    codes = a * (1 - t) + b * t
    return codes, generator(codes)


# ---------------------------------------------------------------------------------------
# Masks


def resize_mask(mask: torch.Tensor, size: int, mode: str = "max") -> torch.Tensor:
    """Mask [N, 1, R, R] in [0, 1] -> [N, 1, size, size] ('max': any pixel; 'avg': the fraction)."""
    if mode not in POOL_MODES:
        raise ValueError(f"mode must be one of {POOL_MODES}, got {mode!r}")
    r = mask.shape[-1]
    if size == r:
        return mask
    if size > r:
        return F.interpolate(mask, size=(size, size), mode="nearest")
    k = r // size
    return F.max_pool2d(mask, k) if mode == "max" else F.avg_pool2d(mask, k)


def check_mask(mask: torch.Tensor, resolution: int) -> torch.Tensor:
    """A mask as [N, 1, R, R] float in [0, 1] for a model of `resolution`, or a UserError."""
    if mask.ndim == 2:
        mask = mask[None, None]
    elif mask.ndim == 3:
        mask = mask[:, None]
    if mask.ndim != 4 or mask.shape[1] != 1:
        raise UserError(f"a mask must be [H, W], [N, H, W] or [N, 1, H, W], got {list(mask.shape)}")
    if mask.shape[-2:] != (resolution, resolution):
        raise UserError(f"the mask is {mask.shape[-1]}x{mask.shape[-2]}, the model's images {resolution}x{resolution}")
    mask = mask.float()
    if mask.min() < 0 or mask.max() > 1:
        raise UserError("mask values must lie in [0, 1]")
    return mask


def load_mask(path: str | Path, resolution: int) -> tuple[torch.Tensor, list[str]]:
    """A PNG/JPEG mask as [1, 1, R, R] in [0, 1] (grey / 255) plus notes on what was changed.

    Non-square masks are refused (a crop would move the region); square masks of another size
    are resized to the model's resolution with an area filter.
    """
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such mask file (or use a region: eyes, mouth, hair)")
    notes = []
    try:
        with Image.open(path) as im:
            if im.width != im.height:
                raise UserError(f"{path.name}: the mask is {im.width}x{im.height}; it must be square like the images "
                                f"({resolution}x{resolution})")
            im = im.convert("L")
            if im.width != resolution:
                notes.append(f"mask resized from {im.width} px to {resolution} px")
                im = im.resize((resolution, resolution), Image.Resampling.BOX)
            arr = np.asarray(im, dtype=np.float32) / 255.0
    except UserError:
        raise
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable mask image ({type(e).__name__})") from None
    return torch.from_numpy(arr)[None, None], notes


def region_or_file_mask(spec: str, resolution: int) -> tuple[torch.Tensor, list[str]]:
    """'eyes' | 'mouth' | 'hair' (synthfaces geometry, average face) or a mask image path."""
    from latentatlas.data import synthfaces

    if spec in synthfaces.REGIONS:
        if resolution < 16:
            raise UserError(f"face-region masks need a model of at least 16 px, this one is {resolution} px")
        return synthfaces.region_mask(spec, resolution)[:, None], [f"mask: synthfaces region {spec!r} of the average face"]
    return load_mask(spec, resolution)


def mask_coverage_note(mask: torch.Tensor, size: int, mode: str = "max") -> tuple[float, str | None]:
    """Fraction of stylemap cells taken from the reference, with a note for the degenerate cases."""
    m = resize_mask(mask, size, mode)
    frac = float(m.mean())
    if float(m.max()) == 0:
        return frac, "the mask is empty (no stylemap cell selected): the result is the source unchanged"
    if float(m.min()) == 1:
        return frac, "the mask covers every stylemap cell: the result is the reference's reconstruction"
    return frac, None


# ---------------------------------------------------------------------------------------
# Edits


def blend(src: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """m * ref + (1 - m) * src (exact for m in {0, 1})."""
    return mask * ref + (1 - mask) * src


@torch.no_grad()
def local_edit(generator: torch.nn.Module, src: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor,
               per_layer: bool = False, mode: str = "max") -> tuple[torch.Tensor, torch.Tensor | list[torch.Tensor]]:
    """Take the masked region from the reference: (image, blended stylemap or per-layer stylemaps).

    src, ref: stylemaps [N, C, S, S] (N = 1 broadcasts); mask [N, 1, R, R] in [0, 1] at the image
    resolution (check_mask).
    """
    mask = check_mask(mask, generator.img_resolution).to(src.device)
    if not per_layer:
        code = blend(src, ref, resize_mask(mask, src.shape[-1], mode))
        return generator(code), code
    layers = [blend(a, b, resize_mask(mask, a.shape[-1], mode))
              for a, b in zip(generator.stylemaps(src), generator.stylemaps(ref))]
    return generator.synthesize(layers), layers


def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Move content by (dy, dx) cells; what leaves the map is dropped, what enters is 0."""
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    if abs(dy) >= h or abs(dx) >= w:
        return out
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[..., yd, xd] = x[..., ys, xs]
    return out


@torch.no_grad()
def transplant(generator: torch.nn.Module, src: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor,
               shift: tuple[int, int] = (0, 0), mode: str = "avg", threshold: float = 0.5) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Paste the reference's masked region into the source, moved by shift = (dx, dy) pixels.

    Every per-layer stylemap: the mask pooled to the layer ('avg' then > threshold, as the official
    demo), the reference's cells and the mask both moved by round(d * size / R) cells, then blended.
    With shift (0, 0) this is the per-layer local edit with a thresholded mask.
    """
    mask = check_mask(mask, generator.img_resolution).to(src.device)
    dx, dy = shift
    r = generator.img_resolution
    layers = []
    for a, b in zip(generator.stylemaps(src), generator.stylemaps(ref)):
        size = a.shape[-1]
        m = resize_mask(mask, size, mode)
        m = (m > threshold).float() if mode == "avg" else m
        cy, cx = round(dy * size / r), round(dx * size / r)
        layers.append(blend(a, _shift(b, cy, cx), _shift(m, cy, cx)))
    return generator.synthesize(layers), layers


def save_stylemaps(path: str | Path, codes: torch.Tensor, model: str, names: list[str]) -> None:
    """Stylemaps [N, C, S, S] as .npz: `stylemap`, `space` ('stylemap'), `model`, `images`."""
    import numpy as np

    from latentatlas.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, stylemap=codes.detach().cpu().numpy().astype(np.float32), space=np.array("stylemap"),
                     model=np.array(model), images=np.array(names))
