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

Blend strength s in [0, 1] scales the mask (w = s m w_ref + (1 - s m) w_src): s = 1 is the edit
above, s = 0 the source; in between the region fades from the source to the reference.

Masks: PNG files or drawn strokes (square; the alpha when it is not fully opaque, else the grey
value, 8- or 16-bit; another size is resized to the model's resolution with an area filter and
said so) or, for synthfaces models, a face region ("eyes", "mouth", "hair") from the renderer's
geometry. `edit` is the one entry point the CLI (`edit-local`) and the web app (Local edit tab)
share: it checks the shift and the strength and picks the local edit or the transplantation;
`edit_coverage` judges a mask by the rule of the edit that will run.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from latentatlas.io.errors import UserError, require_file
from latentatlas.latent.codes import LatentCode, code_for_model
from latentatlas.latent.paths import interpolate as interpolate_codes

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

POOL_MODES = ("max", "avg")


# ---------------------------------------------------------------------------------------
# Codes


@torch.no_grad()
def random_stylemaps(generator: torch.nn.Module, seeds: list[int], truncation_psi: float = 1.0,
                     mean: torch.Tensor | None = None) -> torch.Tensor:
    """Stylemaps from seeds (z ~ N(0, I) seeded per image); truncation towards the mean stylemap."""
    z = torch.stack([torch.randn(generator.z_dim, generator=torch.Generator().manual_seed(s)) for s in seeds])
    if truncation_psi != 1 and mean is None:
        mean = generator.mean_stylemap()
    return generator.mapping(z.to(generator.device), truncation_psi, mean)


def stylemap_input(generator: torch.nn.Module, encoder: torch.nn.Module, source: int | str | Path | torch.Tensor,
                   model_names: Collection[str] | None = None, truncation_psi: float = 1.0, mean: torch.Tensor | None = None,
                   max_npz_bytes: int | None = None, refine: int = 0, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """A StyleMapGAN input as (stylemap [1, C, S, S] on the model's device, image [1, 3, R, R] on the CPU),
    for `edit-local`, `interpolate` and the app's Local edit alike. `source` is a seed (a model
    sample, truncated towards `mean`), a stylemap code file (.npz from `encode`, checked against the
    model: `model_names` are what it may name, `max_npz_bytes` its unpacked size), or an image
    [1, 3, R, R] in [-1, 1], encoded in one pass and then refined `refine` steps (codes and seeds
    are no encoder's guess: they are taken as they are). For seeds and codes the image is the
    model's rendering; for an image, the image itself."""
    from latentatlas.inversion.encoder import encode
    from latentatlas.inversion.encoder import refine as refine_stylemaps

    device = next(generator.parameters()).device
    if isinstance(source, torch.Tensor):
        with torch.no_grad():
            code = encode(encoder, source)
        if refine:
            code = refine_stylemaps(generator, code, source.to(code.device), refine, progress=progress)
        return code, source.cpu()
    with torch.no_grad():
        if isinstance(source, int):
            code = random_stylemaps(generator, [source], truncation_psi, mean)
        else:
            code = code_for_model(source, generator, model_names, max_npz_bytes).tensor.to(device)  # type: ignore[arg-type]
        return code, generator(code).clamp(-1, 1).cpu()


@torch.no_grad()
def interpolate(generator: torch.nn.Module, a: torch.Tensor, b: torch.Tensor, steps: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear interpolation of two stylemaps [1, C, S, S] (latent.paths.interpolate's lerp, as for any
    code): (codes [steps, C, S, S], images)."""
    codes = interpolate_codes(LatentCode("stylemap", a), LatentCode("stylemap", b), steps).tensor
    return codes, torch.cat([generator(codes[i : i + 16]) for i in range(0, steps, 16)])


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
    if not torch.isfinite(mask).all() or mask.min() < 0 or mask.max() > 1:  # NaN passes both comparisons
        raise UserError("mask values must be finite and lie in [0, 1]")
    return mask


def mask_values(im: Image.Image, name: str = "the mask") -> tuple[np.ndarray, list[str]]:
    """The mask an image holds, as float32 [H, W] in [0, 1], plus a note when it is read from alpha.

    Alpha first: a mask painted on a transparent layer (an image editor's, the web app's brush)
    holds its strokes in the alpha band whatever their colour, so an alpha band or a PNG
    transparency key that is not fully opaque is the mask. Otherwise the grey value, scaled by
    the mode's own white: 1/255 for 8-bit modes, and for 16- and 32-bit ones as the image reader
    scales them (io.images.grey_levels: convert('L') would clip a 16-bit mask at 255).
    """
    import numpy as np

    from latentatlas.io.images import HIGH_DEPTH_GREY, grey_levels, transparent_alpha

    try:
        alpha = transparent_alpha(im)
        if alpha is not None:
            return np.asarray(alpha).astype(np.float32) / 255, [f"{name}: read from its alpha channel (transparent = keep the source)"]
        if im.mode in HIGH_DEPTH_GREY:
            return grey_levels(im, name)
        return np.asarray(im.convert("L")).astype(np.float32) / 255, []
    except ValueError:  # a mode PIL cannot convert (premultiplied alpha and the like)
        raise UserError(f"{name}: a {im.mode} image cannot be read as a mask; save it as 8-bit grey") from None


def mask_from_grey(grey: Image.Image | np.ndarray, resolution: int, name: str = "the mask") -> tuple[torch.Tensor, list[str]]:
    """A square mask image (PIL image read by mask_values, or an array [H, W] of uint8 0..255, bool,
    or floats in [0, 1]) as a mask [1, 1, R, R] in [0, 1], plus notes. Another size is resized with
    an area filter (a stroke drawn on an enlarged display keeps its coverage); non-square masks are
    refused (a crop would move the region).
    """
    import numpy as np
    from PIL import Image

    notes: list[str] = []
    if isinstance(grey, Image.Image):
        if grey.width != grey.height:
            raise UserError(f"{name} is {grey.width}x{grey.height}; it must be square like the images ({resolution}x{resolution})")
        arr, notes = mask_values(grey, name)
    else:
        arr = np.asarray(grey)
        if arr.ndim != 2:
            raise UserError(f"{name} must be a grey image [H, W], got shape {list(arr.shape)}")
        if arr.dtype.kind == "f":
            if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
                raise UserError(f"{name}: float mask values must lie in [0, 1]")
            arr = arr.astype(np.float32)
        elif arr.dtype.kind == "b":
            arr = arr.astype(np.float32)
        else:
            if arr.size and (arr.min() < 0 or arr.max() > 255):
                raise UserError(f"{name}: integer mask values must lie in 0..255, got {arr.min()} to {arr.max()}")
            arr = arr.astype(np.float32) / 255
        if arr.shape[0] != arr.shape[1]:
            raise UserError(f"{name} is {arr.shape[1]}x{arr.shape[0]}; it must be square like the images ({resolution}x{resolution})")
    if arr.shape[0] != resolution:
        notes.append(f"mask resized from {arr.shape[0]} px to {resolution} px")
        arr = np.asarray(Image.fromarray(arr).resize((resolution, resolution), Image.Resampling.BOX))
    return torch.from_numpy(np.clip(arr, 0, 1).astype(np.float32))[None, None], notes


def load_mask(path: str | Path, resolution: int) -> tuple[torch.Tensor, list[str]]:
    """A PNG/JPEG mask file as [1, 1, R, R] in [0, 1] (its alpha or grey value, see mask_values) plus
    notes (see mask_from_grey).

    Opened by the image reader's guard (io.images.open_image), so a mask file gets the same pixel
    cap and the same one-line errors as a source image.
    """
    from latentatlas.data import synthfaces
    from latentatlas.io.images import open_image

    path = Path(path)
    require_file(path, f"give a mask image, or a region: {', '.join(synthfaces.REGIONS)}")
    with open_image(path) as im:
        return mask_from_grey(im, resolution, name=path.name)


def region_mask(region: str, resolution: int) -> tuple[torch.Tensor, list[str]]:
    """A synthfaces face region ('eyes', 'mouth', 'hair') of the average face as [1, 1, R, R], plus a note."""
    from latentatlas.data import synthfaces

    if region not in synthfaces.REGIONS:
        raise UserError(f"unknown face region {region!r}: use one of {', '.join(synthfaces.REGIONS)}")
    if resolution < synthfaces.MIN_RESOLUTION:
        raise UserError(f"face-region masks need a model of at least {synthfaces.MIN_RESOLUTION} px, this one is {resolution} px")
    return synthfaces.region_mask(region, resolution)[:, None], [f"mask: synthfaces region {region!r} of the average face"]


def region_or_file_mask(spec: str, resolution: int) -> tuple[torch.Tensor, list[str]]:
    """'eyes' | 'mouth' | 'hair' (synthfaces geometry, average face) or a mask image path."""
    from latentatlas.data import synthfaces

    if spec in synthfaces.REGIONS:
        return region_mask(spec, resolution)
    return load_mask(spec, resolution)


def grow_mask(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """The mask [N, 1, R, R] grown by `pixels` in every direction (a square max filter).

    Why: a part of the face is drawn from its own stylemap cells and their neighbours' (the
    resizer's and the synthesis' 3x3 convolutions reach across cells), so a mask drawn tight on
    the part carries it only partly (on faces64-stylemap eyes and mouth about 0.7 of the way); taking a margin of neighbouring cells from the reference
    carries more of it and changes more around it (README, "Local editing on synthfaces").
    """
    if pixels < 0:
        raise UserError(f"grow (--grow) must be >= 0 px (a mask can only grow): got {pixels} px")
    if pixels == 0:
        return mask
    r = mask.shape[-1]
    if pixels >= r:  # r - 1 already spreads one pixel over the whole image; more only costs memory
        raise UserError(f"grow (--grow): the mask can grow by at most {r - 1} px on a {r} px model (that already fills "
                        f"it from any marked pixel), got {pixels} px")
    return F.max_pool2d(mask, 2 * pixels + 1, stride=1, padding=pixels)


EMPTY_MASK_NOTE = "the mask is empty (no stylemap cell selected): the result is the source unchanged"


def mask_coverage_note(mask: torch.Tensor, size: int, mode: str = "max") -> tuple[float, str | None]:
    """Fraction of stylemap cells taken from the reference, with a note for the degenerate cases."""
    m = resize_mask(mask, size, mode)
    frac = float(m.mean())
    if float(m.max()) == 0:
        return frac, EMPTY_MASK_NOTE
    if float(m.min()) == 1:
        return frac, "the mask covers every stylemap cell: the result is the reference's reconstruction"
    return frac, None


def edit_coverage(generator: torch.nn.Module, mask: torch.Tensor, shift: tuple[int, int] | None = None) -> tuple[float, str | None]:
    """What `edit` will take from the reference, judged by the rule that edit will apply: (the
    fraction of stylemap cells, a note for the degenerate cases; the fraction is 0 exactly when
    nothing is taken).

    No shift: the local edit's max-pooled mask on the S x S stylemap (a cell counts when any of
    its pixels is marked). A shift: the transplantation's per-layer masks (average-pooled, then
    > 0.5, then moved), the fraction averaged over the layers. They differ: a soft mask whose
    values all lie at or below 0.5 selects cells in the first rule and none in the second, where
    the result would be the source without a word.
    """
    if shift is None or float(mask.max()) == 0:  # nothing marked at all: the same note whatever the edit
        return mask_coverage_note(mask, generator.latent_spatial_size)
    r = generator.img_resolution
    dx, dy = check_shift(shift, r)
    layers = [transplant_mask(mask, size, r, dx, dy) for size in generator.decoder.stylemap_resolutions]
    moved = [_shift(m, cy, cx) for m, cy, cx in layers]
    frac = sum(float(m.mean()) for m in moved) / len(moved)
    if all(float(m.max()) == 0 for m, _, _ in layers):  # the last layer is at full resolution: every mask value is at or below the threshold
        return frac, ("the mask selects no stylemap cell for the transplantation, which takes a cell only where the mask "
                      "averages more than 0.5 over it, and no mask value exceeds 0.5: the result is the source unchanged")
    if all(float(m.max()) == 0 for m in moved):
        return frac, f"the shift {dx},{dy} moves every selected stylemap cell out of the image: the result is the source unchanged"
    if all(float(m.min()) == 1 for m in moved):
        return frac, "the mask covers every stylemap cell: the result is the reference's reconstruction"
    return frac, None


# ---------------------------------------------------------------------------------------
# Edits


def blend(src: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """m * ref + (1 - m) * src (exact for m in {0, 1})."""
    return mask * ref + (1 - mask) * src


def check_strength(strength: float) -> float:
    if not 0 <= strength <= 1:
        raise UserError(f"blend strength must lie in [0, 1] (--strength): got {strength}")
    return float(strength)


def check_shift(shift: tuple[int, int], resolution: int) -> tuple[int, int]:
    """(dx, dy) in pixels; a shift of a whole image or more would move the region out of it."""
    dx, dy = (int(v) for v in shift)
    if abs(dx) >= resolution or abs(dy) >= resolution:
        raise UserError(f"the shift {dx},{dy} moves the region out of the {resolution} px image")
    return dx, dy


@torch.no_grad()
def local_edit(generator: torch.nn.Module, src: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor,
               per_layer: bool = False, mode: str = "max", strength: float = 1.0) -> tuple[torch.Tensor, torch.Tensor | list[torch.Tensor]]:
    """Take the masked region from the reference: (image, blended stylemap or per-layer stylemaps).

    src, ref: stylemaps [N, C, S, S] (N = 1 broadcasts); mask [N, 1, R, R] in [0, 1] at the image
    resolution (check_mask); strength scales the pooled mask.
    """
    mask = check_mask(mask, generator.img_resolution).to(src.device)
    s = check_strength(strength)
    if not per_layer:
        code = blend(src, ref, resize_mask(mask, src.shape[-1], mode) * s)
        return generator(code), code
    layers = [blend(a, b, resize_mask(mask, a.shape[-1], mode) * s)
              for a, b in zip(generator.stylemaps(src), generator.stylemaps(ref))]
    return generator.synthesize(layers), layers


def transplant_mask(mask: torch.Tensor, size: int, resolution: int, dx: int, dy: int, mode: str = "avg",
                    threshold: float = 0.5) -> tuple[torch.Tensor, int, int]:
    """One layer's transplantation mask before the move, and the move in cells (cy, cx): the mask
    pooled to the layer ('avg' then > threshold, as the official demo; 'max' as it is) and
    round(d * size / R). Shared by transplant and edit_coverage, so the check sees what the edit does."""
    m = resize_mask(mask, size, mode)
    m = (m > threshold).float() if mode == "avg" else m
    return m, round(dy * size / resolution), round(dx * size / resolution)


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
               shift: tuple[int, int] = (0, 0), mode: str = "avg", threshold: float = 0.5,
               strength: float = 1.0) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Paste the reference's masked region into the source, moved by shift = (dx, dy) pixels.

    Every per-layer stylemap: the mask pooled to the layer ('avg' then > threshold, as the official
    demo), the reference's cells and the mask both moved by round(d * size / R) cells, then blended
    (the mask scaled by strength). With shift (0, 0) this is the per-layer local edit with a thresholded mask.
    """
    mask = check_mask(mask, generator.img_resolution).to(src.device)
    s = check_strength(strength)
    r = generator.img_resolution
    dx, dy = check_shift(shift, r)
    layers = []
    for a, b in zip(generator.stylemaps(src), generator.stylemaps(ref)):
        m, cy, cx = transplant_mask(mask, a.shape[-1], r, dx, dy, mode, threshold)
        layers.append(blend(a, _shift(b, cy, cx), _shift(m, cy, cx) * s))
    return generator.synthesize(layers), layers


def edit(generator: torch.nn.Module, src: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor,
         shift: tuple[int, int] | None = None, per_layer: bool = False, strength: float = 1.0) -> torch.Tensor:
    """The local edit the CLI and the app run: images [N, 3, R, R].

    No shift: `local_edit` (max-pooled mask, optionally per layer). A shift (even 0,0):
    `transplant`, which always blends per layer.
    """
    if shift is not None:
        return transplant(generator, src, ref, mask, shift=shift, strength=strength)[0]
    return local_edit(generator, src, ref, mask, per_layer=per_layer, strength=strength)[0]
