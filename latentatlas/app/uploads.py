"""Checks on files that web users upload, before anything decodes them.

The server caps the request size too (Gradio's max_file_size); this is the second line: the
byte size on disk, then the pixel count read from the header (a 20000 x 20000 PNG is a few
hundred kilobytes but gigabytes once decoded), then decoding with the library's own reader.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import torch

from latentatlas.io.errors import UserError
from latentatlas.io.images import read_image


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int = 10 * 2**20
    max_pixels: int = 4096 * 4096

    @property
    def max_npz_bytes(self) -> int:
        """Unpacked size an uploaded .npz code may have: ten times the upload limit (a code
        compresses little; a zip bomb within the upload limit unpacks far more), instead of the
        command line's 1 GB for a user's own files."""
        return 10 * self.max_bytes


def megabytes(n_bytes: int | float) -> str:
    """A byte count in MB as a plain number, for the upload message and the page's labels:
    `serve --max-upload-mb 0.5` is "0.5" (not "0", as `// 2**20` made it), 1024 is "1024" (not
    "1.02e+03", as `.3g` made it); three significant figures below 100, whole megabytes above."""
    mb = n_bytes / 2**20
    return f"{mb:.0f}" if mb >= 100 else f"{Decimal(f'{mb:.3g}'):f}"


def upload_stat(path: str | Path) -> os.stat_result:
    """The upload's stat, or a UserError when the server has removed it (Gradio's cache keeps
    uploads one to two hours, `server.CACHE_AGE_S`) and the page still names it."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        raise UserError(f"{Path(path).name} is no longer on the server (uploads are kept one to two hours): upload it again") from None


def load_upload(path: str | Path | None, resolution: int, limits: UploadLimits) -> tuple[torch.Tensor, list[str]]:
    """An uploaded image as [1, 3, R, R] in [-1, 1] and notes on the conversions made."""
    if path is None:
        raise UserError("upload an image first")
    path = Path(path)
    size = upload_stat(path).st_size
    if size > limits.max_bytes:
        raise UserError(f"{path.name}: {megabytes(size)} MB is over the {megabytes(limits.max_bytes)} MB upload limit")
    try:
        image, notes = read_image(path, resolution, max_pixels=limits.max_pixels)
    except UserError as e:  # name the file as the user knows it, not the server's temp path
        raise UserError(str(e).replace(str(path), path.name)) from None
    return image.unsqueeze(0), notes
