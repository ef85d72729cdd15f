"""Images on disk: PNG/JPEG files, grids, GIF and MP4 animations, all written atomically.

Inside the library images are float NCHW tensors in [-1, 1]; conversion to 8 bits uses
the official rule uint8 = clamp(x * 127.5 + 128, 0, 255).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from latentatlas.io.atomic import atomic_path
from latentatlas.io.errors import UserError, require_file


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] in [-1, 1] -> [N, H, W, C] uint8 (C = 1 squeezed to grey by callers)."""
    x = (images.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def make_grid(images: torch.Tensor, cols: int | None = None, pad: int = 0) -> np.ndarray:
    """Tile N images into one uint8 array [H', W', C]; rows filled left to right."""
    arr = to_uint8(images)
    n, h, w, c = arr.shape
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    grid = np.full((rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad, c), 255, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, cols)
        grid[r * (h + pad) : r * (h + pad) + h, col * (w + pad) : col * (w + pad) + w] = arr[i]
    return grid


def _pil(array: np.ndarray) -> Image.Image:
    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)


def image_format(path: str | Path) -> str:
    """Pillow's format for an output image's suffix (PNG or JPEG), else one line: a command whose
    output file the user names calls it before its work, so a wrong suffix costs nothing."""
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(Path(path).suffix.lower())
    if fmt is None:
        raise UserError(f"{path}: unsupported image suffix; use .png or .jpg")
    return fmt


def save_image(path: str | Path, array: np.ndarray) -> Path:
    """Write one uint8 [H, W, C] array as PNG/JPEG (format from the suffix)."""
    path = Path(path)
    fmt = image_format(path)
    with atomic_path(path) as tmp:
        _pil(array).save(tmp, format=fmt)
    return path


def side_by_side(images: torch.Tensor) -> torch.Tensor:
    """N images [N, C, H, W] as one wide image [C, H, N*W]: one frame of several animations."""
    return images.permute(1, 2, 0, 3).reshape(images.shape[1], images.shape[2], -1)


def save_animation(path: str | Path, frames: torch.Tensor | np.ndarray, fps: int = 12) -> Path:
    """Write frames [T, C, H, W] in [-1, 1], or uint8 frames [T, H, W, C] as they are shown (the
    app's, without a float copy four times their size), as an animated GIF or an MP4 (H.264 via
    imageio-ffmpeg)."""
    import imageio.v3 as iio

    path = Path(path)
    if isinstance(frames, np.ndarray):
        if frames.dtype != np.uint8 or frames.ndim != 4:
            raise UserError(f"animation frames as an array must be uint8 [T, H, W, C], got {frames.dtype} {list(frames.shape)}")
        arr = frames
    else:
        arr = to_uint8(frames)
    suffix = path.suffix.lower()
    with atomic_path(path) as tmp:
        if suffix == ".gif":
            iio.imwrite(tmp, arr if arr.shape[-1] != 1 else arr[..., 0], extension=".gif", duration=1000 / fps, loop=0)
        elif suffix == ".mp4":
            if arr.shape[-1] == 1:
                arr = np.repeat(arr, 3, axis=-1)
            # H.264 with yuv420p needs even sizes; pad with edge pixels when odd.
            h, w = arr.shape[1:3]
            arr = np.pad(arr, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            # ffmpeg's own lines stay quiet: its failures are told below, in one line.
            iio.imwrite(tmp, arr, plugin="FFMPEG", extension=".mp4", fps=fps, codec="libx264", macro_block_size=1,
                        ffmpeg_log_level="quiet")
            check_video(tmp, len(arr), path)
        else:
            raise UserError(f"{path}: unsupported animation suffix; use .gif or .mp4")
    return path


def check_video(written: Path, frames: int, path: Path) -> None:
    """The MP4 ffmpeg wrote holds every frame, or one UserError. imageio-ffmpeg does not read
    ffmpeg's exit status, so a disk that filled while ffmpeg wrote left a cut MP4 (4 KB of 6,
    no index) that was renamed into place without a word. Counting the frames back costs a
    decode, 36 ms for 24 frames of 64 x 128."""
    import imageio_ffmpeg

    try:
        counted, _ = imageio_ffmpeg.count_frames_and_secs(str(written))
    except (RuntimeError, OSError):
        counted = 0
    if counted != frames:
        raise UserError(f"{path}: the MP4 came out incomplete ({counted} of {frames} frames readable): "
                        "if the disk is full, free some space or write elsewhere")


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
# The decoders for those suffixes, and no others: Pillow picks a decoder by content, so an EPS file
# named .png would otherwise go to Ghostscript, and a web upload can be named anything.
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF")
HIGH_DEPTH_GREY = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")  # Pillow's 16- and 32-bit one-band modes
MAX_PIXELS = 64_000_000  # refuse decompression bombs before decoding
Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow's own guard (it raises at twice this), for decoders outside open_image


@contextmanager
def open_image(path: Path, max_pixels: int = MAX_PIXELS) -> Iterator[Image.Image]:
    """An image file opened for reading, or one UserError line that says what is wrong with it.

    The pixel count is read from the header and checked before anything is decoded: a 20000 x
    20000 PNG is a few hundred kilobytes on disk but gigabytes once decoded. Errors that come up
    while the caller decodes inside the block (a truncated file) are reported the same way.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused just below, in one line
            opened = Image.open(path, formats=IMAGE_FORMATS)
        with opened as im:
            if im.width * im.height > max_pixels:
                raise UserError(f"{path.name}: {im.width}x{im.height} is too large (limit {max_pixels:,} pixels)")
            yield im
    except UserError:
        raise
    except Image.DecompressionBombError:
        raise UserError(f"{path.name}: the image is too large (limit {max_pixels:,} pixels)") from None
    except UnidentifiedImageError:
        raise UserError(f"{path}: not a PNG, JPEG, WebP, BMP or TIFF image; convert it to one of these") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise UserError(f"{path}: not a readable image ({type(e).__name__}); is the file complete?") from None


def grey_levels(im: Image.Image, name: str) -> tuple[np.ndarray, list[str]]:
    """A one-band 16- or 32-bit image (HIGH_DEPTH_GREY) as float32 [H, W] in [0, 1], plus notes.

    Each mode by its own white: 16-bit (I;16, a 16-bit PNG or TIFF) by 1/65535, where Pillow's
    convert() clips at 255, so every value above 255 of 65535 became white. 32-bit modes have no
    white of their own: float (F) values are taken as they are and must lie in [0, 1]; integer
    (I) values are read as 16-bit when they fit, said in a note, and refused otherwise.
    """
    arr = np.asarray(im)
    if im.mode.startswith("I;16"):
        return arr.astype(np.float32) / 65535, []
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if im.mode == "F":
        if not np.isfinite(arr).all() or lo < 0 or hi > 1:
            raise UserError(f"{name}: float values must lie in [0, 1], got {lo:g} to {hi:g}; save it as 8-bit grey")
        return arr.astype(np.float32), []
    if lo < 0 or hi > 65535:
        raise UserError(f"{name}: 32-bit integer values {lo:g} to {hi:g} have no white; save it as 8-bit or 16-bit grey")
    return arr.astype(np.float32) / 65535, [f"{name}: 32-bit integer grey read as 16-bit (65535 = white)"]


def transparent_alpha(im: Image.Image) -> Image.Image | None:
    """The alpha band ('L' or premultiplied 'a') of an image with transparency data, an alpha band
    or a palette, grey or RGB transparency key, that is not fully opaque; else None. The image
    reader composites such an image over white, the mask reader takes its alpha as the mask."""
    if not im.has_transparency_data:
        return None
    last = im.getbands()[-1]
    alpha = im.getchannel(last) if last in ("A", "a") else im.convert("RGBA").getchannel("A")
    return alpha if alpha.getextrema()[0] < 255 else None


def to_rgb(im: Image.Image, notes: list[str], name: str = "the image") -> Image.Image:
    """Any decoded image as 8-bit RGB, upright, with a note for each change.

    Pillow's convert() would clip 16-bit grey to 255 (a white picture) and drop alpha, leaving
    whatever colour lies under transparent pixels; a camera JPEG's EXIF orientation would be
    ignored and the face projected on its side.
    """
    if im.getexif().get(ExifTags.Base.Orientation, 1) != 1:
        notes.append("turned upright as its EXIF orientation says")
        im = ImageOps.exif_transpose(im)
    if im.mode in HIGH_DEPTH_GREY:
        arr, more = grey_levels(im, name)
        notes += [f"scaled {im.mode} grey to 8 bits", *more]
        im = Image.fromarray(np.rint(arr * 255).astype(np.uint8), "L")
    if transparent_alpha(im) is not None:
        notes.append(f"composited {im.mode} over white (transparent pixels become white)")
        im = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im.convert("RGBA")).convert("RGB")
    if im.mode != "RGB":
        notes.append(f"converted {im.mode} to RGB")
        im = im.convert("RGB")
    return im


def read_image(path: str | Path, resolution: int, max_pixels: int = MAX_PIXELS) -> tuple[torch.Tensor, list[str]]:
    """One image as [3, R, R] in [-1, 1] plus notes on what was changed to get there.

    Grey, 16-bit, palette and transparent images become 8-bit RGB (to_rgb), EXIF-rotated photos are
    turned upright, non-square ones centre-cropped, and the result resized to `resolution` (area
    filter down, bicubic up); each change is noted so the caller can warn. Unreadable, truncated,
    oversized or non-image files raise UserError.
    """
    path = Path(path)
    require_file(path)
    notes: list[str] = []
    with open_image(path, max_pixels) as im:
        im.load()
        im = to_rgb(im, notes, path.name)
        w, h = im.size
        if w != h:
            s = min(w, h)
            notes.append(f"centre-cropped {w}x{h} to {s}x{s}")
            im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
        if im.width != resolution:
            notes.append(f"resized {im.width} px to {resolution} px")
            filt = Image.Resampling.BOX if im.width > resolution else Image.Resampling.BICUBIC
            im = im.resize((resolution, resolution), filt)
        arr = np.asarray(im, dtype=np.float32)
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous() / 127.5 - 1, notes


def list_images(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """Expand folders into their image files (sorted); returns (images, skipped non-images)."""
    images, skipped = [], []
    for p in paths:
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file():
                    (images if f.suffix.lower() in IMAGE_SUFFIXES else skipped).append(f)
        elif not p.exists():
            raise UserError(f"{p}: no such file or folder")
        else:
            images.append(p)
    if not images:
        raise UserError(f"no images found in {', '.join(map(str, paths))} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return images, skipped
