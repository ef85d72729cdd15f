"""Reading .npz files a user hands over (latent-code files, attribute scores) with one-line errors.

Why: np.load reads whatever it is given (a text file comes back as advice about allow_pickle),
and a small archive can unpack to gigabytes. Every .npz input is read here, so each kind of file
gets the same outcomes: no such file, not a readable .npz file, too large unpacked, or its arrays.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from latentatlas.io.errors import UserError, require_file

# Unpacked size an .npz input may have: w+ codes of about 29,000 images of a 1024 px model.
MAX_NPZ_BYTES = 2**30

_NPY_HEADER_READERS = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}


def read_npz(path: str | Path, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """Every array of the file, read into memory (never a pickle), or a UserError naming the file.

    `max_bytes` (default MAX_NPZ_BYTES) caps the unpacked size: the web app passes a limit tied to
    its upload limit, a command-line user's own files get the default.
    """
    limit = MAX_NPZ_BYTES if max_bytes is None else max_bytes
    path = Path(path)
    require_file(path)
    if not zipfile.is_zipfile(path):  # np.load would read other files as .npy or pickles and say so
        raise UserError(f"{path}: not a readable .npz file (it is not a zip archive of arrays)")
    try:
        with zipfile.ZipFile(path) as archive:  # a small upload can unpack to gigabytes: look first
            unpacked = sum(member.file_size for member in archive.infolist())
            if unpacked > limit:
                raise UserError(f"{path}: unpacks to {unpacked / 2**20:.0f} MB, over the {limit / 2**20:.0f} MB an .npz input may hold")
            for member in archive.infolist():
                _check_array_header(archive, member)
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError) as e:
        raise UserError(f"{path}: not a readable .npz file ({e})") from None


def _check_array_header(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> None:
    """Refuse an array whose header claims more data than its member holds.

    Why: np.load allocates the whole array the header describes before reading a byte of it, so a
    header of shape (2**20, 2**20) in a 200-byte archive fails with numpy's MemoryError (a traceback),
    and a smaller claim still reserves memory the file never fills. The zip's own sizes are checked
    against the limit first, so an array that fits its member fits the limit too.
    """
    with archive.open(member) as f:
        if f.read(len(npy_format.MAGIC_PREFIX)) != npy_format.MAGIC_PREFIX:
            return  # not an array: np.load returns the member's bytes, which the unpacked size bounds
        f.seek(0)
        version = npy_format.read_magic(f)
        reader = _NPY_HEADER_READERS.get(version)
        if reader is None:
            raise ValueError(f"array {member.filename} has .npy format version {version[0]}.{version[1]}, which is not read here")
        shape, _, dtype = reader(f)
    claimed = math.prod(shape) * dtype.itemsize
    if claimed > member.file_size:
        raise ValueError(f"array {member.filename} claims shape {list(shape)} of {dtype} ({claimed:,} bytes) "
                         f"but holds {member.file_size:,} bytes; the file is damaged or crafted")
