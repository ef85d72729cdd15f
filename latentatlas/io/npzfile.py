"""Reading .npz files a user hands over (latent-code files, attribute scores) with one-line errors.

Why: np.load reads whatever it is given (a text file comes back as advice about allow_pickle),
and a small archive can unpack to gigabytes. Every .npz input is read here, so each kind of file
gets the same outcomes: no such file, not a readable .npz file, too large unpacked, or its arrays.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from latentatlas.io.errors import UserError

# Unpacked size an .npz input may have: w+ codes of about 29,000 images of a 1024 px model.
MAX_NPZ_BYTES = 2**30


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of the file, read into memory (never a pickle), or a UserError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):  # np.load would read other files as .npy or pickles and say so
        raise UserError(f"{path}: not a readable .npz file (it is not a zip archive of arrays)")
    with zipfile.ZipFile(path) as archive:  # a small upload can unpack to gigabytes: look first
        unpacked = sum(member.file_size for member in archive.infolist())
    if unpacked > MAX_NPZ_BYTES:
        raise UserError(f"{path}: unpacks to {unpacked / 2**20:.0f} MB, over the {MAX_NPZ_BYTES / 2**20:.0f} MB an .npz input may hold")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise UserError(f"{path}: not a readable .npz file ({e})") from None
