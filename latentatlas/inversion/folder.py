"""Projecting a list of image files into an output folder: what `latentatlas project` runs.

Per image NAME it writes NAME_projected.png, NAME_compare.png (target | projection),
NAME_losses.json, NAME_progress.mp4 when frames are recorded, and NAME.npz (save_codes: the
code, its space, the model, the source image and the optimised noise maps) last, so that a
resumed run knows which images are done. Under torchrun each process takes every
WORLD_SIZE-th image from its RANK, and image k (its place in the full list) draws its noise
from seed + k, so a result depends neither on the process, the batch nor a resume.

The driver lives here, not in the command, so that anything that projects a folder (the
command, a benchmark, a job) does it one way; what it says as it goes is the caller's
(`ProjectionProgress`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from latentatlas.inversion import projector
from latentatlas.inversion.losses import PerceptualFn
from latentatlas.inversion.projector import ProjectorConfig
from latentatlas.latent.gaussian import GaussianPrior
from latentatlas.models.stylegan2 import Generator

OUTPUT_SUFFIXES = (".npz", "_projected.png", "_compare.png", "_losses.json")  # the .npz first: it marks an image done
VIDEO_SUFFIX = "_progress.mp4"


def process_share(files: Sequence[Path], rank: int | None = None, world: int | None = None) -> list[tuple[int, Path]]:
    """This process's images as (place in `files`, file): every `world`-th from `rank` (by default
    torchrun's RANK and WORLD_SIZE; alone, all of them). The place is kept because an image's
    noise seed is seed + place, whatever process takes it."""
    rank = int(os.environ.get("RANK", "0")) if rank is None else rank
    world = int(os.environ.get("WORLD_SIZE", "1")) if world is None else world
    return list(enumerate(files))[rank::world]


def unfinished(numbered: Sequence[tuple[int, Path]], out: Path) -> list[tuple[int, Path]]:
    """The images of `numbered` whose NAME.npz (written last) is not in `out`: what a resumed run
    still has to do (an image cut off mid-way left its other files, which it rewrites)."""
    return [(k, f) for k, f in numbered if not (out / f"{f.stem}.npz").is_file()]


def output_paths(files: Sequence[Path], out: Path, video: bool = False) -> list[Path]:
    """Every file project_files writes for `files`, checked by the caller before any work."""
    paths = [out / f"{f.stem}{suffix}" for f in files for suffix in OUTPUT_SUFFIXES]
    return paths + ([out / f"{f.stem}{VIDEO_SUFFIX}" for f in files] if video else [])


class ProjectionProgress:
    """What project_files says as it goes; every method does nothing here, so a caller overrides
    only what it shows (the command: warnings, a bar per batch and a line per image)."""

    def image_read(self, file: Path, notes: list[str]) -> None:
        """`file` was read before any work; `notes` say what was done to fit it (read_image)."""

    def batch_started(self, first: int, last: int, total: int) -> None:
        """Images first..last (1-based, of `total`) are being projected together."""

    def step(self, step: int, losses: dict[str, float]) -> None:
        """One optimisation step of the current batch (the projector's progress)."""

    def batch_finished(self) -> None:
        """The current batch's optimisation is over; its images' outputs follow."""

    def image_written(self, file: Path, mse: float, code: Path, compare: Path) -> None:
        """Every output of `file` is written, its code file `code` last."""

    def image_diverged(self, file: Path) -> None:
        """The projection of `file` holds NaN or inf: nothing was written for it."""


def project_files(
    generator: Generator,
    numbered: Sequence[tuple[int, Path]],
    out: Path,
    cfg: ProjectorConfig,
    perceptual: PerceptualFn | None,
    *,
    model_name: str,
    loss_name: str,
    prior: GaussianPrior | None = None,
    seed: int = 0,
    batch: int = 8,
    progress: ProjectionProgress | None = None,
) -> list[Path]:
    """Project the images of `numbered` ((place, file) pairs, from process_share / unfinished)
    `batch` at a time into `out`; returns the files whose projection diverged, for which nothing
    was written. An MP4 per image is written when `cfg.record_every` keeps frames.

    Every image is read once before the first batch: a corrupt one came up only when its batch
    did, hours into a run (the batches read them again, one at a time: all of them at once could
    fill the memory)."""
    from latentatlas.io.atomic import write_json
    from latentatlas.io.images import make_grid, read_image, save_animation, save_image
    from latentatlas.latent.codes import LatentCode, save_codes
    from latentatlas.metrics.reconstruction import reconstruction_errors

    progress = progress or ProjectionProgress()
    files = [f for _, f in numbered]
    res_px = generator.img_resolution
    for f in files:
        progress.image_read(f, read_image(f, res_px)[1])
    diverged: list[Path] = []
    for start in range(0, len(files), batch):
        chunk = files[start : start + batch]
        target = torch.stack([read_image(f, res_px)[0] for f in chunk]).to(generator.device)
        image_seeds = [seed + k for k, _ in numbered[start : start + batch]]
        progress.batch_started(start + 1, start + len(chunk), len(files))
        # projector.project looked up at the call: tests stand in a diverging one there.
        res = projector.project(generator, target, perceptual, cfg, prior=prior, image_seeds=image_seeds, progress=progress.step)
        progress.batch_finished()
        errors = reconstruction_errors(res.images, target, perceptual)
        for i, f in enumerate(chunk):
            if not (torch.isfinite(res.w[i]).all() and all(np.isfinite(v[i]) for v in errors.values())):
                progress.image_diverged(f)
                diverged.append(f)
                continue
            compare = out / f"{f.stem}_compare.png"
            save_image(out / f"{f.stem}_projected.png", make_grid(res.images[i : i + 1].cpu()))
            save_image(compare, make_grid(torch.stack([target[i], res.images[i]]).cpu(), cols=2, pad=2))
            record = {
                "source": str(f), "space": cfg.space, "prior": cfg.prior_weight, "steps": cfg.steps, "loss": loss_name,
                "seed": image_seeds[i],
                "final": {k: v[i] for k, v in errors.items()},
                "history": {k: [row[i] for row in v] for k, v in res.losses.items()},
            }
            write_json(out / f"{f.stem}_losses.json", record, indent=None)
            if cfg.record_every and res.frames:
                save_animation(out / f"{f.stem}{VIDEO_SUFFIX}", torch.stack([fr[i] for fr in res.frames]), fps=24)
            code = out / f"{f.stem}.npz"  # last: the image is done
            save_codes(code, LatentCode(cfg.space, res.w[i : i + 1]), model=model_name, source=f.name,
                       noise_maps=[m[i, 0] for m in res.noise_maps])
            progress.image_written(f, errors["mse"][i], code, compare)
    return diverged
