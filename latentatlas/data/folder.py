"""Training images from a folder, so users can train on their own data.

Images are read with io.images.read_image (RGB, centre crop, resize to the training
resolution). Under torchrun each rank reads only its own shard of the files.
"""

from __future__ import annotations

from pathlib import Path

import torch

from latentatlas.io.errors import UserError
from latentatlas.io.images import list_images, read_image


class FolderImages:
    """Random batches from this rank's shard of a folder, held in memory after the first read."""

    def __init__(self, folder: str | Path, resolution: int, rank: int = 0, world: int = 1) -> None:
        folder = Path(folder)
        if not folder.is_dir():
            raise UserError(f"{folder}: not a folder of images")
        files = list_images([folder])[0][rank::world]
        if not files:
            raise UserError(f"{folder}: fewer images than processes ({world})")
        self.images = torch.stack([read_image(p, resolution)[0] for p in files])

    def batch(self, n: int, generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(self.images), (n,), generator=generator)
        return self.images[idx]
