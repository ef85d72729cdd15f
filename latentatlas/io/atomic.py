"""Atomic file writing: write a temporary file beside the target, then rename.

A killed process or a failed encoder never leaves a half-written file under the
user's chosen name.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from safetensors import SafetensorError

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


def check_writable(path: Path, force: bool, advice: str | None = None) -> None:
    """Refuse to overwrite an existing file unless asked (--force); `advice` says what to do instead
    (by default: another name, or --force)."""
    if path.exists() and not force:
        raise UserError(f"{path} already exists: {advice or 'choose another name or pass --force to overwrite it'}")


# The errors of a write that the user can fix (a folder they may not write to, a full or read-only
# disk), with what to do about each; any other OSError is a bug and keeps its traceback.
_WRITE_ERRNOS = {
    errno.EACCES: "choose a folder you may write to",
    errno.EPERM: "choose a folder you may write to",
    errno.EROFS: "choose a folder on a writable disk",
    errno.ENOSPC: "free some space or write elsewhere",
    errno.EDQUOT: "free some space or write elsewhere",
    errno.EFBIG: "write to a disk that takes larger files, or make a smaller one",  # FAT32's 4 GiB, a ulimit -f
}


def write_error(e: OSError, path: Path, *mine: Path | None, any_name: bool = False,
                said: str = "cannot write it", other: str | None = None) -> UserError | None:
    """One line naming `path` for a write that failed with one of _WRITE_ERRNOS, else None (the
    error keeps its traceback). An error that names a file other than `path`, its folders or
    `mine` (the temporary file) is about something else, say a program the encoder runs; unless
    `any_name`, for a step whose every file is ours (making the temporary file, whose random name
    the error carries). `other` is the advice for an errno outside _WRITE_ERRNOS that the caller
    knows to be the place's fault (a trial file in the folder: _FOLDER_ERRNOS)."""
    advice = _WRITE_ERRNOS.get(e.errno, other)  # type: ignore[arg-type]
    if advice is None:
        return None
    if not any_name and e.filename is not None and Path(os.fsdecode(e.filename)) not in {path, *path.parents, *(m for m in mine if m)}:
        return None
    return UserError(f"{path}: {said} ({e.strerror or e}): {advice}")


# What a writer library that does not raise OSError says of a failed write. safetensors (Rust)
# raises SafetensorError ending in Rust's "(os error 28)". torch.save raises RuntimeError and loses
# the errno; these are its writers' own words (torch 2.13, on a full disk or past RLIMIT_FSIZE):
# the zip writer's "unexpected pos N vs M" at the record after a short write, or miniz's "file
# write failed" in "PytorchStreamWriter failed writing file ...", the file stream's "basic_ios::clear:
# iostream error" when a small file fails at its flush, and the legacy format's "write(): fd N failed
# with <strerror>".
_OS_ERROR_NUMBER = re.compile(r"\(os error (\d+)\)")
_TORCH_WRITE_FAILURE = ("unexpected pos ", "file write failed", "PytorchStreamWriter failed", "basic_ios::clear: iostream error",
                        "write(): fd ")


def _reported_os_error(e: Exception) -> OSError | None:
    """The OSError a writer library's SafetensorError, or torch.save's RuntimeError, reports, for
    write_error to judge as it judges a raised one; None for any other error (a bug: it keeps its
    traceback).

    A RuntimeError counts only in the words of torch.save's writers (_TORCH_WRITE_FAILURE): the
    block of atomic_path does other work too (a trainer builds the state it saves there), and a
    RuntimeError of that work whose text held, say, "Permission denied" was judged by that text
    and became "cannot write it", its traceback lost."""
    text = str(e)
    if isinstance(e, RuntimeError) and not any(s in text for s in _TORCH_WRITE_FAILURE):
        return None
    if m := _OS_ERROR_NUMBER.search(text):
        number = int(m.group(1))
        return OSError(number, os.strerror(number))
    for number in _WRITE_ERRNOS:  # the errno's own text, e.g. "No space left on device"
        if os.strerror(number) in text:
            return OSError(number, os.strerror(number))
    if isinstance(e, RuntimeError) and "write(): fd " not in text:  # a short write, which is what a full disk gives
        return OSError(errno.ENOSPC, "the disk took only part of it")
    return None  # the legacy writer's errno text outside _WRITE_ERRNOS (EIO: a failing disk) keeps its traceback


# The errnos of a trial file in a folder that the user fixes by choosing another folder (one that
# exists, is a folder, takes files, has room). Any other (EMFILE: this process has too many files
# open; EIO: a failing disk) is not the folder's to fix and keeps its own words and traceback.
_FOLDER_ERRNOS = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.EINVAL, errno.ENAMETOOLONG, errno.ELOOP,
                  errno.EOPNOTSUPP, *_WRITE_ERRNOS}


def check_folder_writable(folder: Path) -> None:
    """The nearest existing folder at or above `folder` takes a new file, tried with a file made and
    removed at once (os.access says yes to root even on a read-only or immutable folder): a command
    learns before its work, not in a traceback after it, that its outputs cannot be written."""
    existing = next((p for p in (folder, *folder.parents) if p.is_dir()), None)
    if existing is None:
        return
    try:
        # An unnamed file where the system makes one (O_TMPFILE), so no trial file can be left in
        # the user's folder, even one where files can be made but not removed (append-only, some
        # network shares).
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        # Not only _WRITE_ERRNOS: the trial file is ours and empty, so an errno of the folder is the
        # folder's fault (/proc gave ENOENT for it, a traceback); _FOLDER_ERRNOS.
        err = write_error(e, existing, any_name=True, said="cannot write files there",
                          other="choose another folder" if e.errno in _FOLDER_ERRNOS else None)
        if err is None:
            raise
        raise err from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it is renamed over `path`.

    A write the user can fix (no permission, a read-only or full disk: write_error), in making the
    folder, the temporary file, or inside the block, becomes one UserError that names `path`; the
    temporary file is removed and an older file at `path` stays as it was. That holds too for the
    writers that report such a failure in their own exception (safetensors, torch.save:
    _reported_os_error): a full disk mid-write was their traceback."""
    path = Path(path)
    tmp_path: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    except OSError as e:  # it names a folder of `path` or the random temporary name, both ours
        err = write_error(e, path, any_name=True)
        if err is None:
            raise
        raise err from None
    try:
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, path)
    except OSError as e:
        err = write_error(e, path, tmp_path)
        if err is None:
            raise
        raise err from None
    except (SafetensorError, RuntimeError) as e:  # how safetensors and torch.save report a failed write
        reported = _reported_os_error(e)
        err = None if reported is None else write_error(reported, path)
        if err is None:
            raise
        raise err from None
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | os.PathLike[str], obj: object, indent: int | None = 1) -> None:
    """`obj` as JSON (and a final newline) at `path`, atomically: results files are read by other tools mid-run."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent) + "\n")
