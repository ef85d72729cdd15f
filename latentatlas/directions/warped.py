"""WarpedGANSpace (Tzelepis, Tzimiropoulos & Patras, ICCV 2021): non-linear paths from RBF warpings.

Each path k is the gradient flow of a warping function f_k(z) = sum_i a_i exp(-g_k ||z - v_i||^2)
over a support set of N dipoles (v, -v around the centre of the latent distribution, alphas
+1/-1). A code moves along path k by small steps z += eps * grad f_k(z) / ||grad f_k(z)||, so the
direction bends with the position: the same path turns where the latent space does. Support
sets and a reconstructor (reconstructor.py) are trained together: the reconstructor must tell,
from G(z) and G(z + shift), which path moved the code and how far, which pushes the paths to
make distinct, recognisable changes.

`linear=True` is the paper's linear baseline: one dipole per set in the limit of a vanishing
gamma, where grad f_k is the constant v_+ - v_- (computed exactly, not with a tiny gamma that
would underflow).

Paths live in Z or W (a w code drives every synthesis layer). Files: safetensors with JSON
metadata, kind "warped-directions"; the jointly trained reconstructor's weights ride along
in the same file under the "reconstructor." prefix. `load_paths` opens linear and warped files
alike for the commands that walk and score paths.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from latentatlas.directions.files import Directions, directions_from, file_names, model_fingerprint
from latentatlas.directions.reconstructor import (
    Reconstructor,
    check_inputs,
    check_space,
    latent_codes,
    pair_loss,
    sample_shifts,
    step_seed,
)
from latentatlas.io import tensorfile
from latentatlas.io.atomic import atomic_path, state_path
from latentatlas.io.errors import UserError, check_max_minutes, require_number, require_seed
from latentatlas.latent.codes import LatentCode, code_width, to_wplus
from latentatlas.metrics.paths import PathFn, layer_mask, linear_path
from latentatlas.models.stylegan2 import Generator

KIND = "warped-directions"
LINEAR_GAMMA = 1e-4  # the linear baseline's nominal gamma (x 1/scale^2); its field is the gamma -> 0 limit


# Euler steps one walk may take, 100 times what the default strength takes: that strength (an arc
# of one scale) is walked in 1 / step = 20 steps of the default config (step 0.05); 2,000 steps took
# 0.45 s for one code and 1.8 s for four on 2 busy CPU cores (2026-11-29), while a strength of 1e9
# walked on without a word until a review killed it.
MAX_WALK_STEPS = 2_000


@dataclass
class WarpedConfig:
    """Everything that defines a training run (a resumed run must match it, `steps` aside)."""

    sets: int = 32  # K paths
    dipoles: int = 16  # N dipoles per set
    space: str = "w"
    linear: bool = False
    learn_alphas: bool = False
    learn_gammas: bool = True
    gamma: float = 1.0  # initial gamma, x 1/scale^2 (= the paper's 1/d in Z, where scale^2 = d)
    radius_min: float = 0.8  # dipoles on spheres of radius r_k in [min, max) x scale (the official init)
    radius_max: float = 0.9
    shift_min: float = 0.1  # |eps| ~ U[min, max], x scale
    shift_max: float = 0.25
    step: float = 0.05  # traversal step, x scale
    batch: int = 12
    lr: float = 1e-4  # Adam, for support sets and reconstructor (the paper's)
    lambda_reg: float = 0.25
    width: int = 32  # reconstructor width
    reconstructor_input: str = "difference"  # reconstructor.RECONSTRUCTOR_INPUTS; files from before it have "pair"
    steps: int = 20_000
    seed: int = 0

    def __post_init__(self) -> None:
        require_seed("--seed", self.seed)
        # The messages name the CLI option beside the field, for callers of the library and of the CLI alike.
        if self.space not in ("z", "w"):
            raise UserError(f"space (--space) must be z or w (warped paths live there): got {self.space!r}")
        if self.sets < 1:
            raise UserError(f"sets (--sets) must be at least 1 (a support set a path): got {self.sets}")
        if self.dipoles < 1:
            raise UserError(f"dipoles (--dipoles) must be at least 1 a set: got {self.dipoles}")
        if self.linear and self.dipoles != 1:
            raise UserError(f"the linear baseline (--linear) has exactly one dipole per set (--dipoles 1): got {self.dipoles}")
        if self.linear and self.learn_alphas:
            raise UserError("the linear baseline (--linear) keeps its alphas at +1/-1: leave out --learn-alphas "
                            "(learnt alphas would make it position-dependent)")
        if not 0 < self.shift_min <= self.shift_max < math.inf:
            raise UserError(f"shift range [{self.shift_min}, {self.shift_max}]: need 0 < min <= max, finite")
        if not (0 < self.step < math.inf and 0 < self.gamma < math.inf):
            raise UserError(f"step and gamma must be finite and positive: got {self.step} and {self.gamma}")
        if self.batch < 1:
            raise UserError(f"batch (--batch) must be at least 1 image pair a step: got {self.batch}")
        if self.steps < 0:
            raise UserError(f"steps (--steps) must be >= 0: got {self.steps}")
        require_number("--lr", self.lr, above=0, what="a positive learning rate", example="0.0001")
        check_inputs(self.reconstructor_input)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "WarpedConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in _with_old_defaults(d).items() if k in known})


class SupportSets(nn.Module):
    """K support sets of N dipoles in a D-dim latent space; the warping functions and their gradient fields."""

    def __init__(
        self,
        sets: int,
        dipoles: int,
        dim: int,
        scale: float = 1.0,
        center: torch.Tensor | None = None,
        gamma: float = 1.0,
        radius: tuple[float, float] = (0.8, 0.9),
        linear: bool = False,
        learn_alphas: bool = False,
        learn_gammas: bool = True,
    ) -> None:
        super().__init__()
        self.sets, self.dipoles, self.dim, self.linear = sets, dipoles, dim, linear
        center = torch.zeros(dim) if center is None else center.detach().float().cpu().reshape(dim)
        self.register_buffer("center", center.clone())
        self.register_buffer("scale", torch.tensor(float(scale)))
        # Radii spaced like the official arange(r_min, r_max, (r_max - r_min) / K).
        radii = scale * (radius[0] + (radius[1] - radius[0]) * torch.arange(sets, dtype=torch.float32) / sets)
        u = torch.randn(sets, dipoles, dim)
        u = u / u.norm(dim=2, keepdim=True)
        poles = torch.stack([u, -u], dim=2).reshape(sets, 2 * dipoles, dim)  # v_1, -v_1, v_2, -v_2, ...
        self.support = nn.Parameter(center + radii[:, None, None] * poles)
        self.alphas = nn.Parameter(torch.tensor([1.0, -1.0]).repeat(sets, dipoles), requires_grad=learn_alphas)
        g0 = (LINEAR_GAMMA if linear else gamma) / scale**2
        self.log_gamma = nn.Parameter(torch.full((sets,), math.log(g0)), requires_grad=learn_gammas and not linear)

    @property
    def gammas(self) -> torch.Tensor:
        return self.log_gamma.exp()

    def _gather(self, z: torch.Tensor, k: int | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Squared distances [B, 2N] from each code to its set's poles, poles, alphas, gammas [B, 1]."""
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise UserError(f"these paths need {self.dim}-d codes [N, {self.dim}], got shape {list(z.shape)}")
        if isinstance(k, int):
            if not 0 <= k < self.sets:
                raise UserError(f"path {k} does not exist: there are {self.sets} (0..{self.sets - 1})")
            v, a, g = self.support[k], self.alphas[k].expand(len(z), -1), self.gammas[k].expand(len(z), 1)
            d = (z * z).sum(1, keepdim=True) - 2 * z @ v.T + (v * v).sum(1)
        else:
            k = k.to(z.device)
            v, a, g = self.support[k], self.alphas[k], self.gammas[k].unsqueeze(1)
            d = (z * z).sum(1, keepdim=True) - 2 * torch.einsum("bd,bnd->bn", z, v) + (v * v).sum(2)
        return d.clamp_min(0), v, a, g

    def warping(self, z: torch.Tensor, k: int | torch.Tensor) -> torch.Tensor:
        """f_k(z) [B]."""
        d, _, a, g = self._gather(z, k)
        return (a * torch.exp(-g * d)).sum(1)

    def gradient(self, z: torch.Tensor, k: int | torch.Tensor) -> torch.Tensor:
        """grad f_k(z) [B, D] in closed form: -2 g sum_i a_i exp(-g ||z - v_i||^2) (z - v_i)."""
        d, v, a, g = self._gather(z, k)
        e = a * torch.exp(-g * d)  # [B, 2N]
        ev = e @ v if v.ndim == 2 else torch.einsum("bn,bnd->bd", e, v)
        return 2 * g * (ev - e.sum(1, keepdim=True) * z)

    def direction(self, z: torch.Tensor, k: int | torch.Tensor) -> torch.Tensor:
        """Unit grad f_k(z) [B, D]; the exponents are shifted by their minimum first (a common positive
        factor leaves the unit vector as it is), so large gammas or far codes never underflow to 0/0."""
        if self.linear:
            if z.ndim != 2 or z.shape[1] != self.dim:
                raise UserError(f"these paths need {self.dim}-d codes [N, {self.dim}], got shape {list(z.shape)}")
            idx = torch.full((len(z),), k, device=z.device) if isinstance(k, int) else k.to(z.device)
            u = (self.alphas.unsqueeze(2) * self.support).sum(1)  # [K, D]: v_+ - v_-
            return (u / u.norm(dim=1, keepdim=True).clamp_min(1e-12))[idx].to(z.dtype)
        d, v, a, g = self._gather(z, k)
        e = a * torch.exp(-g * (d - d.min(1, keepdim=True).values.detach()))
        ev = e @ v if v.ndim == 2 else torch.einsum("bn,bnd->bd", e, v)
        grad = ev - e.sum(1, keepdim=True) * z
        return grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def walk(self, k: int, step: float) -> PathFn:
        """Path k as a metrics.paths.PathFn: t is signed arc length; |t| is walked in Euler steps of
        `step` (the last one shorter) towards sign(t), re-reading the direction at every step.

        Each t is reached from the start code alone (full steps, then its own remainder), so a
        frame does not depend on which other frames were asked for.
        """
        if step <= 0:
            raise UserError(f"the traversal step must be positive, got {step}")

        def fn(w0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            ts = [float(x) for x in t.reshape(-1)]
            longest = max((abs(x) for x in ts), default=0.0)
            if longest / step > MAX_WALK_STEPS:
                raise UserError(f"this walk along a warped path takes {longest / step:.3g} Euler steps; at most {MAX_WALK_STEPS}: "
                                "ask for a shorter walk (traverse: a smaller --strength; directions score: a smaller --length)")
            out = torch.empty(len(ts), *w0.shape, dtype=w0.dtype, device=w0.device)
            for sign in (1.0, -1.0):
                order = sorted((j for j in range(len(ts)) if ts[j] * sign > 0), key=lambda j: abs(ts[j]))
                cur, done = w0, 0
                for j in order:
                    full = int(math.floor(abs(ts[j]) / step + 1e-6))
                    while done < full:
                        cur = cur + sign * step * self.direction(cur, k)
                        done += 1
                    rest = abs(ts[j]) - full * step
                    out[j] = cur + sign * rest * self.direction(cur, k) if rest > 1e-9 * step else cur
            for j, tj in enumerate(ts):
                if tj == 0:
                    out[j] = w0
            return out

        return fn


@dataclass
class WarpedPaths:
    """Trained support sets plus what a user needs to walk them: space, model, names, step, provenance."""

    support: SupportSets
    names: list[str]
    space: str
    model: str  # fingerprint
    config: WarpedConfig
    steps: int  # training steps done
    info: dict[str, Any] = field(default_factory=dict)
    reconstructor: dict[str, torch.Tensor] | None = None  # state dict of the jointly trained reconstructor

    @property
    def method(self) -> str:
        return "warpedganspace-linear" if self.config.linear else "warpedganspace"

    @property
    def scale(self) -> float:
        return float(self.support.scale)

    @property
    def dim(self) -> int:
        return self.support.dim

    def arc_length(self, strength: float | torch.Tensor) -> float | torch.Tensor:
        """A strength as the commands and the app's sliders give it (in units of the latent codes'
        per-dimension spread, scale / sqrt(dim)) as the signed arc length `walk` and `apply` take."""
        return strength * self.scale / math.sqrt(self.dim)

    def __len__(self) -> int:
        return self.support.sets

    def check_model(self, generator: Generator) -> None:
        """Refuse paths made for another model, or (a file edited by hand under the right fingerprint)
        of another width than the model's codes: where the commands and the app meet the model, so
        `serve` refuses such a file at start and not in the page."""
        fp = model_fingerprint(generator)
        if fp != self.model:
            raise UserError(
                f"these warped paths were made for another model (fingerprint {self.model}, this one is {fp}): "
                "train them again for this model"
            )
        dim = code_width(generator, self.space)
        if self.dim != dim:
            raise UserError(f"these warped paths are {self.dim}-d and this model's {self.space} is {dim}-d: "
                            "train them again for this model")

    def index(self, path: int | str) -> int:
        if isinstance(path, str) and not path.lstrip("-").isdigit():
            if path not in self.names:
                raise UserError(f"no path named {path!r}; have: {', '.join(self.names[:12])}")
            return self.names.index(path)
        k = int(path)
        if not 0 <= k < len(self):
            raise UserError(f"path {k} does not exist: this file has {len(self)} (0..{len(self) - 1})")
        return k

    def check_code(self, code: LatentCode) -> None:
        if code.space != self.space:
            raise UserError(f"these warped paths live in {self.space}: give a {self.space} code, not a {code.space} code")
        if code.tensor.shape[-1] != self.dim:
            raise UserError(f"these warped paths need {self.dim}-d {self.space} codes, got width {code.tensor.shape[-1]}")

    def walk(self, path: int | str, step: float | None = None) -> PathFn:
        """A PathFn in this space: (codes [M, D], signed arc lengths [T]) -> [T, M, D]."""
        return self.support.walk(self.index(path), self.config.step * self.scale if step is None else step)

    def field(self, codes: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return self.support.direction(codes, index)

    @torch.no_grad()
    def traverse(self, code: LatentCode, path: int | str, num_steps: int, step: float | None = None) -> list[LatentCode]:
        """2 num_steps + 1 code batches, from num_steps steps back to num_steps steps on; frame t is G(codes[t])."""
        self.check_code(code)
        step = self.config.step * self.scale if step is None else step
        device = self.support.center.device
        t = step * torch.arange(-num_steps, num_steps + 1, dtype=torch.float32, device=device)
        return [LatentCode(self.space, c) for c in self.walk(path, step)(code.tensor.to(device), t)]

    @torch.no_grad()
    def apply(self, code: LatentCode, path: int | str, arc_length: float) -> LatentCode:
        """Codes moved along the path by `arc_length` (signed, in latent units)."""
        self.check_code(code)
        device = self.support.center.device
        return LatentCode(self.space, self.walk(path)(code.tensor.to(device), torch.tensor([float(arc_length)], device=device))[0])


# ---------------------------------------------------------------------------------------------
# Files


def save_warped(path: str | Path, p: WarpedPaths) -> None:
    meta = {
        "format": "latentatlas",
        "kind": KIND,
        "space": p.space,
        "method": p.method,
        "model": p.model,
        "sets": str(len(p)),
        "dipoles": str(p.support.dipoles),
        "dim": str(p.dim),
        "scale": repr(p.scale),
        "steps": str(p.steps),
        "config": json.dumps(asdict(p.config)),
        "names": json.dumps(p.names),
        "info": json.dumps(p.info),
    }
    tensors = {
        "support": p.support.support.detach().float().cpu().contiguous(),
        "alphas": p.support.alphas.detach().float().cpu().contiguous(),
        "log_gamma": p.support.log_gamma.detach().float().cpu().contiguous(),
        "center": p.support.center.detach().float().cpu().contiguous(),
    }
    for k, v in (p.reconstructor or {}).items():
        tensors[f"reconstructor.{k}"] = v.detach().float().cpu().contiguous()
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_warped(path: str | Path, device: str | torch.device = "cpu") -> WarpedPaths:
    meta, t = tensorfile.read_tensors(path, "directions")
    if meta.get("kind") != KIND:
        raise UserError(f"{path}: not a latentatlas warped-directions file")
    return _warped_from(meta, t, device, path)


def _warped_from(meta: dict[str, str], t: dict[str, torch.Tensor], device: str | torch.device, path: str | Path) -> WarpedPaths:
    """Warped paths from a file's metadata and tensors, already read (load_warped, load_paths).

    The scale divides (a gamma is x 1/scale^2, a strength x scale / sqrt(dim)): 0 was a
    ZeroDivisionError, and NaN walked NaN codes without a word. The header's sizes must agree
    with the support tensor [sets, 2 dipoles, dim] (a file edited by hand or from another version
    was read by its tensors alone, whatever its header said), and the names are checked as a
    linear file's are (`files.file_names`).
    """
    with tensorfile.fields(path, "warped-directions"):
        cfg = WarpedConfig.from_dict(json.loads(meta["config"]))
        k, two_n, dim = t["support"].shape
        if (int(meta["sets"]), 2 * int(meta["dipoles"]), int(meta["dim"])) != (k, two_n, dim):
            raise UserError(f"{path}: its header gives sets {meta['sets']}, dipoles {meta['dipoles']} and dim {meta['dim']} but "
                            f"its support tensor is [{k}, {two_n}, {dim}] (sets, 2 x dipoles, dim): make the file again")
        scale = require_number(f"{path}: scale", float(meta["scale"]), above=0,
                               what="a finite scale > 0 (the spread of the codes the paths were trained on): make the file again")
        names = file_names(meta, k, path)
        if meta["space"] != cfg.space:  # the walk reads the header's space, the support was trained in the config's
            raise UserError(f"{path}: its header says space {meta['space']!r} and its config {cfg.space!r}: make the file again")
        with torch.random.fork_rng(devices=[]):  # the random init is overwritten: leave the caller's RNG alone
            support = SupportSets(k, two_n // 2, dim, scale=scale, center=t["center"], linear=cfg.linear,
                                  learn_alphas=cfg.learn_alphas, learn_gammas=cfg.learn_gammas)
        with torch.no_grad():
            support.support.copy_(t["support"])
            support.alphas.copy_(t["alphas"])
            support.log_gamma.copy_(t["log_gamma"])
        recon = {n[len("reconstructor."):]: v for n, v in t.items() if n.startswith("reconstructor.")} or None
        return WarpedPaths(
            support=support.to(device).requires_grad_(False), names=names, space=meta["space"],
            model=meta["model"], config=cfg, steps=int(meta["steps"]), info=json.loads(meta["info"]), reconstructor=recon,
        )


# ---------------------------------------------------------------------------------------------
# Linear or warped, one interface for the commands


class PathSet:
    """Linear directions or warped paths behind one interface: names, space, model check, walk, edit, field.

    Linear directions keep their own semantics (strength in stds of the samples along the
    vector, W+ layer ranges) by delegating to `Directions`; warped paths walk their field, with
    strength in units of scale / sqrt(dim) (the per-dimension spread of the latent codes).
    A linear set made for a layer range (`layers`) is walked, and its field read, in w+
    (`walk_space`): only those layers move, in `traverse` and in `directions score` alike.
    """

    def __init__(self, source: Directions | WarpedPaths) -> None:
        self.source = source

    @property
    def kind(self) -> str:
        return KIND if isinstance(self.source, WarpedPaths) else "directions"

    @property
    def names(self) -> list[str]:
        return self.source.names

    @property
    def space(self) -> str:
        return self.source.space

    @property
    def method(self) -> str:
        return self.source.method

    @property
    def layers(self) -> tuple[int, int] | None:
        """The [start, end) w+ layers a linear set edits; None: every layer (always for warped paths)."""
        return self.source.layers if isinstance(self.source, Directions) else None

    @property
    def walk_space(self) -> str:
        """The space `walk` and `field` take codes in: w+ for a layer range, else the set's own space."""
        return "w+" if self.layers is not None else self.space

    def __len__(self) -> int:
        return len(self.source)

    def check_model(self, generator: Generator) -> None:
        self.source.check_model(generator)

    def index(self, path: int | str) -> int:
        return self.source.index(path)

    @property
    def strength_range(self) -> float:
        """Strengths +-this span a useful walk: 3 stds for linear directions (about the samples'
        whole spread along one); sqrt(dim) units for warped paths, an arc of one scale (in W the
        typical distance of a code from the mean), since their +-3 barely moves a face. The
        app's sliders and `traverse`'s default both use it."""
        if isinstance(self.source, WarpedPaths):
            return float(round(math.sqrt(self.source.dim)))
        return 3.0

    def apply(self, code: LatentCode, k: int, strength: float, layers: tuple[int, int] | None = None) -> LatentCode:
        """Codes moved along direction or path k by `strength`, in the unit of `strength_range` (stds
        for linear directions, latent spread units for warped paths), as the app's sliders move them.

        `layers` [start, end) restricts the edit of a w+ code to those layers: for linear directions
        it replaces the set's own range; warped w paths move each w of those layers along its own
        path (the field depends on where a code is; for an unmixed code all layers are equal and
        this is the plain w walk). Without `layers`, linear sets keep their own range and warped
        paths move every layer of a w+ code.
        """
        if isinstance(self.source, Directions):
            d = self.source if layers is None else dataclasses.replace(self.source, layers=layers)
            return d.apply(code, k, float(strength))
        arc = self.source.arc_length(float(strength))
        if code.space != "w+" or self.space != "w":
            if layers is not None:
                raise UserError("a layer range edits w+ codes along paths made in w")
            return self.source.apply(code, k, arc)
        start, end = layers if layers is not None else (0, code.tensor.shape[1])
        out = code.tensor.clone()
        part = out[:, start:end]
        moved = self.source.apply(LatentCode("w", part.reshape(-1, part.shape[-1])), k, arc).tensor
        out[:, start:end] = moved.reshape(part.shape).to(out)
        return LatentCode("w+", out)

    def walk(self, k: int) -> PathFn:
        """Path k by signed arc length from codes in `walk_space` (what metrics.paths.path_responses takes)."""
        if isinstance(self.source, WarpedPaths):
            return self.source.walk(k)
        return linear_path(self.source.vectors[k], self.layers)

    def field(self, codes: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Unit directions of the paths `index` at `codes` [B, D] (constant for linear directions); for
        a layer range, codes are w+ [B, num_ws, D] and the direction is 0 on the layers outside it."""
        if isinstance(self.source, WarpedPaths):
            return self.source.field(codes, index)
        v = self.source.vectors.to(codes)
        v = (v / v.norm(dim=1, keepdim=True))[index.to(codes.device)]
        return v if self.layers is None else layer_mask(codes, self.layers) * v.unsqueeze(1)

    def to(self, device: str | torch.device) -> "PathSet":
        if isinstance(self.source, WarpedPaths):
            self.source.support.to(device)
        return self

    def frames(self, base: LatentCode, k: int, strengths: torch.Tensor, generator: Generator) -> list[LatentCode]:
        """The codes of a traversal strip: one code batch per strength (base in this set's space; w for w paths)."""
        if isinstance(self.source, WarpedPaths):
            device = self.source.support.center.device
            walked = self.source.walk(k)(base.tensor.to(device), self.source.arc_length(strengths.to(device)))
            return [LatentCode(self.space, w) for w in walked]
        if base.space == "w":
            base = to_wplus(base, generator)
        return [self.source.apply(base, k, float(s)) for s in strengths]


def load_paths(path: str | Path, device: str | torch.device = "cpu") -> PathSet:
    """Open a linear directions file or a warped-directions file."""
    meta, t = tensorfile.read_tensors(path, "directions")
    if meta.get("kind") == KIND:
        return PathSet(_warped_from(meta, t, device, path))
    if meta.get("kind") == "directions":
        return PathSet(directions_from(meta, t, path))
    raise UserError(f"{path}: not a latentatlas directions file (linear or warped)")


# ---------------------------------------------------------------------------------------------
# Training


def latent_stats(generator: Generator, space: str) -> tuple[torch.Tensor, float]:
    """Centre and scale of the code distribution: (0, sqrt(z_dim)) in Z; (mean w, sqrt E||w - mean||^2) in W."""
    if space == "z":
        return torch.zeros(generator.z_dim), math.sqrt(generator.z_dim)
    from latentatlas.inversion.projector import w_statistics

    with torch.no_grad():
        center, scale = w_statistics(generator, 10_000)
    return center.cpu(), scale


@dataclass
class TrainResult:
    paths: WarpedPaths
    step: int
    complete: bool
    state: Path
    stats: dict[str, float]


def init_training(generator: Generator, cfg: WarpedConfig) -> tuple[SupportSets, Reconstructor]:
    """Fresh support sets and reconstructor on the generator's device, the same for the same config and model."""
    dim = code_width(generator, cfg.space)
    center, scale = latent_stats(generator, cfg.space)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)  # the same initial support sets and reconstructor for the same config
        support = SupportSets(
            cfg.sets, cfg.dipoles, dim, scale=scale, center=center, gamma=cfg.gamma, radius=(cfg.radius_min, cfg.radius_max),
            linear=cfg.linear, learn_alphas=cfg.learn_alphas, learn_gammas=cfg.learn_gammas,
        )
        recon = Reconstructor(cfg.sets, generator.img_resolution, generator.img_channels, cfg.width, cfg.reconstructor_input)
    return support.to(generator.device), recon.to(generator.device)


def _with_old_defaults(cfg: dict[str, Any]) -> dict[str, Any]:
    """A config as saved, with what files from before a field existed did: their reconstructor saw the pair."""
    return {"reconstructor_input": "pair", **cfg}


def _comparable(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in _with_old_defaults(cfg).items() if k != "steps"}  # more steps may be asked for on resume


def train_warped(
    generator: Generator,
    out: str | Path,
    cfg: WarpedConfig,
    resume: bool = True,
    progress: bool = True,
    max_steps_this_run: int | None = None,
    max_minutes: float | None = None,
    save_every: int = 500,
) -> TrainResult:
    """Train (or resume) support sets and reconstructor on the frozen generator; writes `out` at the end of every run.

    The state `out`.state.pt is rewritten atomically every `save_every` steps and at the end;
    a resumed run draws the same batches as a straight run (batch seeds follow the step), so
    it ends with the same parameters. `out` is marked `"complete": false` in its info until
    cfg.steps are done.
    """
    from tqdm import tqdm

    check_space(cfg.space, generator)
    check_max_minutes(max_minutes)
    out = Path(out)
    spath = state_path(out)
    generator.eval().requires_grad_(False)  # frozen, but the graph through it stays differentiable w.r.t. codes
    fingerprint = model_fingerprint(generator)
    support, recon = init_training(generator, cfg)
    params = [p for p in support.parameters() if p.requires_grad] + list(recon.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr)
    step = 0
    resumed_running: dict[str, float] = {}
    if resume and spath.exists():
        state = tensorfile.read_training_state(spath, generator.device)
        if _comparable(state["config"]) != _comparable(asdict(cfg)):
            raise UserError(f"{spath} was trained with another config {state.get('config')}: remove it or match it")
        if state.get("model") != fingerprint:
            raise UserError(f"{spath} was trained for another model (fingerprint {state.get('model')}): remove it")
        with tensorfile.restoring_state(spath):
            support.load_state_dict(state["support"])
            recon.load_state_dict(state["reconstructor"])
            opt.load_state_dict(state["opt"])
            step = int(state["step"])
            resumed_running = {n: float(v) for n, v in state.get("running", {}).items()}
    end = cfg.steps if max_steps_this_run is None else min(cfg.steps, step + max_steps_this_run)
    scale = float(support.scale)
    support.train()
    recon.train()
    bar = tqdm(total=max(end - step, 0), disable=not progress, desc="WarpedGANSpace", unit="step")
    # The running means go on from the saved ones, so a resumed (or already finished) run still
    # reports its loss and accuracy.
    running = resumed_running
    last_save, start = step, time.time()
    while step < end:
        if max_minutes is not None and time.time() - start > max_minutes * 60:
            break
        z, k, eps = sample_shifts(step_seed(cfg.seed, step), cfg.batch, cfg.sets, generator.z_dim, cfg.shift_min, cfg.shift_max)
        loss, stats = pair_loss(generator, recon, support.direction, latent_codes(generator, z, cfg.space), k, eps, scale, cfg.space, cfg.lambda_reg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        running = {n: v if n not in running else 0.95 * running[n] + 0.05 * v for n, v in stats.items()}
        bar.update(1)
        if step % 10 == 0 or step == end:
            bar.set_postfix(loss=f"{running['loss']:.3f}", acc=f"{running['accuracy']:.2f}")
        if step - last_save >= save_every:
            _save_state(spath, support, recon, opt, step, cfg, fingerprint, running)
            last_save = step
    bar.close()
    if step != last_save or not spath.exists():
        _save_state(spath, support, recon, opt, step, cfg, fingerprint, running)
    complete = step >= cfg.steps
    paths = WarpedPaths(
        support=support.eval(), names=[f"warp{i}" for i in range(cfg.sets)], space=cfg.space, model=fingerprint,
        config=cfg, steps=step, info={"complete": complete, "running": running, "scale": scale},
        reconstructor={n: v.detach().cpu() for n, v in recon.state_dict().items()},
    )
    save_warped(out, paths)
    return TrainResult(paths=paths, step=step, complete=complete, state=spath, stats=running)


def _save_state(path: Path, support: SupportSets, recon: Reconstructor, opt: torch.optim.Optimizer, step: int,
                cfg: WarpedConfig, model: str, running: dict[str, float]) -> None:
    with atomic_path(path) as tmp:
        torch.save({"support": support.state_dict(), "reconstructor": recon.state_dict(), "opt": opt.state_dict(),
                    "step": step, "config": asdict(cfg), "model": model, "running": dict(running)}, tmp)
