"""Scoring paths in latent space against the synthfaces ground truth.

A path maps start codes and arc lengths to codes: linear directions are w0 + t v, warped
paths integrate a vector field. Every path is walked from many start codes over the same
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
from latentatlas.models.stylegan2 import Generator
from latentatlas.training.attributes import FactorPredictor

PathFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (w0 [M, D], t [T]) -> w [T, M, D]


def linear_path(vector: torch.Tensor) -> PathFn:
    v = vector / vector.norm()

    def walk(w0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return w0.unsqueeze(0) + t.reshape(-1, 1, 1).to(w0) * v.to(w0)

    return walk


@torch.no_grad()
def factors_of_w(generator: Generator, predictor: FactorPredictor, w: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Predicted factors [N, F] (on the CPU) of the images of w codes [N, D], in batches."""
    out = []
    for i in range(0, len(w), batch):
        chunk = w[i : i + batch].to(generator.device)
        out.append(predictor.predict(generator.synthesis(chunk.unsqueeze(1).repeat(1, generator.num_ws, 1))).cpu())
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
        w = walk(starts.to(generator.device), t.to(generator.device))  # [T, M, D]
        T, M, D = w.shape
        y = factors_of_w(generator, predictor, w.reshape(T * M, D), batch).reshape(T, M, -1).double()  # [T, M, F]
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
