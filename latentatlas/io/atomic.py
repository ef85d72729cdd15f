"""Atomic file writing: write a temporary file beside the target, then rename.

A killed process or a failed encoder never leaves a half-written file under the
user's chosen name.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from latentatlas.io.errors import UserError

# The process umask, read once at import. os.umask can only be read by setting it, and the
# web app writes files from several threads: setting it to 0 around each write let a file that
# another thread created in that moment come out world-writable. The probe value 0o077 is the
# strictest, so whatever is created during it comes out private, never more open than intended.
_UMASK = os.umask(0o077)
os.umask(_UMASK)


def state_path(out: str | Path) -> Path:
    """FILE.safetensors -> FILE.state.pt: the resumable state (optimiser, step, ...) kept beside the
    one-file output of a run that resumes (train-predictor, directions warped train)."""
    if not Path(out).name:  # '.', '..' or '/': a folder, and with_suffix would raise
        raise UserError(f"{out}: is a folder, not a file: give a file for --out, e.g. run.safetensors")
    return Path(out).with_suffix(".state.pt")


def check_writable(path: Path, force: bool) -> None:
    """Refuse to overwrite an existing file unless asked (--force)."""
    if path.exists() and not force:
        raise UserError(f"{path} already exists: choose another name or pass --force to overwrite it")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it is renamed over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | os.PathLike[str], obj: object, indent: int | None = 1) -> None:
    """`obj` as JSON (and a final newline) at `path`, atomically: results files are read by other tools mid-run."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent) + "\n")
