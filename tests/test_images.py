"""Reading users' images: what Pillow's plain convert("RGB") would get wrong, and files that are no image."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from latentatlas.io.errors import UserError
from latentatlas.io.images import read_image


def _pixels(t):
    """[3, R, R] in [-1, 1] back to 0..255 floats, [R, R, 3]."""
    return ((t.permute(1, 2, 0) + 1) * 127.5).numpy()


def test_16_bit_grey_is_scaled_not_clipped_to_white(tmp_path):
    ramp = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    path = tmp_path / "ramp16.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    img, notes = read_image(path, 32)
    px = _pixels(img)
    assert any("grey to 8 bits" in n for n in notes), notes
    expected = ramp.astype(np.float64) * 255 / 65535
    assert np.abs(px[..., 0] - expected).max() <= 1.0  # convert("RGB") gave 255 for 99 % of pixels
    assert np.allclose(px[..., 0], px[..., 2])


def test_transparent_pixels_become_white_not_the_colour_stored_under_them(tmp_path):
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0] = 200  # red everywhere, but the right half fully transparent
    rgba[:, :8, 3] = 255
    path = tmp_path / "cutout.png"
    Image.fromarray(rgba, "RGBA").save(path)
    img, notes = read_image(path, 16)
    px = _pixels(img)
    assert any("composited RGBA over white" in n for n in notes), notes
    assert np.allclose(px[:, :8], [200, 0, 0], atol=1) and np.allclose(px[:, 8:], 255, atol=1)


def test_exif_orientation_turns_a_camera_photo_upright(tmp_path):
    stored = np.zeros((8, 16, 3), np.uint8)  # stored landscape: left half dark, right half bright
    stored[:, 8:] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=100)
    img, notes = read_image(path, 16)
    px = _pixels(img).mean(axis=2)
    assert "turned upright as its EXIF orientation says" in notes
    # Shown upright it is portrait, 8 wide and 16 high, with the bright half at the bottom; the
    # centre crop keeps its middle 8 rows, resized to 16: top half dark, bottom half bright.
    assert px[:6].mean() < 40 and px[-6:].mean() > 215


def test_files_of_other_formats_are_refused_whatever_their_name(tmp_path):
    eps = tmp_path / "face.png"  # content decides Pillow's decoder; an EPS would go to Ghostscript
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n")
    icon = tmp_path / "face.ico"
    Image.new("RGB", (8, 8)).save(icon)
    for path in (eps, icon):
        with pytest.raises(UserError, match="not a PNG, JPEG, WebP, BMP or TIFF image"):
            read_image(path, 8)
    webp = tmp_path / "ok.webp"
    Image.new("RGB", (8, 8), (10, 20, 30)).save(webp, lossless=True)
    img, notes = read_image(webp, 8)
    assert notes == [] and np.allclose(_pixels(img)[0, 0], [10, 20, 30], atol=1)


def test_the_pixel_limit_is_checked_before_anything_is_decoded(tmp_path, monkeypatch):
    """The header's size is refused before decoding: a small PNG can decode to gigabytes."""
    from PIL import ImageFile

    path = tmp_path / "big.png"
    Image.new("RGB", (40, 30)).save(path)
    decoded = []
    real_load = ImageFile.ImageFile.load

    def counting_load(self):  # type: ignore[no-untyped-def]
        decoded.append(self.size)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    with pytest.raises(UserError, match=r"big.png: 40x30 is too large \(limit 1,199 pixels\)"):
        read_image(path, 16, max_pixels=40 * 30 - 1)
    assert decoded == []
    image, _ = read_image(path, 16, max_pixels=40 * 30)  # at the limit: read, so the spy sees decoding
    assert image.shape == (3, 16, 16) and decoded and set(decoded) == {(40, 30)}
