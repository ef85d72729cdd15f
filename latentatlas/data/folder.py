"""Training images from a folder, so users can train on their own data.

Images are read with Pillow, converted to RGB, centre-cropped to a square and resized to
the training resolution. Under torchrun each rank reads only its own shard of the files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from latentatlas.io.errors import UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
MAX_PIXELS = 64_000_000


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder of images")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"{folder}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def load_image(path: str | Path, resolution: int) -> torch.Tensor:
    """One image as [3, R, R] in [-1, 1]: RGB, centre crop, area resize."""
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            s = min(w, h)
            im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
            im = im.resize((resolution, resolution), Image.Resampling.BOX if s > resolution else Image.Resampling.BICUBIC)
            arr = np.asarray(im, dtype=np.float32)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise UserError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None
    return torch.from_numpy(arr).permute(2, 0, 1) / 127.5 - 1


class FolderImages:
    """Random batches from this rank's shard of a folder, cached in memory after first read."""

    def __init__(self, folder: str | Path, resolution: int, rank: int = 0, world: int = 1) -> None:
        files = list_images(folder)[rank::world]
        if not files:
            raise UserError(f"{folder}: fewer images than ranks ({world})")
        self.images = torch.stack([load_image(p, resolution) for p in files])

    def batch(self, n: int, generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(self.images), (n,), generator=generator)
        return self.images[idx]
