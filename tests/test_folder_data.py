"""Training from a folder of the user's images: held as uint8, refused up front when too large."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from latentatlas.data.folder import FolderImages
from latentatlas.io.errors import UserError
from latentatlas.io.images import read_image


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(rng.integers(0, 256, (20, 32, 3), dtype=np.uint8)).save(tmp_path / "b.png")  # cropped, resized
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(tmp_path / "c.png")  # grey
    return tmp_path


def test_folder_images_are_held_as_uint8_and_batches_equal_what_read_image_gives(folder, capsys):
    data = FolderImages(folder, 16)
    assert data.images.dtype == torch.uint8 and data.images.shape == (3, 3, 16, 16)
    err = capsys.readouterr().err
    assert "of 3 images" in err and "1 centre-cropped" in err and "1 converted" in err and "1 resized" in err, err
    batch = data.batch(12, torch.Generator().manual_seed(0))
    assert batch.shape == (12, 3, 16, 16) and batch.dtype == torch.float32
    idx = torch.randint(3, (12,), generator=torch.Generator().manual_seed(0))
    files = sorted(folder.glob("*.png"))
    for i, k in enumerate(idx.tolist()):
        assert torch.allclose(batch[i], read_image(files[k], 16)[0], atol=1e-6)
    # Under torchrun each rank holds every world-th file: rank 0 a.png and c.png, rank 1 b.png.
    for rank, names in ((0, ["a.png", "c.png"]), (1, ["b.png"])):
        shard = FolderImages(folder, 16, rank=rank, world=2).images
        assert torch.equal(shard, torch.stack([((read_image(folder / n, 16)[0] + 1) * 127.5).round().to(torch.uint8) for n in names]))


def test_a_folder_too_large_for_memory_is_refused_before_reading(folder):
    with pytest.raises(UserError, match=r"3 images at 64 px take 0.0 GiB in memory, more than half"):
        FolderImages(folder, 64, memory=2 * 3 * 64 * 64 * 3 - 2)


def test_mirror_flips_about_half_of_the_images_left_to_right(folder):
    data = FolderImages(folder, 16)
    plain = data.batch(64, torch.Generator().manual_seed(1))
    mirrored = data.batch(64, torch.Generator().manual_seed(1), mirror=True)
    flipped = [not torch.equal(a, b) for a, b in zip(plain, mirrored)]
    assert 16 < sum(flipped) < 48
    assert all(torch.equal(b, a.flip(-1)) for a, b, f in zip(plain, mirrored, flipped) if f)
