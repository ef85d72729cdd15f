"""Atomic writes: a failed write keeps the old file and leaves no temp file behind."""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path

import pytest

from latentatlas.io.atomic import atomic_path, write_json


def test_write_json_replaces_whole_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "result.json"
    write_json(target, {"a": [1, 2]})
    write_json(target, {"b": 3}, indent=None)
    assert target.read_text() == '{"b": 3}\n'
    assert json.loads(target.read_text()) == {"b": 3}
    assert [p.name for p in target.parent.iterdir()] == ["result.json"]


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    write_json(target, {"old": True})
    with pytest.raises(TypeError):
        write_json(target, {"bad": object()})  # not JSON-serialisable: the encoder fails inside the write
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_a_write_leaves_the_process_umask_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The web app writes from several threads: setting the umask to 0 to read it, as each write
    once did, let a file another thread created in that moment come out world-writable."""
    import os

    umask = os.umask(0o077)  # the test's own reading, before os.umask is replaced
    os.umask(umask)

    def no_umask(mask: int) -> int:
        raise AssertionError("atomic_path changed the process umask")

    monkeypatch.setattr(os, "umask", no_umask)
    write_json(tmp_path / "r.json", {"a": 1})
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_write_the_user_can_fix_is_one_line_naming_the_file(tmp_path: Path) -> None:
    """A read-only disk, a full one or a folder without permission: one UserError naming the target,
    the old file kept, no temporary file left. Other OSErrors (or ones about another file) keep their type."""
    import errno

    from latentatlas.io.errors import UserError

    target = tmp_path / "result.json"
    write_json(target, {"old": True})
    with pytest.raises(UserError, match=r"result.json: cannot write it \(Read-only file system\): choose a folder on a writable disk"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise OSError(errno.EROFS, "Read-only file system")
    with pytest.raises(PermissionError):  # about a program the encoder runs, not the file written
        with atomic_path(target):
            raise PermissionError(errno.EACCES, "Permission denied", "/usr/bin/ffmpeg")
    with pytest.raises(OSError, match="cannot identify"):
        with atomic_path(target):
            raise OSError("cannot identify image file")
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_a_temporary_file_that_cannot_be_made_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """mkstemp's error names the random temporary file it tried: still ours, so still one line (a
    disk that turns read-only or fills during a long run, or a command that checks no folder first)."""
    import errno

    from latentatlas.io.errors import UserError

    real_open = os.open

    def read_only(name, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system", name)
        return real_open(name, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(UserError, match=r"x\.png: cannot write it \(Read-only file system\)"):
        with atomic_path(tmp_path / "x.png"):
            pass
    assert list(tmp_path.iterdir()) == []


def test_the_folder_check_leaves_no_file_even_where_files_cannot_be_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An append-only folder or a share that lets files be made but not removed: the trial file
    must not stay behind in the user's folder, and the folder passes (it takes files)."""
    from latentatlas.io.atomic import check_folder_writable

    def no_unlink(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "unlink", no_unlink)
    check_folder_writable(tmp_path / "new" / "deeper")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("raised,reason,advice", [
    # What safetensors 0.8 raised on a 1 MiB tmpfs (a Rust io::Error, errno in its text).
    ("SafetensorError: Error while serializing: I/O error: No space left on device (os error 28)",
     "No space left on device", "free some space or write elsewhere"),
    ("SafetensorError: Error while serializing: I/O error: Read-only file system (os error 30)",
     "Read-only file system", "choose a folder on a writable disk"),
    # What torch.save raised where writes were cut short (RLIMIT_FSIZE): its zip writer loses the errno.
    ("RuntimeError: [enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598",
     "the disk took only part of it", "free some space or write elsewhere"),
    ("RuntimeError: PytorchStreamWriter failed writing file data/0: file write failed",
     "the disk took only part of it", "free some space or write elsewhere"),
    ("RuntimeError: basic_ios::clear: iostream error", "the disk took only part of it", "free some space or write elsewhere"),
    # torch.save's legacy format (RLIMIT_FSIZE gave "File too large"): the errno's own text.
    ("RuntimeError: write(): fd 3 failed with Disk quota exceeded", "Disk quota exceeded", "free some space or write elsewhere"),
    ("RuntimeError: write(): fd 3 failed with File too large", "File too large", "write to a disk that takes larger files, or make a smaller one"),
    ("SafetensorError: Error while serializing: I/O error: File too large (os error 27)",
     "File too large", "write to a disk that takes larger files, or make a smaller one"),
])
def test_a_writer_library_that_reports_a_full_disk_its_own_way_is_one_line(tmp_path: Path, raised: str, reason: str,
                                                                           advice: str) -> None:
    """safetensors raises SafetensorError and torch.save RuntimeError, not OSError, for a full or
    read-only disk: `convert`, `stats` and `directions pca` gave their traceback. They become the
    OSError's one line naming the file; the old file stays, no temporary file is left."""
    from safetensors import SafetensorError

    from latentatlas.io.errors import UserError

    kind, _, text = raised.partition(": ")
    error = SafetensorError(text) if kind == "SafetensorError" else RuntimeError(text)
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"old")

    def failing_writer(path: Path) -> None:  # as the libraries do: part of the file, then the error
        path.write_bytes(b"half a file")
        raise error

    with pytest.raises(UserError) as caught:
        with atomic_path(target) as tmp:
            failing_writer(tmp)
    assert str(caught.value) == f"{target}: cannot write it ({reason}): {advice}"
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_a_writer_library_error_that_is_no_write_failure_keeps_its_traceback(tmp_path: Path) -> None:
    """Only a failed write is the user's to fix: any other RuntimeError or SafetensorError in the
    block (a bug, say a tensor that is not contiguous) keeps its type, an errno outside the ones a
    user can fix (EIO: a failing disk) too; no temporary file is left either way."""
    from safetensors import SafetensorError

    for error in (RuntimeError("stack expects a non-empty TensorList"), SafetensorError("You are trying to save a non contiguous tensor"),
                  SafetensorError("Error while serializing: I/O error: Input/output error (os error 5)"),
                  RuntimeError("write(): fd 3 failed with Input/output error")):  # torch's legacy writer on a failing disk
        with pytest.raises(type(error), match=re.escape(str(error)[:20])):
            with atomic_path(tmp_path / "x.safetensors") as tmp:
                tmp.write_bytes(b"half")
                raise error
    assert list(tmp_path.iterdir()) == []


def test_a_runtime_error_in_the_block_is_a_write_failure_only_in_torch_save_s_words(tmp_path: Path) -> None:
    """The block does more than write (a trainer builds the state it saves there): a RuntimeError
    of that work was judged by its text, so one that held "Permission denied" or "No space left on
    device" (PyTorch's shared memory, say) became "cannot write it" and lost its traceback."""
    for error in (RuntimeError("unable to open shared memory object </torch_1_2> in read-write mode: Permission denied (13)"),
                  RuntimeError("unable to write to file </torch_1_2>: No space left on device (28)"),
                  RuntimeError("Read-only file system (os error 30)")):
        with pytest.raises(type(error), match=str(error)[:20]):
            with atomic_path(tmp_path / "x.safetensors") as tmp:
                tmp.write_bytes(b"half")
                raise error
    assert list(tmp_path.iterdir()) == []


def test_a_folder_whose_trial_file_fails_with_any_errno_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """/proc takes no file either, but says ENOENT for the trial file, not one of the errnos a
    write in a folder the user may write to gives: that was a FileNotFoundError traceback."""
    import errno
    import tempfile

    from latentatlas.io.atomic import check_folder_writable
    from latentatlas.io.errors import UserError

    def no_file_here(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(tmp_path / "tmpabc123"))

    monkeypatch.setattr(tempfile, "TemporaryFile", no_file_here)
    with pytest.raises(UserError) as caught:
        check_folder_writable(tmp_path / "new" / "x")
    assert str(caught.value) == f"{tmp_path}: cannot write files there (No such file or directory): choose another folder"
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    if Path("/proc/self").is_dir():  # the real one, where there is one
        with pytest.raises(UserError, match=r"^/proc: cannot write files there \(.*\): choose"):
            check_folder_writable(Path("/proc"))


def test_torch_save_s_own_words_for_a_short_write_are_one_line(tmp_path: Path) -> None:
    """What torch.save really raises when the file may grow no further (RLIMIT_FSIZE stands in for a
    full disk): a small state fails at the stream's flush, a larger one at its next record. In a
    child process, so the limit binds no other test."""
    import subprocess
    import sys

    pytest.importorskip("resource")  # POSIX only
    script = f"""
import resource, signal, sys, torch
from latentatlas.io.atomic import atomic_path
from latentatlas.io.errors import UserError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (300, 300))
for n in (4, 100000):
    try:
        with atomic_path({str(tmp_path)!r} + f"/state{{n}}.pt") as tmp:
            torch.save({{"w": torch.zeros(n)}}, tmp)
    except UserError as e:
        print(e)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert done.stdout.splitlines() == [f"{tmp_path}/state{n}.pt: cannot write it (the disk took only part of it): free some space "
                                        "or write elsewhere" for n in (4, 100000)]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("number, one_line", [
    (errno.ENOENT, True), (errno.EEXIST, True), (errno.EINVAL, True), (errno.EACCES, True),
    (errno.EMFILE, False), (errno.ENFILE, False), (errno.EIO, False),
])
def test_a_trial_file_error_that_no_other_folder_fixes_says_what_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      number: int, one_line: bool) -> None:
    """Any errno of the trial file was "cannot write files there (...): choose another folder", also
    too many open files (EMFILE, ENFILE) or a failing disk (EIO), which no other folder fixes: those
    keep their own words and traceback."""
    import tempfile

    from latentatlas.io.atomic import check_folder_writable
    from latentatlas.io.errors import UserError

    def fails(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(number, os.strerror(number))

    monkeypatch.setattr(tempfile, "TemporaryFile", fails)
    if one_line:
        with pytest.raises(UserError) as caught:
            check_folder_writable(tmp_path)
        assert str(caught.value).startswith(f"{tmp_path}: cannot write files there ({os.strerror(number)}): ")
    else:
        with pytest.raises(OSError) as raised:
            check_folder_writable(tmp_path)
        assert type(raised.value) is not UserError and raised.value.errno == number
        assert os.strerror(number) in str(raised.value) and "choose another folder" not in str(raised.value)


def test_an_mp4_that_ffmpeg_cut_short_is_refused_and_not_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """imageio-ffmpeg does not read ffmpeg's exit status: on a disk that filled while ffmpeg wrote
    (a 252 KiB tmpfs under `interpolate`), a cut MP4 was renamed into place without a word."""
    import imageio.v3 as iio
    import torch

    from latentatlas.io.errors import UserError
    from latentatlas.io.images import save_animation

    frames = torch.rand(6, 3, 16, 16) * 2 - 1
    save_animation(tmp_path / "whole.mp4", frames)  # a whole one passes the count
    real = iio.imwrite

    def cut_short(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        real(path, *args, **kwargs)
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[: len(data) // 2])

    monkeypatch.setattr(iio, "imwrite", cut_short)
    with pytest.raises(UserError, match=r"cut.mp4: the MP4 came out incomplete \(\d of 6 frames readable\): if the disk is full"):
        save_animation(tmp_path / "cut.mp4", frames)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["whole.mp4"]
