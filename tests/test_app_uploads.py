"""Upload checks of the web app, without a browser."""

from __future__ import annotations

import pytest
from PIL import Image

from latentatlas.app.uploads import UploadLimits, load_upload
from latentatlas.io.errors import UserError
from conftest import one_line_error


def test_upload_limits_refuse_before_decoding(tmp_path):
    limits = UploadLimits(max_bytes=1000, max_pixels=100 * 100)
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + b"\x00" * 5000)
    with pytest.raises(UserError, match=r"^big\.png: 0\.00477 MB is over the 0\.000954 MB upload limit$"):
        load_upload(big, 16, limits)  # 5004 bytes against 1000
    big.write_bytes(b"\x89PNG" + b"\x00" * (int(0.6 * 2**20) - 4))
    with pytest.raises(UserError, match=r"^big\.png: 0\.6 MB is over the 0\.5 MB upload limit$"):
        load_upload(big, 16, UploadLimits(max_bytes=int(0.5 * 2**20)))  # serve --max-upload-mb 0.5: not "0 MB"
    wide = tmp_path / "wide.png"
    Image.new("1", (400, 400)).save(wide)  # a few hundred bytes, 160k pixels
    with pytest.raises(UserError, match="400x400 is too large") as e:
        load_upload(wide, 16, UploadLimits(max_bytes=10**6, max_pixels=100 * 100))
    assert str(tmp_path) not in str(e.value)  # the page never shows server paths
    with pytest.raises(UserError, match="upload an image first"):
        load_upload(None, 16, limits)


def test_upload_converts_and_says_what_it_changed(tmp_path):
    rgba = tmp_path / "face.png"
    Image.new("RGBA", (40, 30), (200, 10, 10, 128)).save(rgba)
    image, notes = load_upload(rgba, 16, UploadLimits())
    assert image.shape == (1, 3, 16, 16) and image.min() >= -1 and image.max() <= 1
    assert any("RGBA" in n for n in notes) and any("centre-cropped" in n for n in notes) and any("resized" in n for n in notes)


def test_serve_refuses_bad_arguments_before_starting(run_cli, tmp_path):
    """--max-upload-mb nan passed the old `<= 0` test and ended in int()'s traceback."""
    code, _, err = run_cli("serve", tmp_path / "missing.safetensors")
    assert code == 2 and "no such file" in err
    for args, message in ((("--max-upload-mb", "0"), "--max-upload-mb 0: give a positive number of megabytes"),
                          (("--max-upload-mb", "nan"), "--max-upload-mb nan: give a positive number of megabytes"),
                          (("--max-pixels", "0"), "--max-pixels 0: use at least 1")):
        one_line_error(*run_cli("serve", "faces64", *args), message)
