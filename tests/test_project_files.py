"""inversion/folder.py: the `project` command's driver, used here without the command."""

from __future__ import annotations

import os

import numpy as np
import torch

from latentatlas.inversion.folder import (ProjectionProgress, output_paths, process_share, project_files,
                                          unfinished)
from latentatlas.inversion.projector import ProjectorConfig
from latentatlas.io.images import make_grid, save_image
from latentatlas.latent.codes import load_codes


class Recorder(ProjectionProgress):
    def __init__(self) -> None:
        self.batches: list[tuple[int, int, int]] = []
        self.steps = 0
        self.written: list[str] = []

    def batch_started(self, first: int, last: int, total: int) -> None:
        self.batches.append((first, last, total))

    def step(self, step: int, losses: dict[str, float]) -> None:
        self.steps += 1

    def image_written(self, file, mse, code, compare) -> None:  # type: ignore[no-untyped-def]
        assert code.is_file() and compare.is_file() and mse > 0
        self.written.append(file.name)


def _images(generator, folder, n):  # type: ignore[no-untyped-def]
    with torch.no_grad():
        faces = generator(torch.randn(n, 16, generator=torch.Generator().manual_seed(1)))
    files = []
    for i, face in enumerate(faces):
        files.append(save_image(folder / f"img{i}.png", make_grid(face[None])))
    return files


def test_process_share_keeps_each_image_s_place_and_reads_torchrun_s_environment(tmp_path, monkeypatch):
    files = [tmp_path / f"{c}.png" for c in "abcde"]
    assert process_share(files, 0, 2) == [(0, files[0]), (2, files[2]), (4, files[4])]
    assert process_share(files, 1, 2) == [(1, files[1]), (3, files[3])]
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert process_share(files) == [(2, files[2])]
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert process_share(files) == list(enumerate(files))
    assert output_paths(files[:1], tmp_path, video=True) == [tmp_path / n for n in (
        "a.npz", "a_projected.png", "a_compare.png", "a_losses.json", "a_progress.mp4")]


def test_sharded_and_resumed_runs_write_what_one_run_writes(tiny_generator, tmp_path):
    """Two torchrun ranks, and a run resumed after an image was cut off, give every image the code
    one process gives it (its noise is seeded by its place in the full list), in one code file
    format that load_codes reads, with the source image and the noise maps."""
    files = _images(tiny_generator, tmp_path / "imgs", 3)
    cfg = ProjectorConfig(space="w+", steps=3, mse_weight=1.0, perceptual_weight=0.0, w_avg_samples=500)
    kw = dict(model_name="tiny", loss_name="mse", seed=5, batch=2)

    whole = tmp_path / "whole"
    rec = Recorder()
    assert project_files(tiny_generator, process_share(files, 0, 1), whole, cfg, None, progress=rec, **kw) == []
    assert rec.batches == [(1, 2, 3), (3, 3, 3)] and rec.steps == 6 and rec.written == ["img0.png", "img1.png", "img2.png"]

    sharded = tmp_path / "sharded"
    for rank in (0, 1):
        project_files(tiny_generator, process_share(files, rank, 2), sharded, cfg, None, **kw)
    for f in files:
        a, b = np.load(whole / f"{f.stem}.npz"), np.load(sharded / f"{f.stem}.npz")
        assert sorted(a.files) == sorted(b.files)
        assert np.allclose(a["latents"], b["latents"], atol=1e-5)
        assert str(a["source"]) == f.name and str(a["space"]) == "w+" and str(a["model"]) == "tiny"
        noise = sorted(k for k in a.files if k.startswith("noise_"))
        assert len(noise) == len(tiny_generator.synthesis.noise_layers())
        assert all(np.allclose(a[k], b[k], atol=1e-5) for k in noise) and a["noise_0"].ndim == 2
        code, info = load_codes(whole / f"{f.stem}.npz")
        assert code.space == "w+" and tuple(code.tensor.shape) == (1, tiny_generator.num_ws, 16) and info["model"] == "tiny"

    # Cut off while img1 was written: its code file (written last) is missing; only it is redone.
    (sharded / "img1.npz").unlink()
    os.utime(sharded / "img0.npz", (1, 1))
    todo = unfinished(process_share(files, 0, 1), sharded)
    assert todo == [(1, files[1])]
    rec = Recorder()
    project_files(tiny_generator, todo, sharded, cfg, None, progress=rec, **kw)
    assert rec.written == ["img1.png"] and os.stat(sharded / "img0.npz").st_mtime == 1
    assert np.allclose(np.load(sharded / "img1.npz")["latents"], np.load(whole / "img1.npz")["latents"], atol=1e-5)
