"""Training images from a folder, so users can train on their own data.

Images are read with io.images.read_image (RGB, centre crop, resize to the training
resolution). Under torchrun each rank reads only its own shard of the files.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path

import torch
from tqdm import tqdm

from latentatlas.io.errors import UserError
from latentatlas.io.images import list_images, read_image


def physical_memory() -> int | None:
    """Bytes of RAM on this machine, or None where the OS does not say (POSIX sysconf)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


class FolderImages:
    """Random batches from this rank's shard of a folder, held in memory as uint8 after the first read.

    uint8, not float: 70k images at 256 px are 14 GB so, and were 55 GB (twice that while
    stacking) as float32. A shard that would take more than half of the machine's memory is
    refused before reading, with the figure.
    """

    def __init__(self, folder: str | Path, resolution: int, rank: int = 0, world: int = 1, memory: int | None = None) -> None:
        folder = Path(folder)
        if not folder.is_dir():
            raise UserError(f"{folder}: not a folder of images")
        files = list_images([folder])[0][rank::world]
        if not files:
            raise UserError(f"{folder}: fewer images than processes ({world})")
        need = len(files) * 3 * resolution * resolution
        memory = physical_memory() if memory is None else memory
        if memory is not None and need > memory // 2:
            raise UserError(f"{folder}: {len(files):,} images at {resolution} px take {need / 2**30:.1f} GiB in memory, more than "
                            f"half of this machine's {memory / 2**30:.1f} GiB; train at a lower --resolution, on fewer images, or on more processes")
        self.images = torch.empty(len(files), 3, resolution, resolution, dtype=torch.uint8)
        changes: Counter[str] = Counter()
        for i, path in enumerate(tqdm(files, desc=f"reading {folder.name}", unit="image", disable=len(files) < 1000)):
            image, notes = read_image(path, resolution)
            changes.update(note.split(" ", 1)[0] for note in notes)  # "resized", "centre-cropped", "converted", ...
            self.images[i] = ((image + 1) * 127.5).round().to(torch.uint8)  # exact: read_image made it from 8 bits
        if changes:
            said = ", ".join(f"{n} {what}" for what, n in sorted(changes.items()))
            print(f"note: {folder}: of {len(files):,} images, {said} (read_image's changes)", file=sys.stderr)

    def batch(self, n: int, generator: torch.Generator, mirror: bool = False) -> torch.Tensor:
        """n images drawn with replacement, as float [-1, 1]; with `mirror`, each x-flipped with
        probability 1/2 (twice the data for subjects without a handedness, as faces)."""
        idx = torch.randint(len(self.images), (n,), generator=generator)
        images = self.images[idx].float() / 127.5 - 1
        if mirror:
            flip = torch.rand(n, generator=generator) < 0.5
            images[flip] = images[flip].flip(-1)
        return images
