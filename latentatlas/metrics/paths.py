"""Scoring paths in latent space against the synthfaces ground truth.

A path maps start codes and arc lengths to codes: linear directions are w0 + t v (in w+,
for directions made for a layer range, only those layers move), warped paths integrate a
vector field. Every path is walked from many start codes over the same
arc lengths (in W units), the factor predictor reads every frame, and for each path x factor
pair we get the mean absolute slope of the factor per unit of path length, and the mean
absolute Pearson correlation between arc length and factor. From the slope matrix:
each path's main factor (its automatic name), steepness (slope on the main factor) and
off-target drift (mean slope on the others), and DCI-style disentanglement (does each path
move one factor?) and completeness (is each factor moved by one path?) (Eastwood & Williams 2018).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from latentatlas.data.synthfaces import FACTOR_NAMES
from latentatlas.io.errors import UserError
from latentatlas.models.stylegan2 import Generator
from latentatlas.training.attributes import FactorPredictor

# (w0 [M, D], t [T]) -> w [T, M, D]; or w+ codes (w0 [M, num_ws, D]) -> [T, M, num_ws, D]
PathFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def layer_mask(codes: torch.Tensor, layers: tuple[int, int]) -> torch.Tensor:
    """[num_ws, 1]: 1 on the w+ layers [start, end) of codes [..., num_ws, D], 0 elsewhere.

    A direction made for a layer range moves only those layers (Directions.apply); walking it
    in w would move every layer and measure another edit, so w codes are refused.
    """
    if codes.ndim < 3:
        raise UserError(f"these directions edit w+ layers {layers[0]}-{layers[1]} (end excluded): walk them from w+ codes")
    mask = torch.zeros(codes.shape[-2], 1, dtype=codes.dtype, device=codes.device)
    mask[layers[0] : layers[1]] = 1
    return mask


def linear_path(vector: torch.Tensor, layers: tuple[int, int] | None = None) -> PathFn:
    """w0 + t v / |v|: every layer of w or w+ codes moves, or with `layers` only those of w+ codes."""
    v = vector / vector.norm()

    def walk(w0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        step = v.to(w0) if layers is None else layer_mask(w0, layers) * v.to(w0)
        return w0.unsqueeze(0) + t.reshape(-1, *[1] * w0.ndim).to(w0) * step

    return walk


@torch.no_grad()
def factors_of_w(generator: Generator, predictor: FactorPredictor, w: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Predicted factors [N, F] (on the CPU) of the images of w codes [N, D] (every layer the same)
    or w+ codes [N, num_ws, D], in batches."""
    out = []
    for i in range(0, len(w), batch):
        chunk = w[i : i + batch].to(generator.device)
        ws = chunk if chunk.ndim == 3 else chunk.unsqueeze(1).repeat(1, generator.num_ws, 1)
        out.append(predictor.predict(generator.synthesis(ws)).cpu())
    return torch.cat(out)


@torch.no_grad()
def path_responses(
    generator: Generator,
    predictor: FactorPredictor,
    paths: list[PathFn],
    starts: torch.Tensor,
    length: float,
    steps: int = 9,
    batch: int = 128,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Slopes [K, F] (mean |d factor / d arc length|), signed mean slopes [K, F], mean |Pearson r| [K, F]."""
    t = torch.linspace(-length, length, steps)
    slopes, signed, pearson = [], [], []
    for walk in paths:
        w = walk(starts.to(generator.device), t.to(generator.device))  # [T, M, D] or w+ [T, M, num_ws, D]
        T, M = w.shape[:2]
        y = factors_of_w(generator, predictor, w.reshape(T * M, *w.shape[2:]), batch).reshape(T, M, -1).double()  # [T, M, F]
        tc = (t - t.mean()).double().reshape(T, 1, 1)
        yc = y - y.mean(0, keepdim=True)
        slope = (tc * yc).sum(0) / tc.square().sum()  # [M, F]
        r = (tc * yc).sum(0) / (tc.square().sum().sqrt() * yc.square().sum(0).sqrt() + 1e-12)
        slopes.append(slope.abs().mean(0))
        signed.append(slope.mean(0))
        pearson.append(r.abs().mean(0))
    return torch.stack(slopes).float(), torch.stack(signed).float(), torch.stack(pearson).float()


def _entropy(p: torch.Tensor, base: int) -> torch.Tensor:
    p = p.clamp_min(1e-12)
    return -(p * p.log()).sum(-1) / math.log(base)


def number_repeats(names: list[str]) -> list[str]:
    """Automatic path names made unique in order: a name's second use gets 2, its third 3 (smile+, smile+2)."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}{seen[name]}")
    return out


def summarize(slopes: torch.Tensor, signed: torch.Tensor, factor_names: tuple[str, ...] = FACTOR_NAMES) -> dict[str, Any]:
    """Per-path main factor, steepness, drift and name; set-level disentanglement and completeness."""
    k, f = slopes.shape
    r = slopes.double().clamp_min(0)
    total = r.sum().clamp_min(1e-12)
    p = r / r.sum(1, keepdim=True).clamp_min(1e-12)
    disent = 1 - _entropy(p, f)
    rho = r.sum(1) / total
    q = (r / r.sum(0, keepdim=True).clamp_min(1e-12)).T  # [F, K]
    complete = 1 - _entropy(q, k) if k > 1 else torch.ones(f, dtype=torch.float64)
    importance = r.sum(0) / total
    main = r.argmax(1)
    names = number_repeats([factor_names[int(main[i])] + ("+" if signed[i, int(main[i])] >= 0 else "-") for i in range(k)])
    paths = []
    for i in range(k):
        j = int(main[i])
        off = torch.cat([r[i, :j], r[i, j + 1 :]])
        paths.append({
            "name": names[i],
            "main_factor": factor_names[j],
            "steepness": float(r[i, j]),
            "off_target_drift": float(off.mean()) if len(off) else 0.0,
            "disentanglement": float(disent[i]),
        })
    return {
        "paths": paths,
        "disentanglement": float((rho * disent).sum()),
        "completeness": float((importance * complete).sum()),
        "mean_steepness": float(sum(pth["steepness"] for pth in paths) / k),
        "mean_off_target_drift": float(sum(pth["off_target_drift"] for pth in paths) / k),
    }


def heatmap(slopes: torch.Tensor, path_names: list[str], out: str, title: str = "") -> None:
    """The path x factor slope matrix as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from latentatlas.io.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(0.42 * len(FACTOR_NAMES) + 2, 0.32 * len(path_names) + 1.6))
    im = ax.imshow(slopes.numpy(), aspect="auto", cmap="magma")
    ax.set_xticks(range(len(FACTOR_NAMES)), FACTOR_NAMES, rotation=70, fontsize=7)
    ax.set_yticks(range(len(path_names)), path_names, fontsize=7)
    ax.set_title(title or "mean |d factor / d path length|", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
