"""What the web app computes, without the web: one loaded model and the edits on its codes.

The Gradio layer (server.py) only turns widget values into an `ExploreParams` and shows the
result, so everything here is tested directly, and the app does nothing the library can't.
Models, priors and directions are loaded once per model and kept; every slider move then
costs one mapping pass and one synthesis pass at batch 1.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from latentatlas.directions.files import Directions
from latentatlas.directions.warped import PathSet, WarpedPaths, load_paths
from latentatlas.io.errors import UserError
from latentatlas.latent.codes import LatentCode, synthesize, to_w, to_wplus, z_from_seeds
from latentatlas.latent.gaussian import GaussianPrior
from latentatlas.latent.paths import interpolate, style_mix
from latentatlas.models.bundled import BUNDLED_DIRECTIONS, WEIGHTS_DIR, load_generator
from latentatlas.models.stylegan2 import Generator

MAX_SEED = 2**32 - 1


@dataclass
class DirectionSet:
    """Linear directions (strength in stds, layer ranges) or warped paths (strength in latent spread units)."""

    title: str
    paths: PathSet

    @property
    def names(self) -> list[str]:
        return self.paths.names

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class ExploreParams:
    seed: int = 0
    psi: float = 1.0
    tau: float = 0.0  # PCA compression threshold in stds; 0 = off
    strengths: dict[tuple[int, int], float] = field(default_factory=dict)  # (set, direction) -> strength in stds
    layers: tuple[int, int] | None = None  # override every direction's w+ layer range
    mix_seed: int | None = None
    mix_cutoff: int = 0
    base: np.ndarray | None = None  # a w+ code [L, D] (from a projection) instead of the seed


class ModelSession:
    """A generator with its prior and direction sets, ready for interactive use."""

    def __init__(self, name: str, source: str, device: str = "cpu", directions: list[str | Path] | None = None) -> None:
        self.name = name
        self.generator, self.info = load_generator(source, device)
        self.generator.requires_grad_(False)
        self.prior: GaussianPrior | None = None
        try:
            self.prior = GaussianPrior.from_model_info(self.info, name)
        except UserError:
            pass  # no prior stored: the tau slider is disabled for this model
        bundled = [WEIGHTS_DIR / f for f in BUNDLED_DIRECTIONS.get(source, [])]
        files = [f for f in bundled if f.is_file()] + [Path(p) for p in directions or []]
        self.sets: list[DirectionSet] = []
        for path in files:
            ps = load_paths(path, device).to(device)
            ps.check_model(self.generator)
            if ps.space == "w":  # sliders edit w / w+ codes
                self.sets.append(DirectionSet(f"{ps.method} ({path.stem})", ps))
        self.lock = threading.Lock()  # one synthesis at a time per model (torch threads are shared anyway)
        self._predictor = None

    def predictor(self):  # type: ignore[no-untyped-def]
        """The bundled factor predictor on this model's device, loaded on first use (projections)."""
        if self._predictor is None:
            from latentatlas.training.attributes import load_predictor

            self._predictor = load_predictor("factors", self.generator.device)
        return self._predictor

    @property
    def num_ws(self) -> int:
        return self.generator.num_ws

    def seed_code(self, seed: int, psi: float = 1.0) -> LatentCode:
        if not 0 <= seed <= MAX_SEED:
            raise UserError(f"seed {seed}: use 0..{MAX_SEED}")
        z = z_from_seeds([int(seed)], self.generator.z_dim, self.generator.device)
        return to_wplus(to_w(z, self.generator, truncation_psi=psi), self.generator)

    def edited_code(self, p: ExploreParams) -> LatentCode:
        """The w+ code the sliders describe: seed (or projected code), truncation, mixing, directions, compression."""
        g = self.generator
        if p.base is not None:
            base = torch.as_tensor(np.asarray(p.base, dtype=np.float32), device=g.device).reshape(1, self.num_ws, g.w_dim)
            code = LatentCode("w+", g.mapping.w_avg.lerp(base, p.psi) if p.psi != 1 else base)
        else:
            code = self.seed_code(p.seed, p.psi)
        if p.mix_seed is not None and 0 < p.mix_cutoff < self.num_ws:
            code = style_mix(code, self.seed_code(p.mix_seed, p.psi), p.mix_cutoff)
        for (s, k), strength in sorted(p.strengths.items()):
            if strength == 0 or s >= len(self.sets):
                continue
            source = self.sets[s].paths.source
            if isinstance(source, Directions):
                d = source if p.layers is None else dataclasses.replace(source, layers=p.layers)
                code = d.apply(code, k, float(strength))
            else:
                code = walk_layers(source, code, k, float(strength), p.layers)
        if p.tau > 0:
            if self.prior is None:
                raise UserError(f"{self.name} has no Gaussian prior: run `latentatlas stats` to add one")
            code = LatentCode("w+", self.prior.compress(code.tensor, p.tau).to(code.tensor))
        return code

    @torch.no_grad()
    def render(self, p: ExploreParams) -> tuple[np.ndarray, LatentCode]:
        """uint8 image [H, W, 3] and the code that made it."""
        with self.lock:
            code = self.edited_code(p)
            img = synthesize(code, self.generator)
        return to_rgb8(img[0]), code

    @torch.no_grad()
    def interpolation(self, seed_a: int, seed_b: int, frames: int, method: str, space: str, psi: float = 1.0) -> np.ndarray:
        """Frames [T, H, W, 3] from seed_a to seed_b, in z (then mapped) or in w."""
        if not 2 <= frames <= 120:
            raise UserError(f"frames: use 2..120, got {frames}")
        g = self.generator
        za, zb = (z_from_seeds([int(s)], g.z_dim, g.device) for s in (seed_a, seed_b))
        if space == "z":
            codes = interpolate(za, zb, frames, method)
            out = synthesize(codes, g, truncation_psi=psi)
        elif space == "w":
            wa, wb = (to_w(z, g, truncation_psi=psi) for z in (za, zb))
            out = synthesize(interpolate(wa, wb, frames, method), g)
        else:
            raise UserError(f"space {space!r}: use z or w")
        return np.stack([to_rgb8(f) for f in out])


def walk_layers(paths: WarpedPaths, code: LatentCode, k: int, strength: float, layers: tuple[int, int] | None) -> LatentCode:
    """Walk each w of a w+ code (in the layer range) along warped path k.

    The field depends on where a code is, so each layer's w follows its own path; for an
    unmixed code all layers are equal and this is the plain w traversal. Strength is in units
    of the latent spread per dimension, as `traverse` takes it.
    """
    code.require("w+")
    start, end = layers if layers is not None else (0, code.tensor.shape[1])
    arc = strength * paths.scale / math.sqrt(paths.dim)
    out = code.tensor.clone()
    moved = paths.apply(LatentCode("w", out[0, start:end]), k, arc).tensor
    out[0, start:end] = moved.to(out)
    return LatentCode("w+", out)


def to_rgb8(img: torch.Tensor) -> np.ndarray:
    """One image [C, H, W] in [-1, 1] as uint8 [H, W, 3]."""
    from latentatlas.io.images import to_uint8

    arr = to_uint8(img.unsqueeze(0).cpu())[0]
    return np.repeat(arr, 3, axis=-1) if arr.shape[-1] == 1 else arr


def enlarge(arr: np.ndarray, size: int = 256) -> np.ndarray:
    """Nearest-neighbour enlargement of small images for display (shows the true pixels)."""
    f = max(1, size // arr.shape[0])
    return arr.repeat(f, axis=0).repeat(f, axis=1) if f > 1 else arr
